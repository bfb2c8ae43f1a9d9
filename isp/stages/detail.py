"""Denoising (luma/chroma Gaussian blending) and sharpening (unsharp mask), separable filters."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._util import per_image
from .adjust import luminance


def _kernel(sigma: float, device, dtype) -> torch.Tensor:
    r = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-r, r + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflection padding.

    Args:
        x: ``(B, C, H, W)``.
        sigma: standard deviation in pixels (> 0).

    Returns:
        ``(B, C, H, W)``.
    """
    c = x.shape[1]
    k = _kernel(sigma, x.device, x.dtype)
    r = k.numel() // 2
    if min(x.shape[-2:]) <= r:
        mode = "replicate"
    else:
        mode = "reflect"
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def denoise(x: torch.Tensor, luma, chroma, sigma_luma: float = 1.0, sigma_chroma: float = 2.0) -> torch.Tensor:
    """Blend luminance and chrominance toward Gaussian-smoothed versions.

    Args:
        x: ``(B, 3, H, W)`` linear RGB.
        luma: float or ``(B,)`` in ``[0, 1]``: 0 keeps luminance, 1 replaces it by its blur.
        chroma: float or ``(B,)`` in ``[0, 1]``: the same for chrominance ``x - Y``.

    Returns:
        ``(B, 3, H, W)``.
    """
    a, c = per_image(luma, x), per_image(chroma, x)
    y = luminance(x)
    ch = x - y
    y = y + a * (gaussian_blur(y, sigma_luma) - y)
    ch = ch + c * (gaussian_blur(ch, sigma_chroma) - ch)
    return y + ch


def sharpen(x: torch.Tensor, amount, sigma: float = 1.0) -> torch.Tensor:
    """Unsharp mask on luminance: ``x + a (Y - blur(Y))``, clipped to ``[0, 1]``.

    Args:
        x: ``(B, 3, H, W)`` (encoded) RGB in ``[0, 1]``.
        amount: float or ``(B,)`` in ``[0, 2]``.
    """
    y = luminance(x)
    return (x + per_image(amount, x) * (y - gaussian_blur(y, sigma))).clamp(0.0, 1.0)


class Denoise(nn.Module):
    """Module form of :func:`denoise`."""

    def forward(self, x, luma, chroma):  # noqa: D102
        return denoise(x, luma, chroma)


class Sharpen(nn.Module):
    """Module form of :func:`sharpen`."""

    def forward(self, x, amount):  # noqa: D102
        return sharpen(x, amount)
