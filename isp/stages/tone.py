"""Exposure and tone curves. Every curve is the identity at 0 and monotonic on ``[0, 1]`` for
parameters in ``[-1, 1]``."""
from __future__ import annotations

import torch
from torch import nn

from ._util import clamp01, per_image


def _bump(x: torch.Tensor) -> torch.Tensor:
    """``x (1 - x)`` in one fused op."""
    return torch.addcmul(x, x, x, value=-1.0)


def adjust_exposure(x: torch.Tensor, ev) -> torch.Tensor:
    """Scale linear values by ``2**ev`` and clip to ``[0, 1]``.

    Args:
        x: ``(B, C, H, W)`` linear RGB.
        ev: float or ``(B,)`` exposure in stops.
    """
    return clamp01(x * torch.exp2(per_image(ev, x)))


def adjust_highlights_shadows(x: torch.Tensor, highlights, shadows) -> torch.Tensor:
    """Cubic tone bumps on linear values: ``x + h x^2 (1-x) + s x (1-x)^2``.

    Args:
        x: ``(B, C, H, W)`` in ``[0, 1]``.
        highlights: float or ``(B,)`` in ``[-1, 1]`` (+ brightens the top of the range).
        shadows: float or ``(B,)`` in ``[-1, 1]`` (+ lifts the bottom of the range).
    """
    h, s = per_image(highlights, x), per_image(shadows, x)
    # x + x(1-x)(s + (h-s)x), as three fused multiply-adds
    return torch.addcmul(x, _bump(x), torch.addcmul(s, h - s, x))


def adjust_brightness(x: torch.Tensor, amount) -> torch.Tensor:
    """Midtone curve ``x + a x (1 - x)`` (end points fixed). ``amount`` float or ``(B,)`` in ``[-1, 1]``."""
    return torch.addcmul(x, per_image(amount, x), _bump(x))


def adjust_contrast(x: torch.Tensor, amount) -> torch.Tensor:
    """S-curve ``x + c x (1 - x)(2x - 1)`` around 0.5. ``amount`` float or ``(B,)`` in ``[-1, 1]``."""
    return torch.addcmul(x, per_image(amount, x), _bump(x) * (2.0 * x - 1.0))


class Exposure(nn.Module):
    """Module form of :func:`adjust_exposure`."""

    def forward(self, x, ev):  # noqa: D102
        return adjust_exposure(x, ev)


class HighlightsShadows(nn.Module):
    """Module form of :func:`adjust_highlights_shadows`."""

    def forward(self, x, highlights, shadows):  # noqa: D102
        return adjust_highlights_shadows(x, highlights, shadows)


class Brightness(nn.Module):
    """Module form of :func:`adjust_brightness`."""

    def forward(self, x, amount):  # noqa: D102
        return adjust_brightness(x, amount)


class Contrast(nn.Module):
    """Module form of :func:`adjust_contrast`."""

    def forward(self, x, amount):  # noqa: D102
        return adjust_contrast(x, amount)
