"""sRGB transfer functions, Rec. 709 luma, CIELAB and CIEDE2000: attiqa's one copy (``isp`` keeps its own)."""
from __future__ import annotations

import torch

__all__ = ["LUMA_WEIGHTS", "srgb_to_linear", "linear_to_srgb", "luma", "srgb_to_lab", "delta_e_2000"]

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


# sRGB (D65) primaries -> CIE XYZ, and the D65 white (2° observer), as scikit-image uses them
_SRGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_D65_WHITE = (0.95047, 1.0, 1.08883)


def srgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """CIE 1976 L*a*b* (D65) of sRGB values.

    Args:
        x: ``(B, 3, H, W)`` sRGB in ``[0, 1]`` (clipped).

    Returns:
        ``(B, 3, H, W)``: L* in ``[0, 100]``, a*, b*.
    """
    m = torch.tensor(_SRGB_TO_XYZ, dtype=x.dtype, device=x.device)
    white = torch.tensor(_D65_WHITE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    xyz = torch.einsum("ij,bjhw->bihw", m, srgb_to_linear(x)) / white
    eps = (6.0 / 29.0) ** 3
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1.0 / 3.0), xyz / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=1)


def delta_e_2000(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005), per pixel.

    Args:
        lab1, lab2: ``(..., 3, H, W)`` L*a*b* (channel dimension ``-3``).

    Returns:
        ``(..., H, W)`` ΔE00 (0 = identical colours; about 2.3 is a just-noticeable difference).
    """
    l1, a1, b1 = lab1.unbind(-3)
    l2, a2, b2 = lab2.unbind(-3)
    c_bar = 0.5 * (torch.hypot(a1, b1) + torch.hypot(a2, b2))
    c7 = c_bar ** 7
    g = 0.5 * (1 - torch.sqrt(c7 / (c7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.rad2deg(torch.atan2(b1, a1p)) % 360.0
    h2p = torch.rad2deg(torch.atan2(b2, a2p)) % 360.0
    chroma0 = (c1p * c2p) == 0
    dh = h2p - h1p
    dh = torch.where(dh > 180.0, dh - 360.0, torch.where(dh < -180.0, dh + 360.0, dh))
    dh = torch.where(chroma0, torch.zeros_like(dh), dh)
    d_l, d_c = l2 - l1, c2p - c1p
    d_h = 2 * torch.sqrt(c1p * c2p) * torch.sin(torch.deg2rad(dh) / 2)
    l_bar, cp_bar = 0.5 * (l1 + l2), 0.5 * (c1p + c2p)
    hsum, hdiff = h1p + h2p, (h1p - h2p).abs()
    h_bar = torch.where(hdiff <= 180.0, hsum / 2, torch.where(hsum < 360.0, (hsum + 360.0) / 2, (hsum - 360.0) / 2))
    h_bar = torch.where(chroma0, hsum, h_bar)
    rad = torch.deg2rad
    t = (1 - 0.17 * torch.cos(rad(h_bar - 30)) + 0.24 * torch.cos(rad(2 * h_bar))
         + 0.32 * torch.cos(rad(3 * h_bar + 6)) - 0.20 * torch.cos(rad(4 * h_bar - 63)))
    d_theta = 30 * torch.exp(-(((h_bar - 275) / 25) ** 2))
    cp7 = cp_bar ** 7
    r_c = 2 * torch.sqrt(cp7 / (cp7 + 25.0 ** 7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / torch.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * cp_bar
    s_h = 1 + 0.015 * cp_bar * t
    r_t = -torch.sin(rad(2 * d_theta)) * r_c
    tl, tc, th = d_l / s_l, d_c / s_c, d_h / s_h
    return torch.sqrt((tl ** 2 + tc ** 2 + th ** 2 + r_t * tc * th).clamp_min(0))
