"""ISP parameters as data: names, ranges, neutral values, the unit-box mapping, validation, JSON.

The pipeline takes a ``(B, P)`` tensor of *physical* parameters in the order of
:data:`PARAM_SPECS`. Agents act in the unit box ``[-1, 1]^P``; :func:`unit_to_params` maps it
piecewise-linearly so that ``0`` is the neutral value, ``-1`` the low and ``+1`` the high end.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

__all__ = [
    "ParamSpec",
    "PARAM_SPECS",
    "PARAM_NAMES",
    "NUM_PARAMS",
    "PARAM_INDEX",
    "neutral_params",
    "unit_to_params",
    "params_to_unit",
    "validate_params",
    "params_from_dict",
    "params_to_dict",
    "as_param_batch",
]


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One ISP control.

    Attributes:
        name: identifier used in JSON files.
        low: smallest allowed value.
        high: largest allowed value.
        neutral: the value at which the stage is the identity (LibRaw-equivalent rendering).
        description: one line for humans, with the unit.
    """

    name: str
    low: float
    high: float
    neutral: float
    description: str

    def __post_init__(self) -> None:
        if not self.low <= self.neutral <= self.high or not self.low < self.high:
            raise ValueError(f"ParamSpec {self.name}: need low <= neutral <= high and low < high")


PARAM_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("exposure", -2.0, 2.0, 0.0, "exposure compensation in EV (stops), applied to linear raw"),
    ParamSpec("wb_temperature", -1.0, 1.0, 0.0, "white balance: log2 of extra red/blue gain ratio (+ warmer)"),
    ParamSpec("wb_tint", -1.0, 1.0, 0.0, "white balance: green/magenta tint (+ more magenta), log2 scale / 2"),
    ParamSpec("highlights", -1.0, 1.0, 0.0, "tone of the brightest linear values (- recover/darken, + brighten)"),
    ParamSpec("shadows", -1.0, 1.0, 0.0, "tone of the darkest linear values (+ lift, - deepen)"),
    ParamSpec("brightness", -1.0, 1.0, 0.0, "midtone curve on encoded values (+ brighter)"),
    ParamSpec("contrast", -1.0, 1.0, 0.0, "S-curve around mid-grey on encoded values (+ more contrast)"),
    ParamSpec("saturation", -1.0, 1.0, 0.0, "chroma scale - 1 in linear sRGB (-1 = greyscale)"),
    ParamSpec("vibrance", -1.0, 1.0, 0.0, "saturation boost weighted toward muted colours"),
    ParamSpec("denoise_luma", 0.0, 1.0, 0.0, "blend toward a Gaussian-smoothed luminance (sigma 1 px)"),
    ParamSpec("denoise_chroma", 0.0, 1.0, 0.0, "blend toward low-passed chrominance (about 2 px, computed at half resolution)"),
    ParamSpec("sharpen", 0.0, 2.0, 0.0, "unsharp-mask amount on luminance (sigma 1 px)"),
)
PARAM_NAMES: tuple[str, ...] = tuple(s.name for s in PARAM_SPECS)
NUM_PARAMS: int = len(PARAM_SPECS)
PARAM_INDEX: dict[str, int] = {n: i for i, n in enumerate(PARAM_NAMES)}


def _vec(attr: str, like: torch.Tensor | None = None, device=None, dtype=None) -> torch.Tensor:
    if like is not None:
        device, dtype = like.device, (like.dtype if like.is_floating_point() else torch.float32)
    return torch.tensor([getattr(s, attr) for s in PARAM_SPECS], device=device, dtype=dtype or torch.float32)


