"""Graded synthetic distortions of sRGB images, one per quality attribute (and a few more).

``distort(images, kind, level)`` with ``level`` in ``[0, 1]``: 0 returns the input unchanged,
1 is the strongest version. Every distortion is monotone in ``level`` for a fixed random
generator (the same noise pattern is scaled), which is what the proxy task of prompt selection
and the held-out rank checks rely on.

==================  =====================================================================
kind                what ``level`` controls
==================  =====================================================================
``blur``            Gaussian blur, sigma = 3.0 · level px (kornia)
``noise``           additive Gaussian noise, std = 0.15 · level, plus Poisson-like
                    signal-dependent part std = 0.10 · level · sqrt(x)
``jpeg``            JPEG compression (Pillow), quality = 95 − 90 · level
``underexposure``   linear-light gain 2^(−4 · level) (down to −4 EV)
``overexposure``    linear-light gain 2^(+3 · level), clipped (blown highlights)
``desaturation``    blend towards the Rec. 709 luma by ``level``
``contrast_loss``   blend towards each image's mean by 0.85 · level
==================  =====================================================================

:data:`ATTRIBUTE_DISTORTION` names the distortion that lowers each attribute.
"""
from __future__ import annotations

import io

import numpy as np
import torch

from attiqa.utils.color import linear_to_srgb, luma, srgb_to_linear

__all__ = ["DISTORTIONS", "ATTRIBUTE_DISTORTION", "distort"]

DISTORTIONS = ("blur", "noise", "jpeg", "underexposure", "overexposure", "desaturation", "contrast_loss")

ATTRIBUTE_DISTORTION = {
    "sharpness": "blur",
    "contrast": "contrast_loss",
    "brightness": "underexposure",
    "colorfulness": "desaturation",
    "noisiness": "noise",
}


def _blur(x, level, g):
    import kornia

    sigma = 3.0 * level
    k = 2 * int(np.ceil(3 * sigma)) + 1
    k = min(k, 2 * (min(x.shape[-2:]) // 2) - 1)
    if k < 3:
        return x
    return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


def _noise(x, level, g):
    n1 = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    n2 = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    return (x + level * (0.15 * n1 + 0.10 * x.clamp_min(0).sqrt() * n2)).clamp(0, 1)


def _jpeg(x, level, g):
    from PIL import Image

    quality = int(round(95 - 90 * level))
    out = []
    for img in x.detach().clamp(0, 1).cpu():
        arr = (img.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(dec).permute(2, 0, 1))
    return torch.stack(out).to(dtype=x.dtype, device=x.device)


def _exposure(x, ev):
    return linear_to_srgb(srgb_to_linear(x) * 2.0 ** ev)


def _desaturate(x, level, g):
    y = luma(x)
    return (y + (1 - level) * (x - y)).clamp(0, 1)


def _contrast_loss(x, level, g):
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + (1 - 0.85 * level) * (x - mean)).clamp(0, 1)


_FUNCS = {
    "blur": _blur,
    "noise": _noise,
    "jpeg": _jpeg,
    "underexposure": lambda x, level, g: _exposure(x, -4.0 * level),
    "overexposure": lambda x, level, g: _exposure(x, 3.0 * level),
    "desaturation": _desaturate,
    "contrast_loss": _contrast_loss,
}


def distort(images: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Applies one distortion at one level.

    Args:
        images: ``(B, 3, H, W)`` sRGB in ``[0, 1]``.
        kind: one of :data:`DISTORTIONS`.
        level: strength in ``[0, 1]``; 0 returns ``images`` unchanged.
        generator: CPU generator for the random distortions (``noise``).

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``, same dtype and device.

    Raises:
        ValueError: unknown kind, level outside ``[0, 1]``, wrong shape.
    """
    if kind not in _FUNCS:
        raise ValueError(f"unknown distortion {kind!r}; choose one of {DISTORTIONS}")
    level = float(level)
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"distortion level must be in [0, 1], got {level}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if level == 0.0:
        return images
    return _FUNCS[kind](images, level, generator)
