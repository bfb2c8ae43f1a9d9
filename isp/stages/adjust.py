"""Saturation and vibrance in linear sRGB."""
from __future__ import annotations

import torch
from torch import nn

from ..color import LUMA_WEIGHTS
from ._util import clamp01, first_order_only, per_image


def _luma(x: torch.Tensor) -> torch.Tensor:
    wr, wg, wb = LUMA_WEIGHTS
    return (x[:, 0:1] * wr).add_(x[:, 1:2], alpha=wg).add_(x[:, 2:3], alpha=wb)


class _Luminance(torch.autograd.Function):
    """Y = w . x with the one-op adjoint ``grad * w`` (autograd through the three channel slices
    would zero and fill a full-size gradient per slice)."""

    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return _luma(x)

    @staticmethod
    @first_order_only
    def backward(ctx, grad):  # noqa: D102
        w = torch.tensor(LUMA_WEIGHTS, device=grad.device, dtype=grad.dtype).reshape(1, 3, 1, 1)
        return grad * w


def luminance(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` linear sRGB -> ``(B, 1, H, W)`` relative luminance Y (colour-science's
    sRGB -> XYZ Y row)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Luminance.apply(x)
    return _luma(x)


class _RBChroma(torch.autograd.Function):
    """``x[:, (R, B)] - Y``, ``(B, 3, H, W) -> (B, 2, H, W)``, with a slice-free adjoint."""

    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return x[:, 0::2] - _luma(x)

    @staticmethod
    @first_order_only
    def backward(ctx, grad):  # noqa: D102
        w = torch.tensor(LUMA_WEIGHTS, device=grad.device, dtype=grad.dtype).reshape(1, 3, 1, 1)
        gr, gb = grad[:, 0:1], grad[:, 1:2]
        out = (gr + gb) * -w
        out[:, 0:1] += gr
        out[:, 2:3] += gb
        return out


def rb_chroma(x: torch.Tensor) -> torch.Tensor:
    """Red and blue chrominance ``x_c - Y`` of linear sRGB: ``(B, 3, H, W) -> (B, 2, H, W)``."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _RBChroma.apply(x)
    return x[:, 0::2] - _luma(x)


def saturate(x: torch.Tensor, saturation, vibrance) -> torch.Tensor:
    """Scale chroma ``x - Y`` by ``(1 + s) * (1 + v (1 - sat))``, clipped to ``[0, 1]``.

    ``sat = (max - min) / max`` per pixel, so vibrance acts mostly on muted colours.

    Args:
        x: ``(B, 3, H, W)`` linear sRGB in ``[0, 1]``.
        saturation: float or ``(B,)`` in ``[-1, 1]`` (-1 = greyscale).
        vibrance: float or ``(B,)`` in ``[-1, 1]``.
    """
    s, v = per_image(saturation, x), per_image(vibrance, x)
    y = luminance(x)
    mx = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    grad = torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in (x, s, v))
    if grad:
        sat = (mx - mn) / (mx + 1e-4)
    else:  # in place on fresh tensors
        den = mx + 1e-4
        sat = mx.sub_(mn).div_(den)
    # (1 + s)(1 + v (1 - sat)) = (1 + s)(1 + v) - (1 + s) v sat: one pass
    s1 = 1.0 + s
    factor = torch.addcmul(s1 * (1.0 + v), sat, s1 * v, value=-1.0)
    # y + f (x - y) = f x + (1 - f) y: one single-channel and one three-channel pass
    out = torch.addcmul(torch.addcmul(y, factor, y, value=-1.0), factor, x)
    return clamp01(out) if grad else out.clamp_(0.0, 1.0)


class Saturation(nn.Module):
    """Module form of :func:`saturate`."""

    def forward(self, x, saturation, vibrance=0.0):  # noqa: D102
        return saturate(x, saturation, vibrance)