def neutral_params(batch_size: int = 1, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(B, P)`` neutral parameters (the identity ISP = LibRaw-like rendering)."""
    return _vec("neutral", device=device, dtype=dtype).unsqueeze(0).repeat(int(batch_size), 1)


def _check_last_dim(x: torch.Tensor, what: str) -> None:
    if x.shape[-1] != NUM_PARAMS:
        raise ValueError(f"{what} must have {NUM_PARAMS} values in the last dimension ({', '.join(PARAM_NAMES)}), got shape {tuple(x.shape)}")


def unit_to_params(u: torch.Tensor) -> torch.Tensor:
    """Map the unit box to physical values: ``-1 -> low``, ``0 -> neutral``, ``+1 -> high``.

    Args:
        u: ``(..., P)`` in ``[-1, 1]`` (values outside are clamped). Differentiable.

    Returns:
        ``(..., P)`` physical parameters.
    """
    u = torch.as_tensor(u)
    if not u.is_floating_point():
        u = u.float()
    _check_last_dim(u, "unit vector")
    lo, hi, ne = _vec("low", u), _vec("high", u), _vec("neutral", u)
    u = u.clamp(-1.0, 1.0)
    return torch.where(u >= 0, ne + u * (hi - ne), ne + u * (ne - lo))


def params_to_unit(p: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`unit_to_params` (for a parameter whose neutral is its low end, the low
    end maps to 0).

    Args:
        p: ``(..., P)`` physical parameters (clamped to their ranges).

    Returns:
        ``(..., P)`` in ``[-1, 1]``.
    """
    p = torch.as_tensor(p)
    if not p.is_floating_point():
        p = p.float()
    _check_last_dim(p, "parameter vector")
    lo, hi, ne = _vec("low", p), _vec("high", p), _vec("neutral", p)
    p = torch.minimum(torch.maximum(p, lo), hi)
    up = (p - ne) / (hi - ne).clamp_min(1e-12)
    down = (p - ne) / (ne - lo).clamp_min(1e-12)
    return torch.where(p >= ne, up, down).clamp(-1.0, 1.0)


def validate_params(p: torch.Tensor, *, tol: float = 1e-5) -> torch.Tensor:
    """Check shape, finiteness and ranges; return ``p`` unchanged.

    Args:
        p: ``(P,)`` or ``(B, P)`` physical parameters.
        tol: slack allowed beyond the declared ranges (float rounding).

    Raises:
        ValueError: wrong shape, NaN/inf, or a value outside its declared range (the message names
            the parameter, the value and the range).
    """
    if not isinstance(p, torch.Tensor):
        p = torch.as_tensor(p, dtype=torch.float32)
    if p.dim() not in (1, 2):
        raise ValueError(f"ISP parameters must have shape (P,) or (B, P) with P = {NUM_PARAMS}, got {tuple(p.shape)}")
    _check_last_dim(p, "ISP parameters")
    d = p.detach().reshape(-1, NUM_PARAMS)
    bad = ~torch.isfinite(d)
    if bad.any():
        b, i = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"ISP parameter {PARAM_NAMES[i]!r} (image {b}) is {d[b, i].item()}; parameters must be finite")
    lo, hi = _vec("low", d), _vec("high", d)
    out = (d < lo - tol) | (d > hi + tol)
    if out.any():
        b, i = (int(v) for v in out.nonzero()[0])
        s = PARAM_SPECS[i]
        raise ValueError(f"ISP parameter {s.name!r} (image {b}) = {d[b, i].item():.6g} is outside its range [{s.low:g}, {s.high:g}]")
    return p


def params_from_dict(d: Mapping[str, float]) -> torch.Tensor:
    """``{"name": value}`` -> ``(P,)`` float32 tensor; missing names take their neutral value.

    Raises:
        ValueError: an unknown name, a non-numeric value, or an invalid value (see
            :func:`validate_params`).
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"ISP parameters must be a JSON object {{name: value}}, got {type(d).__name__}")
    unknown = sorted(set(d) - set(PARAM_NAMES))
    if unknown:
        raise ValueError(f"unknown ISP parameter(s) {unknown}; known: {', '.join(PARAM_NAMES)}")
    p = neutral_params(1)[0]
    for k, v in d.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"ISP parameter {k!r} must be a number, got {v!r}")
        p[PARAM_INDEX[k]] = float(v)
    validate_params(p)
    return p


def params_to_dict(p: torch.Tensor) -> dict[str, float]:
    """``(P,)`` (or ``(1, P)``) tensor -> ``{"name": value}`` with Python floats."""
    p = torch.as_tensor(p).detach().reshape(-1)
    _check_last_dim(p, "ISP parameters")
    return {n: float(v) for n, v in zip(PARAM_NAMES, p.cpu().tolist())}


def as_param_batch(params, batch_size: int, *, validate: bool = True, unit: bool = False,
                   device=None, dtype=None) -> torch.Tensor:
    """What a renderer accepts as parameters, as one ``(B, P)`` tensor of physical values.

    Args:
        params: ``(B, P)`` or ``(P,)`` (or ``(1, P)``, shared by the whole batch); None = neutral.
        batch_size: B.
        validate: check finiteness and ranges (see :func:`validate_params`).
        unit: ``params`` are in the unit box and are mapped by :func:`unit_to_params` first.
        device: device of the result.
        dtype: floating dtype of the result.

    Returns:
        ``(B, P)`` physical parameters on ``device`` in ``dtype`` (differentiable).

    Raises:
        ValueError: a wrong shape, or (with ``validate``) NaN/inf or an out-of-range value.
    """
    b = int(batch_size)
    if params is None:
        params = neutral_params(b, device=device)
    params = torch.as_tensor(params)
    if params.dim() == 1:
        params = params.unsqueeze(0)
    if params.dim() == 2 and params.shape[0] == 1 and b > 1:
        params = params.expand(b, -1)
    if params.dim() != 2 or params.shape != (b, NUM_PARAMS):
        raise ValueError(f"params must be (B, P) = ({b}, {NUM_PARAMS}), got {tuple(params.shape)}")
    if unit:
        if validate and not torch.isfinite(params).all():
            raise ValueError("unit ISP parameters contain NaN or inf")
        params = unit_to_params(params)
    if validate:
        validate_params(params)
    return params.to(device=device, dtype=dtype)
