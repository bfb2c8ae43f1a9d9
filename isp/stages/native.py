"""Optional compiled kernels for the per-pixel chain (``csrc/tone_chain.c``), loaded with ctypes.

The per-pixel stages after the denoise (exposure, highlights/shadows, saturation/vibrance, sRGB
encoding, brightness, contrast) are a dozen elementwise passes in torch, forward and backward.
:func:`tone_chain` runs them as one pass over the tile (one more for the backward, which
recomputes the chain from its input), written in plain C and compiled with the system's C
compiler on first use into ``$RLISP_CACHE/native`` (or ``~/.cache/rl-isp/native``), keyed by the
source, the flags, the compiler and the CPU (it is built with ``-march=native``); a compile takes
a few seconds, once. No compiler, a failed build or ``RLISP_NATIVE=0`` leaves :func:`available` False
and :class:`isp.ISP` on the torch path (:mod:`isp.stages.fused`), which the kernel is tested
against (``tests/isp/test_isp_native.py``); :mod:`isp.reference` is tested against both.
Only CPU tensors of float32 or float64 take this path.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import warnings
from pathlib import Path

import torch

from ..color import LUMA_WEIGHTS, SRGB_GAMMA, SRGB_OFFSET, SRGB_SLOPE, SRGB_THRESHOLD, _LOG_SCALE
from ._util import first_order_only

__all__ = ["available", "tone_chain", "library"]

_SOURCE = Path(__file__).with_name("csrc") / "tone_chain.c"
#: No fused multiply-add (the torch code's roundings), vector exp/log from libmvec without -ffast-math.
_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd", "-fPIC", "-shared"]
_LIBS = ["-lmvec", "-lm"]
#: The saturation stage's epsilon (isp.stages.adjust / fused).
_EPS = 1e-4

_lib = None
_tried = False


def _cache_dir() -> Path:
    env = os.environ.get("RLISP_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "rl-isp") / "native"


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _build(cc: str) -> Path:
    src = _SOURCE.read_bytes()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256(b"\0".join([src, " ".join(_FLAGS + _LIBS).encode(), version.encode(), _cpu_id().encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    out = _cache_dir() / f"tone_chain-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    from .._atomic import atomic_path

    with atomic_path(out) as tmp:  # concurrent builds each write their own file; one rename wins
        res = subprocess.run([cc, *_FLAGS, "-o", str(tmp), str(_SOURCE), *_LIBS], capture_output=True, text=True,
                             timeout=300)
        if res.returncode != 0:
            raise RuntimeError(f"{cc} failed: {res.stderr.strip()[-2000:]}")
    return out


def library():
    """The loaded kernel library, built on first call; None when unavailable (see module doc)."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("RLISP_NATIVE", "1") == "0" or platform.system() != "Linux":
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    try:
        lib = ctypes.CDLL(str(_build(cc)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        warnings.warn(f"isp: compiled tone chain unavailable ({exc}); using the torch path", RuntimeWarning,
                      stacklevel=2)
        return None
    p, i64, f = ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p
    for suf in ("f32", "f64"):
        getattr(lib, f"tone_chain_forward_{suf}").argtypes = [p, p] + [i64] * 6 + [f, f]
        getattr(lib, f"tone_chain_forward_{suf}").restype = None
        getattr(lib, f"tone_chain_backward_{suf}").argtypes = [p, p, p] + [i64] * 8 + [f, f, f]
        getattr(lib, f"tone_chain_backward_{suf}").restype = None
    _lib = lib
    return lib


def available(x: torch.Tensor | None = None) -> bool:
    """True when the kernel is loaded (and ``x``, if given, is a CPU float32/float64 tensor)."""
    if x is not None and (x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64)):
        return False
    return library() is not None


_CONSTANTS = [float(LUMA_WEIGHTS[0]), float(LUMA_WEIGHTS[1]), float(LUMA_WEIGHTS[2]), _EPS, SRGB_THRESHOLD,
              1.0 / SRGB_GAMMA, _LOG_SCALE, SRGB_OFFSET, SRGB_SLOPE]
_NEUTRAL = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)  # gain, h, s, fa, fb, a, c


