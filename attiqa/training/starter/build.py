"""The starter ATTIQA model (v6): a working quality reward built offline on a fresh CPU machine.

``python -m attiqa build-starter [--out PATH] [--force] [--tiny] [--threads N] [--report [--report-crops N]]``

No CLIP weights, ImageNet or IQA dataset can be downloaded where this project is built, so
the starter is made from what ships inside installed packages. The architecture is ATTIQA's:
EfficientNet-Lite0 with its packaged ImageNet weights, five attribute heads and a MOS MLP on
their concatenated features; the MOS is in ``(0, 1)``, higher is better.

1. **Attribute heads** follow the ``analytic`` teacher: ranking pretraining
   (:func:`attiqa.training.pretrain.train_ranking`, margin 0.1) on crops of the build photos,
   most of them pushed along one ISP axis (:mod:`~attiqa.training.starter.pushes`).
2. **MOS head: what a good rendering of a scene looks like.** For the build photos only, each
   crop comes with renderings pushed away from the photograph in either direction along every
   axis the ISP can move (exposure ±, white-balance temperature ± and tint ±, contrast ±,
   saturation ±, white level ± (clipped highlights / greyed whites), black level ± (crushed
   shadows / lifted, faded blacks; v4), over-sharpening halos, noise, blur, JPEG; each
   direction of a group at two magnitudes, so that the order along one direction is learned as
   well as the photo's place above it). Each rendering's pseudo-MOS is
   ``1 / (1 + ΔE00 / 8 + (1 − SSIM) / 0.25)`` against the photograph (:func:`~attiqa.training.starter.pushes.pseudo_mos`): 1 for the photo
   itself, lower the further it is pushed. The MOS head learns, end to end with the heads and
   the last part of the backbone and with global colour and tone statistics of the image next
   to the head features (:func:`attiqa.modeling.quality.colour_statistics`: ImageNet features
   are nearly blind to colour casts), to order the renderings of each crop like their pseudo-MOS
   (pairwise hinge) and to match it (squared error), while the attribute-ranking loss keeps
   the heads with the teacher. At use the model sees only the image: it is no-reference.

The photos of the sample set's test scenes (``rocket``, ``flower``, ``coffee``) are never
trained on; the build ends with a report on them (:mod:`~attiqa.training.starter.report`): per
push direction, the SROCC between push magnitude and MOS (target ≥ 0.8), stored in the
checkpoint's metadata (``meta["holdout_report"]``) and printed.

The build runs with a fixed number of torch threads (``StarterConfig.threads``, restored after)
and seeded generators only, so two builds on one machine give bitwise-identical weights. Across
machines that is not enough: PyTorch, oneDNN and MKL each pick their kernels by the CPU's
instruction set (AVX2, AVX-512, AMX), and kernels of different vector widths sum in different
orders, so an AVX-512 machine and an AVX2 machine trained different starters from the same
seed (the same README command gave default MOS 0.611 on one and 0.737 on another). On x86-64
the build therefore runs in a child process whose environment pins them
(:data:`PINNED_ISA_ENV`: ``ATEN_CPU_CAPABILITY`` and ``ONEDNN_MAX_CPU_ISA`` to AVX2, MKL's
``MKL_CBWR`` to its ``COMPATIBLE`` branch in strict mode; they are read once, when the libraries
load, hence the child): every x86-64 machine with AVX2 (every one since 2013), Intel or AMD,
builds the same weights. MKL honours a named branch such as ``AVX2`` on Intel processors only:
on an AMD processor it silently runs its automatic branch instead (``MKL_VERBOSE`` then reports
``CNR:AUTO``), whose kernels follow the CPU, so v5's ``AVX2`` pin gave AMD machines starters of
their own; ``COMPATIBLE`` is the one branch MKL runs alike on every vendor (v6).
:func:`build_starter_pinned` is that child; :func:`ensure_starter` and ``python -m attiqa
build-starter`` use it.

The cached model lives at ``<cache>/attiqa/starter-v6.pt`` (``<cache>`` = ``$RLISP_CACHE`` or
``~/.cache/rl-isp``); :func:`ensure_starter` builds it on first use. Its metadata says
``starter: True`` and "starter model, not the paper's weights".
"""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from attiqa.modeling.checkpoint import save_quality_checkpoint, weights_fingerprint
from attiqa.training.starter.config import (PHOTO_LICENSES, STARTER_DESCRIPTION, STARTER_VERSION, StarterConfig,
                                            starter_path)
