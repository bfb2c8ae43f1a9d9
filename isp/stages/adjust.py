"""Saturation and vibrance in linear sRGB."""
from __future__ import annotations

import torch
from torch import nn

from ..color import LUMA_WEIGHTS
from ._util import clamp01, per_image


def luminance(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` linear sRGB -> ``(B, 1, H, W)`` relative luminance Y."""
    wr, wg, wb = LUMA_WEIGHTS
    return (x[:, 0:1] * wr).add_(x[:, 1:2], alpha=wg).add_(x[:, 2:3], alpha=wb)


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
    sat = (mx - mn) / (mx + 1e-4)
    factor = (1.0 + s) * (1.0 + v * (1.0 - sat))
    return clamp01(torch.addcmul(y, factor, x - y))


class Saturation(nn.Module):
    """Module form of :func:`saturate`."""

    def forward(self, x, saturation, vibrance=0.0):  # noqa: D102
        return saturate(x, saturation, vibrance)
