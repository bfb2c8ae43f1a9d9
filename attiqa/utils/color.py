"""sRGB transfer functions and Rec. 709 luma: attiqa's one copy (``isp`` keeps its own)."""
from __future__ import annotations

import torch

__all__ = ["LUMA_WEIGHTS", "srgb_to_linear", "linear_to_srgb", "luma"]

LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)
"""Rec. 709 / sRGB luma weights of R, G, B."""


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 sRGB decoding (clips to ``[0, 1]`` first)."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 sRGB encoding (clips to ``[0, 1]``)."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def luma(x: torch.Tensor) -> torch.Tensor:
    """Rec. 709 luma ``(B, 1, H, W)`` of ``(B, 3, H, W)`` (weights applied to the values as given)."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)
