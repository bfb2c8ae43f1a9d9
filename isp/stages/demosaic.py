"""Bayer demosaicing by bilinear interpolation, as convolutions (any CFA phase, per image)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_INDEX = {"R": 0, "G": 1, "B": 2}
_K_RB = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4.0
_K_G = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4.0


def bayer_masks(patterns: str | Sequence[str], height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Colour masks of Bayer mosaics.

    Args:
        patterns: one CFA string (``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"``) or one per image.
        height: even mosaic height H.
        width: even mosaic width W.

    Returns:
        ``(B, 3, H, W)`` (B = 1 for a single string) with 1 where the pixel samples R, G, B.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    tiles = torch.zeros(len(patterns), 3, 2, 2, dtype=dtype)
    for b, pat in enumerate(patterns):
        for pos, letter in enumerate(pat):
            tiles[b, _INDEX[letter], pos // 2, pos % 2] = 1.0
    return tiles.to(device).repeat(1, 1, height // 2, width // 2)


def demosaic_bilinear(mosaic: torch.Tensor, patterns: str | Sequence[str]) -> torch.Tensor:
    """Bilinear demosaic.

    Known samples are kept; each missing value is the mean of the nearest same-colour samples
    (2 or 4 neighbours). Borders use reflection padding, which keeps the CFA phase.

    Args:
        mosaic: ``(B, 1, H, W)`` with even H, W >= 2.
        patterns: CFA string, or a sequence of B strings (one per image).

    Returns:
        ``(B, 3, H, W)`` RGB.

    Example:
        >>> rgb = demosaic_bilinear(torch.rand(2, 1, 8, 8), "RGGB")
        >>> rgb.shape
        torch.Size([2, 3, 8, 8])
    """
    if mosaic.dim() != 4 or mosaic.shape[1] != 1:
        raise ValueError(f"mosaic must be (B, 1, H, W), got {tuple(mosaic.shape)}")
    b, _, h, w = mosaic.shape
    if h % 2 or w % 2:
        raise ValueError(f"mosaic height and width must be even, got {h}x{w}")
    if not isinstance(patterns, str) and len(patterns) not in (1, b):
        raise ValueError(f"need 1 or {b} CFA patterns, got {len(patterns)}")
    masks = bayer_masks(patterns, h, w, device=mosaic.device, dtype=mosaic.dtype)
    sparse = F.pad(mosaic * masks, (1, 1, 1, 1), mode="reflect")
    weight = torch.stack([_K_RB, _K_G, _K_RB]).unsqueeze(1).to(mosaic.device, mosaic.dtype)
    return F.conv2d(sparse, weight, groups=3)


class Demosaic(nn.Module):
    """Module form of :func:`demosaic_bilinear`; the CFA pattern(s) are passed per call."""

    def forward(self, mosaic: torch.Tensor, patterns: str | Sequence[str]) -> torch.Tensor:  # noqa: D102
        return demosaic_bilinear(mosaic, patterns)
