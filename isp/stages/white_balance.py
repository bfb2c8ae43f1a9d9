"""White balance on the Bayer mosaic: as-shot multipliers times temperature/tint adjustments."""
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


def white_balance(mosaic: torch.Tensor, gains: torch.Tensor, cfa_index: torch.Tensor) -> torch.Tensor:
    """Multiply each Bayer sample by its channel's gain and clip to ``[0, 1]`` (LibRaw's clip).

    Args:
        mosaic: ``(B, 1, H, W)`` black-subtracted, normalised to ``[0, 1]``; H, W even.
        gains: ``(B, 3)`` R/G/B gains.
        cfa_index: ``(B, 4)`` long, channel index (0 R, 1 G, 2 B) of each 2x2 position, row-major.

    Returns:
        ``(B, 1, H, W)`` in ``[0, 1]``.
    """
    b, _, h, w = mosaic.shape
    out = mosaic.reshape(b, h // 2, 2, w) * cfa_rows(gains.to(mosaic.dtype), cfa_index, w)
    return clamp01(out).reshape(b, 1, h, w)


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
    """Module form: ``forward(mosaic, as_shot, cfa_index, temperature, tint)``."""

    def forward(self, mosaic, as_shot, cfa_index, temperature=0.0, tint=0.0):  # noqa: D102
        return white_balance(mosaic, wb_gains(as_shot, temperature, tint), cfa_index)