def _planes(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when each ``(b, c)`` plane is contiguous (a row range of a contiguous image)."""
    b, c, h, w = x.shape
    if x.stride(-1) == 1 and (x.stride(-2) == w or h == 1):
        return x
    return x.contiguous()


def _param_table(params, b: int) -> torch.Tensor:
    cols = [torch.full((b,), v, dtype=torch.float64) if t is None else
            t.detach().reshape(-1).to("cpu", torch.float64).expand(b) for t, v in zip(params, _NEUTRAL)]
    return torch.stack(cols, dim=1).contiguous()


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def _forward(x: torch.Tensor, prm: torch.Tensor) -> torch.Tensor:
    x = _planes(x)
    b, _, h, w = x.shape
    out = torch.empty(b, 3, h, w, dtype=x.dtype)
    fn = getattr(library(), f"tone_chain_forward_{'f32' if x.dtype == torch.float32 else 'f64'}")
    cst = torch.tensor(_CONSTANTS, dtype=torch.float64)
    fn(_ptr(x), _ptr(out), b, x.stride(0), x.stride(1), out.stride(0), out.stride(1), h * w, _ptr(prm), _ptr(cst))
    return out


class _ToneChain(torch.autograd.Function):
    """The chain as one autograd node: keeps its input, recomputes the rest in backward."""

    @staticmethod
    def forward(ctx, x, gain, highlights, shadows, fa, fb, brightness, contrast):  # noqa: D102
        params = (gain, highlights, shadows, fa, fb, brightness, contrast)
        prm = _param_table(params, x.shape[0])
        ctx.save_for_backward(x, prm)
        ctx.shapes = [None if t is None else t.shape for t in params]
        return _forward(x, prm)

    @staticmethod
    @first_order_only
    def backward(ctx, g):  # noqa: D102
        x, prm = ctx.saved_tensors
        x, g = _planes(x), _planes(g)
        b, _, h, w = x.shape
        gx = torch.empty(b, 3, h, w, dtype=x.dtype)
        grads = torch.zeros(b, 7, dtype=torch.float64)
        fn = getattr(library(), f"tone_chain_backward_{'f32' if x.dtype == torch.float32 else 'f64'}")
        cst = torch.tensor(_CONSTANTS, dtype=torch.float64)
        fn(_ptr(x), _ptr(g), _ptr(gx), b, x.stride(0), x.stride(1), g.stride(0), g.stride(1), gx.stride(0),
           gx.stride(1), h * w, _ptr(prm), _ptr(cst), _ptr(grads))
        out = [gx if ctx.needs_input_grad[0] else None]
        for j, shape in enumerate(ctx.shapes):
            if shape is None or not ctx.needs_input_grad[j + 1]:
                out.append(None)
                continue
            col = grads[:, j].to(x.dtype)
            n = 1
            for s in shape:
                n *= s
            out.append((col.sum() if n == 1 else col).reshape(shape))
        return tuple(out)


def tone_chain(x: torch.Tensor, gain=None, highlights=None, shadows=None, saturation=None, vibrance=None,
               brightness=None, contrast=None) -> torch.Tensor:
    """``encode_tone(saturate(exposure_tone(x, gain, highlights, shadows), saturation, vibrance),
    brightness, contrast)`` of :mod:`isp.stages.fused` in one compiled pass (see module doc).

    Args:
        x: ``(B, 3, H, W)`` CPU float32/float64 linear sRGB in ``[0, 1]``.
        gain, highlights, shadows, saturation, vibrance, brightness, contrast: per-image
            ``(B, 1, 1, 1)``, ``(B,)`` or 0-dim tensors; None = the stage's neutral value.

    Returns:
        ``(B, 3, H, W)`` encoded values (a fresh tensor).

    Raises:
        RuntimeError: the kernel is not available (check :func:`available` first).
    """
    if library() is None:
        raise RuntimeError("the compiled tone chain is not available (isp.stages.native.available())")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"tone_chain takes (B, 3, H, W), got {tuple(x.shape)}")
    fa = fb = None
    if saturation is not None or vibrance is not None:
        s1 = 1.0 + (saturation if saturation is not None else torch.zeros((), dtype=x.dtype))
        v = vibrance if vibrance is not None else torch.zeros((), dtype=x.dtype)
        fa, fb = s1 * (1.0 + v), s1 * v
    args = (x, gain, highlights, shadows, fa, fb, brightness, contrast)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
        return _ToneChain.apply(*args)
    with torch.no_grad():
        return _forward(x, _param_table(args[1:], x.shape[0]))
