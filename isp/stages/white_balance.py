"""White balance on the Bayer mosaic: as-shot multipliers times temperature/tint adjustments,
and the clip that decides the colour of clipped highlights.

A sensor sample at the white level (1 after normalisation) only says "at least this bright".
After white balance, channel ``c`` saturates at ``g_c``; clipping each channel at 1 (LibRaw's
clip) leaves a channel whose gain is below 1 short of the others, so a blown-out white renders
coloured (magenta for a green gain below 1, yellow for a blue one). The ``neutral`` mode clips
every channel at the lowest saturation point, ``min(1, min_c g_c)``: whatever saturated is grey.
At neutral white balance (as-shot multipliers, the smallest 1) both modes equal LibRaw's clip.
"""
from __future__ import annotations

import torch
from torch import nn

from ._util import clamp01


def wb_gains(as_shot: torch.Tensor, temperature, tint) -> torch.Tensor:
    """Per-image R/G/B gains.

    Args:
        as_shot: ``(B, 3)`` as-shot multipliers (LibRaw convention: normalised so the smallest is 1).
        temperature: float or ``(B,)`` in ``[-1, 1]``: red gain times ``2**(t/2)``, blue gain times
            ``2**(-t/2)``.
        tint: float or ``(B,)`` in ``[-1, 1]``: green gain times ``2**(-tint/2)``.

    Returns:
        ``(B, 3)`` gains.
    """
    t = torch.as_tensor(temperature, dtype=as_shot.dtype, device=as_shot.device).reshape(-1)
    n = torch.as_tensor(tint, dtype=as_shot.dtype, device=as_shot.device).reshape(-1)
    zero = torch.zeros_like(t * n)
    log2 = torch.stack([t / 2 + zero, -n / 2 + zero, -t / 2 + zero], dim=-1)
    return as_shot * torch.exp2(log2)


#: Highlight clip modes (``ISP(highlight=...)``): name -> what saturates where.
HIGHLIGHT_MODES: dict[str, str] = {
    "neutral": "every channel clipped at the lowest channel's saturation point min(1, min gain): clipped highlights are grey",
    "channel": "each channel clipped at 1 on its own (LibRaw's clip; coloured highlights when a gain is below 1)",
}
#: Default highlight mode.
DEFAULT_HIGHLIGHT = "neutral"


def clip_level(gains: torch.Tensor, highlight: str = DEFAULT_HIGHLIGHT) -> torch.Tensor:
    """Per-image clip level after white balance.

    Args:
        gains: ``(B, 3)`` R/G/B gains.
        highlight: a key of :data:`HIGHLIGHT_MODES`.

    Returns:
        ``(B,)``: ``min(1, min_c g_c)`` (``neutral``; differentiable in the gains) or ones.
    """
    if highlight == "neutral":
        return gains.amin(dim=1).clamp(max=1.0)
    if highlight == "channel":
        return torch.ones_like(gains[:, 0])
    raise ValueError(f"unknown highlight mode {highlight!r}; choose from {sorted(HIGHLIGHT_MODES)}")


def white_balance(mosaic: torch.Tensor, gains: torch.Tensor, cfa_index: torch.Tensor,
                  highlight: str = DEFAULT_HIGHLIGHT) -> torch.Tensor:
    """Multiply each Bayer sample by its channel's gain and clip to ``[0, level]``.

    ``level`` is :func:`clip_level` (1 at neutral white balance, as LibRaw clips). The gradient
    passes where the product is inside the range (ends included, as ``torch.clamp``) and goes to
    the level (the smallest gain) where it is above.

    Args:
        mosaic: ``(B, 1, H, W)`` black-subtracted, normalised to ``[0, 1]``; H, W even.
        gains: ``(B, 3)`` R/G/B gains (positive).
        cfa_index: ``(B, 4)`` long, channel index (0 R, 1 G, 2 B) of each 2x2 position, row-major.
        highlight: a key of :data:`HIGHLIGHT_MODES`.

    Returns:
        ``(B, 1, H, W)`` in ``[0, level]``.

    Example:
        >>> g = torch.tensor([[2.0, 0.8, 1.5]])  # green gain below 1: neutral highlights clip at 0.8
        >>> white_balance(torch.ones(1, 1, 2, 2), g, torch.tensor([[0, 1, 1, 2]])).flatten().tolist()
        [0.800000011920929, 0.800000011920929, 0.800000011920929, 0.800000011920929]
    """
    b, _, h, w = mosaic.shape
    gains = gains.to(mosaic.dtype)
    out = mosaic.reshape(b, h // 2, 2, w) * cfa_rows(gains, cfa_index, w)
    if highlight == "channel":
        return clamp01(out).reshape(b, 1, h, w)
    level = clip_level(gains, highlight).reshape(b, 1, 1, 1)
    out = out.clamp(min=0.0)
    return torch.where(out <= level, out, level).reshape(b, 1, h, w)


def cfa_rows(values: torch.Tensor, cfa_index: torch.Tensor, width: int) -> torch.Tensor:
    """Per-channel values laid out as the two rows of the CFA tile, ``(B, 1, 2, width)``.

    A mosaic viewed as ``(B, H/2, 2, W)`` is multiplied by this row pair; broadcasting the 2x2
    tile itself would give the product an inner axis of length 2, which is not vectorised
    (several times slower on CPU).

    Args:
        values: ``(B, 3)`` R/G/B values.
        cfa_index: ``(B, 4)`` long, channel of each 2x2 position, row-major.
        width: even mosaic width W.
    """
    b = values.shape[0]
    tile = torch.gather(values, 1, cfa_index.to(values.device)).reshape(b, 1, 2, 1, 2)
    return tile.expand(b, 1, 2, width // 2, 2).reshape(b, 1, 2, width)


class WhiteBalance(nn.Module):
    """Module form: ``forward(mosaic, as_shot, cfa_index, temperature, tint)``.

    Args:
        highlight: a key of :data:`HIGHLIGHT_MODES`.
    """

    def __init__(self, highlight: str = DEFAULT_HIGHLIGHT) -> None:
        super().__init__()
        if highlight not in HIGHLIGHT_MODES:
            raise ValueError(f"unknown highlight mode {highlight!r}; choose from {sorted(HIGHLIGHT_MODES)}")
        self.highlight = highlight

    def forward(self, mosaic, as_shot, cfa_index, temperature=0.0, tint=0.0):  # noqa: D102
        return white_balance(mosaic, wb_gains(as_shot, temperature, tint), cfa_index, self.highlight)
