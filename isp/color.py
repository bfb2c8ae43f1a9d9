"""Colour constants and functions: sRGB/ProPhoto primaries (from colour-science), the camera
colour matrix, sRGB transfer functions.

All matrices act on column vectors: ``xyz = M @ rgb``.
"""
from __future__ import annotations

import colour
import numpy as np
import torch
from torch import nn

__all__ = [
    "SRGB_TO_XYZ",
    "XYZ_TO_SRGB",
    "camera_to_srgb_matrix",
    "srgb_encode",
    "srgb_decode",
    "apply_color_matrix",
    "ColorMatrix",
    "SRGBEncode",
    "LUMA_WEIGHTS",
    "SRGB_SLOPE",
    "SRGB_THRESHOLD",
    "SRGB_DECODE_THRESHOLD",
    "SRGB_GAMMA",
    "SRGB_OFFSET",
]

_SRGB = colour.RGB_COLOURSPACES["sRGB"]
SRGB_TO_XYZ: np.ndarray = np.asarray(_SRGB.matrix_RGB_to_XYZ, dtype=np.float64)
XYZ_TO_SRGB: np.ndarray = np.asarray(_SRGB.matrix_XYZ_to_RGB, dtype=np.float64)
#: Relative luminance of linear sRGB primaries (the Y row of the sRGB -> XYZ matrix).
LUMA_WEIGHTS: tuple[float, float, float] = tuple(float(v) for v in SRGB_TO_XYZ[1])


def camera_to_srgb_matrix(cam_to_xyz: np.ndarray) -> np.ndarray:
    """White-preserving camera RGB -> linear sRGB matrix, as LibRaw builds it.

    The XYZ -> camera matrix is combined with sRGB -> XYZ; each row of the resulting
    sRGB -> camera matrix is normalised to sum 1 (so white-balanced camera white maps to sRGB
    white) and the result is inverted.

    Args:
        cam_to_xyz: ``(3, 3)`` camera -> XYZ (D65).

    Returns:
        ``(3, 3)`` float64 camera -> linear sRGB.
    """
    xyz_to_cam = np.linalg.inv(np.asarray(cam_to_xyz, dtype=np.float64))
    srgb_to_cam = xyz_to_cam @ SRGB_TO_XYZ
    srgb_to_cam = srgb_to_cam / srgb_to_cam.sum(axis=1, keepdims=True)
    return np.linalg.inv(srgb_to_cam)


#: IEC 61966-2-1 sRGB transfer: ``e = SLOPE x`` for linear ``x <= THRESHOLD``, else
#: ``e = (1 + OFFSET) x^(1/GAMMA) - OFFSET``; decoding switches branch at the encoded value
#: ``DECODE_THRESHOLD`` (= ``SLOPE * THRESHOLD`` to the standard's four digits).
SRGB_SLOPE = 12.92
SRGB_THRESHOLD = 0.0031308
SRGB_DECODE_THRESHOLD = 0.04045
SRGB_GAMMA = 2.4
SRGB_OFFSET = 0.055
_LOG_SCALE = float(np.log(1.0 + SRGB_OFFSET))


def srgb_encode(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 sRGB opto-electronic transfer (linear -> encoded).

    Computed as ``min(12.92 x, 1.055 max(x, 0.0031308)^(1/2.4) - 0.055)``: above the threshold
    the power branch is below the linear one (concave, with a smaller slope there), so the
    minimum selects it without a mask, and the power is taken as ``exp(log(.) / 2.4)``, about
    twice as fast as ``pow`` on CPU. The standard's rounded constants make the branches cross
    about 1.3e-7 below the threshold, so on ``[0.0031307, 0.0031308)`` the power branch is taken
    where the standard takes the linear one: lower by at most 2.9e-8 (``isp.reference``, which
    uses Kornia's encoding, states the same bound in its tests).

    Args:
        x: linear values, any shape, expected in ``[0, 1]`` (negatives are clamped to 0).

    Returns:
        Encoded values, same shape.
    """
    return _srgb_encode_nonneg(x.clamp_min(0.0))


def _srgb_encode_nonneg(x: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
    """:func:`srgb_encode` for ``x >= 0`` (the pipeline's clipped values): no clamp at 0.
    ``overwrite``: ``x`` may be used as scratch (no autograd; the caller owns it)."""
    # 1.055 x^(1/2.4) = exp(log(x) / 2.4 + log(1.055)); in place on fresh tensors only
    if torch.is_grad_enabled() and x.requires_grad:
        t = torch.log(x.clamp_min(SRGB_THRESHOLD))
        hi = torch.exp(torch.add(_log_scale(t), t, alpha=1.0 / SRGB_GAMMA)) - SRGB_OFFSET
        return torch.minimum(x * SRGB_SLOPE, hi)
    t = x.clamp_min(SRGB_THRESHOLD).log_()
    torch.add(_log_scale(t), t, alpha=1.0 / SRGB_GAMMA, out=t)
    hi = t.exp_().sub_(SRGB_OFFSET)
    return torch.minimum(hi, x.mul_(SRGB_SLOPE) if overwrite else x * SRGB_SLOPE, out=hi)


def _log_scale(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_LOG_SCALE, dtype=like.dtype, device=like.device)


def srgb_decode(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`srgb_encode` (encoded -> linear)."""
    y = y.clamp_min(0.0)
    lo = y / SRGB_SLOPE
    hi = ((y.clamp_min(SRGB_DECODE_THRESHOLD) + SRGB_OFFSET) / (1.0 + SRGB_OFFSET)).pow(SRGB_GAMMA)
    return torch.where(y <= SRGB_DECODE_THRESHOLD, lo, hi)


def apply_color_matrix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Per-image 3x3 colour matrix.

    Args:
        x: ``(B, 3, H, W)``.
        matrix: ``(3, 3)`` or ``(B, 3, 3)``.

    Returns:
        ``(B, 3, H, W)``: ``out[b, :, i, j] = matrix[b] @ x[b, :, i, j]``.
    """
    if matrix.dim() == 2:
        matrix = matrix.unsqueeze(0).expand(x.shape[0], 3, 3)
    b, c, h, w = x.shape
    return torch.bmm(matrix.to(x.dtype), x.reshape(b, c, h * w)).reshape(b, 3, h, w)


class ColorMatrix(nn.Module):
    """Module form of :func:`apply_color_matrix`; the matrix is passed per call."""

    def forward(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return apply_color_matrix(x, matrix)


class SRGBEncode(nn.Module):
    """Module form of :func:`srgb_encode`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return srgb_encode(x)