from attiqa.training.starter.photos import starter_photos
from attiqa.training.starter.report import format_report, holdout_report
from attiqa.training.starter.stages import quality_stage, ranking_stage
from attiqa.utils.files import file_lock

__all__ = ["build_starter", "build_starter_pinned", "ensure_starter", "starter_path", "StarterConfig", "fixed_threads",
           "PINNED_ISA_ENV", "isa_pinned", "run_pinned_child"]

PINNED_ISA_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE,STRICT",
                  "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""The environment of a pinned build (x86-64): PyTorch's own kernels and oneDNN's convolutions at
AVX2, MKL's BLAS on its ``COMPATIBLE`` branch (SSE2 without approximate reciprocals: the only
branch MKL runs on non-Intel processors too; a named branch such as ``AVX2`` falls back to the
CPU's automatic one there) in strict reproducible mode, one OpenMP thread."""


def _pins() -> dict[str, str]:
    """:data:`PINNED_ISA_ENV` on x86-64; nothing elsewhere (no AVX2 to pin: ARM builds follow their own kernels)."""
    return dict(PINNED_ISA_ENV) if platform.machine().lower() in ("x86_64", "amd64") else {}


def isa_pinned(environ=None) -> bool:
    """Whether ``environ`` (default: this process's) already holds every pin of :func:`_pins`."""
    environ = os.environ if environ is None else environ
    return all(environ.get(k) == v for k, v in _pins().items())


def run_pinned_child(args: list[str]) -> int:
    """Runs ``python -m attiqa build-starter *args`` in a child process with this process's
    environment plus the pins of :func:`_pins`; returns its exit code."""
    cmd = [sys.executable, "-m", "attiqa", "build-starter", *args]
    return subprocess.run(cmd, env={**os.environ, **_pins()}, check=False).returncode


def build_starter_pinned(path, tiny: bool = False, progress: bool = True) -> Path:
    """Builds the starter with the instruction sets pinned (:data:`PINNED_ISA_ENV`), so that any
    x86-64 machine builds the same weights.

    In a process that already runs pinned this is :func:`build_starter`; otherwise it runs
    ``python -m attiqa build-starter --force --out path`` in a child process with the pinned
    environment (the libraries read it only when they load) and waits for it.

    Args:
        path: output file.
        tiny: the test configuration (``StarterConfig.tiny()``) instead of the real recipe.
        progress: progress bars and stage messages on stderr (the child's go to this stderr).

    Raises:
        RuntimeError: the child failed (its messages are on stderr above).
    """
    path = Path(path)
    if isa_pinned():
        return build_starter(path, StarterConfig.tiny() if tiny else StarterConfig(), progress=progress)
    flags = (["--tiny"] if tiny else []) + ([] if progress else ["--quiet"])
    rc = run_pinned_child(["--force", "--out", str(path), *flags])
    if rc != 0:
        raise RuntimeError(f"building the starter model at {path} failed (exit code {rc}; its messages are above)")
    return path


