"""Exposure and tone curves. Every curve is the identity at 0 and monotonic on ``[0, 1]`` for
parameters in ``[-1, 1]``."""
from __future__ import annotations

import torch
from torch import nn

from ._util import clamp01, per_image


def _bump(x: torch.Tensor) -> torch.Tensor:
    """``x (1 - x)`` in one fused op."""
    return torch.addcmul(x, x, x, value=-1.0)


def _needs_grad(*ts) -> bool:
    """True when autograd records ops on any of ``ts`` (then no in-place ops on fresh tensors)."""
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in ts)


def adjust_exposure(x: torch.Tensor, ev) -> torch.Tensor:
    """Scale linear values by ``2**ev`` and clip to ``[0, 1]``.

    Args:
        x: ``(B, C, H, W)`` linear RGB.
        ev: float or ``(B,)`` exposure in stops.
    """
    k = torch.exp2(per_image(ev, x))
    if _needs_grad(x, k):
        return clamp01(x * k)
    return (x * k).clamp_(0.0, 1.0)


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
    """Midtone curve ``x + a x (1 - x)`` (end points fixed). ``amount`` float or ``(B,)`` in ``[-1, 1]``.

    Evaluated as ``x ((1 + a) - a x)``: two passes over the image.
    """
    a = per_image(amount, x)
    t = torch.addcmul(1.0 + a, a, x, value=-1.0)
    return t * x if _needs_grad(x, a) else t.mul_(x)


def adjust_contrast(x: torch.Tensor, amount) -> torch.Tensor:
    """S-curve ``x + c x (1 - x)(2x - 1)`` around 0.5. ``amount`` float or ``(B,)`` in ``[-1, 1]``.

    Evaluated in Horner form ``x ((1 - c) + x (3c - 2c x))``: three passes over the image.
    """
    c = per_image(amount, x)
    t = torch.addcmul(3.0 * c, c, x, value=-2.0)
    if _needs_grad(x, c):
        return torch.addcmul(1.0 - c, t, x) * x
    return t.mul_(x).add_(1.0 - c).mul_(x)


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