@contextlib.contextmanager
def fixed_threads(n: int):
    """Runs the block with ``torch.set_num_threads(n)`` and restores the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_starter(path, config: StarterConfig | None = None, progress: bool = True) -> Path:
    """Builds the starter model and saves it as a quality checkpoint (atomically).

    Args:
        path: output file.
        config: :class:`StarterConfig` (default: the real starter; ``StarterConfig.tiny()`` for tests).
        progress: progress bars and stage messages on stderr.

    Returns:
        ``path``.
    """
    config = config or StarterConfig()
    with fixed_threads(config.threads):
        return _build(Path(path), config, progress)


STARTER_LIBRARIES = ("torch", "numpy", "PIL", "skimage", "sklearn", "matplotlib")
"""What the starter's weights depend on besides the recipe: the arithmetic (torch, numpy) and the
packages the build photos come from and are decoded by."""


def library_versions() -> dict[str, str]:
    """``{name: version}`` of :data:`STARTER_LIBRARIES` (``"missing"`` where one does not import)."""
    import importlib

    out = {}
    for name in STARTER_LIBRARIES:
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            out[name] = "missing"
    return out


def _build(path: Path, config: StarterConfig, progress: bool) -> Path:
    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(config.seed)
    say = (lambda msg: print(f"attiqa starter: {msg}", file=sys.stderr, flush=True)) if progress else (lambda m: None)
    photos = list(starter_photos(config.photos, config.photo_max_side).values())
    say(f"{len(photos)} packaged photos; ranking pretraining of the attribute heads ({config.rank_steps} steps, "
        f"{config.threads} threads)")
    model, rank_info = ranking_stage(photos, config, progress)
    t_rank, c_rank = time.perf_counter() - t0, time.process_time() - c0
    say(f"training attributes + MOS head on renderings pushed from the photos ({config.joint_steps} steps)")
    qmodel, joint_info = quality_stage(model, photos, config, progress)
    t_mos, c_mos = time.perf_counter() - t0 - t_rank, time.process_time() - c0 - c_rank
    holdout = starter_photos(config.holdout, config.photo_max_side)
    report = holdout_report(qmodel, holdout, config.crop, config.report_magnitudes, n_crops=config.report_crops)
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    plain = lambda d: {k: v for k, v in (d or {}).items() if isinstance(v, (int, float, str))}  # noqa: E731
    extra = {"starter_version": STARTER_VERSION, "starter_config": asdict(config), "holdout_report": report,
             "photo_licenses": {p: PHOTO_LICENSES.get(p, "") for p in (*config.photos, *config.holdout)},
             "build_seconds": build_s, "build_cpu_seconds": build_cpu, "torch_threads": config.threads,
             "isa_env": {k: os.environ.get(k) for k in PINNED_ISA_ENV}, "machine": platform.machine(),
             "versions": library_versions(), "weights_sha256": weights_fingerprint(qmodel.state_dict()),
             "stage_seconds": {"ranking": t_rank, "mos_head": t_mos, "report": build_s - t_rank - t_mos},
             "stage_cpu_seconds": {"ranking": c_rank, "mos_head": c_mos, "report": build_cpu - c_rank - c_mos},
             "ranking_info": plain(rank_info), "joint_info": plain(joint_info),
             "score_note": "MOS in (0, 1): 1 = a rendering like the photograph's own; lower = further from it "
                           "(pseudo-MOS 1 / (1 + mean dE2000 / 8 + (1 - SSIM) / 0.25))"}
    description = STARTER_DESCRIPTION if config.pretrained else \
        "starter model, not the paper's weights (tiny test configuration, random backbone weights)"
    save_quality_checkpoint(path, qmodel, starter=True, description=description, extra=extra)
    say(f"saved {path} in {build_s:.0f} s (CPU time {build_cpu:.0f} s on {config.threads} threads); weights "
        f"sha256 {extra['weights_sha256'][:16]} (torch {extra['versions']['torch']})")
    if progress:
        print(format_report(report), file=sys.stderr)
    return path


def ensure_starter(progress: bool = True) -> Path:
    """The cached starter checkpoint; builds it on first use (a few minutes on a CPU).

    Concurrent callers (e.g. vectorised environments) wait for one build through a lock file.
    """
    path = starter_path()
    if path.is_file():
        return path
    with file_lock(path.with_name(path.name + ".lock")):
        if not path.is_file():
            print(f"attiqa: building the ATTIQA starter model at {path} (first use, about 3 minutes on a "
                  "2-core CPU). It is a starter model, not the paper's weights.", file=sys.stderr, flush=True)
            build_starter_pinned(path, progress=progress)
    return path
