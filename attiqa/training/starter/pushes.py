"""Renderings pushed away from a photograph along the axes an ISP can move, and how far they are.

A *push* takes a correctly rendered photograph (sRGB in ``[0, 1]``) and moves it along one
axis, in one direction, by a magnitude ``m`` in ``[0, 1]`` (0 = the photograph itself). Two-sided
axes go both ways, since an ISP errs both ways:

==============  =========================================================================
direction       what ``m = 1`` does
==============  =========================================================================
``exposure+/-`` linear-light gain 2^(±2.5) (+: highlights clip)
``warm/cool``   white balance: linear R·2^(±0.5), B·2^(∓0.5), luminance kept (temperature)
``magenta/green`` white balance tint: linear G·2^(∓0.4), luminance kept
``contrast+/-`` sigmoidal tone curve x^g / (x^g + (1-x)^g) with g = 2^(±1.2)
``saturation+/-`` chroma about the luma scaled by 1 + 1.2 (+) or 1 - 0.9 (-)
``highlights/dimmed`` white level: ``highlights`` pulls the white point down to 0.6 (the top
                of the range clips, shadows kept); ``dimmed`` scales the range to 0.65 (whites grey)
``shadows/lifted`` black level: ``shadows`` pushes the black point up to 0.3 (the bottom of the
                range crushes to 0); ``lifted`` raises black to 0.3 (a faded, hazy look: grey night skies)
``halos``       unsharp mask, Gaussian sigma 2 px, amount 3 (over-sharpening halos)
``noise``       Gaussian noise, std 0.08 + signal-dependent 0.08·sqrt(x)
``blur``        Gaussian blur, sigma 2.5 px
``jpeg``        JPEG at quality 90 - 85 (Pillow)
==============  =========================================================================

Every push is monotone in ``m`` for a fixed generator (the same noise pattern is scaled).

:func:`pseudo_mos` turns the distance between a rendering and its photograph into the
starter's training target: ``1 / (1 + d)`` with ``d = mean ΔE00 / 8 + (1 - SSIM) / 0.25``
(ΔE00 between 4 x 4 box averages, SSIM on full-resolution luma).
Mean CIEDE2000 is the perceptual measure of tone and colour errors (exposure, casts, contrast,
saturation, clipping), but it barely moves under blur, noise, ringing or blocking, whose
per-pixel colour errors average out; SSIM on luma (Wang et al. 2004) is the measure of exactly
those structural errors and is nearly blind to a global colour cast. Their sum, each scaled so
that a clearly visible error counts about 1, ranks renderings along all axes on one scale.
"""
from __future__ import annotations

import io

import torch
import torch.nn.functional as F

from attiqa.utils.color import delta_e_2000, linear_to_srgb, luma, srgb_to_lab, srgb_to_linear

__all__ = ["DIRECTIONS", "TWO_SIDED", "push", "ssim", "perceptual_distance", "pseudo_mos"]

TWO_SIDED = {"exposure": ("exposure+", "exposure-"), "temperature": ("warm", "cool"),
             "tint": ("magenta", "green"), "contrast": ("contrast+", "contrast-"),
             "saturation": ("saturation+", "saturation-"), "white level": ("highlights", "dimmed"),
             "black level": ("shadows", "lifted")}
"""Axis -> its two directions."""

DIRECTIONS: tuple[str, ...] = (*(d for pair in TWO_SIDED.values() for d in pair),
                               "halos", "noise", "blur", "jpeg")
"""Every push direction, two-sided axes first."""

DE_SCALE = 8.0
SSIM_SCALE = 0.25
COLOUR_POOL = 4


def _gauss1d(sigma: float, dtype, device) -> torch.Tensor:
    radius = max(1, int(3.5 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float, pad: str = "reflect") -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)``; ``pad=None`` keeps only the valid interior."""
    k = _gauss1d(sigma, x.dtype, x.device)
    c, r = x.shape[1], (len(k) - 1) // 2
    if pad is not None:
        x = F.pad(x, (r, r, r, r), mode=pad)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def _wb(img: torch.Tensor, gains) -> torch.Tensor:
    """Linear-light per-channel gains, normalised to keep the luminance of grey."""
    g = torch.tensor(gains, dtype=img.dtype, device=img.device)
    g = g / (g * torch.tensor((0.2126, 0.7152, 0.0722), dtype=img.dtype, device=img.device)).sum()
    return linear_to_srgb(srgb_to_linear(img) * g.view(1, 3, 1, 1))


def _jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image
    import numpy as np

    out = []
    for x in img:
        arr = (x.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(dec).permute(2, 0, 1))
    return torch.stack(out).to(img)


def push(img: torch.Tensor, direction: str, m: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pushes renderings away from the photograph along one direction.

    Args:
        img: ``(B, 3, H, W)`` sRGB in ``[0, 1]``, the photograph's own rendering.
        direction: one of :data:`DIRECTIONS`.
        m: magnitude in ``[0, 1]``; 0 returns ``img`` unchanged.
        generator: random generator (``noise`` only).

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``.

    Example:
        >>> x = torch.rand(1, 3, 32, 32)
        >>> push(x, "exposure+", 0.5).mean() > x.mean()
        tensor(True)
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown push direction {direction!r}; choose one of {DIRECTIONS}")
    m = float(m)
    if m <= 0:
        return img.clone()
    x = img.clamp(0, 1)
    if direction in ("exposure+", "exposure-"):
        ev = 2.5 * m * (1 if direction == "exposure+" else -1)
        out = linear_to_srgb(srgb_to_linear(x) * 2.0 ** ev)
    elif direction in ("warm", "cool"):
        s = 0.5 * m * (1 if direction == "warm" else -1)
        out = _wb(x, (2.0 ** s, 1.0, 2.0 ** -s))
    elif direction in ("magenta", "green"):
        s = 0.4 * m * (-1 if direction == "magenta" else 1)
        out = _wb(x, (1.0, 2.0 ** s, 1.0))
    elif direction in ("contrast+", "contrast-"):
        gamma = 2.0 ** (1.2 * m * (1 if direction == "contrast+" else -1))
        xp, xn = x.clamp(1e-6, 1 - 1e-6) ** gamma, (1 - x).clamp(1e-6, 1 - 1e-6) ** gamma
        out = xp / (xp + xn)
    elif direction in ("saturation+", "saturation-"):
        s = 1 + 1.2 * m if direction == "saturation+" else 1 - 0.9 * m
        y = luma(x)
        out = y + s * (x - y)
    elif direction == "highlights":
        white = 1 - 0.4 * m
        knee = 0.5 * white
        out = torch.where(x < knee, x, knee + (x - knee) * (1 - knee) / (white - knee))
    elif direction == "dimmed":
        out = (1 - 0.35 * m) * x
    elif direction == "lifted":
        out = 0.3 * m + (1 - 0.3 * m) * x
    elif direction == "shadows":
        black, knee = 0.3 * m, 0.5
        out = torch.where(x > knee, x, knee - (knee - x) * knee / (knee - black))
    elif direction == "halos":
        out = x + 3.0 * m * (x - _blur(x, 2.0))
    elif direction == "noise":
        n = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        out = x + m * (0.08 + 0.08 * x.sqrt()) * n.to(x.device)
    elif direction == "blur":
        out = _blur(x, 2.5 * m)
    else:  # jpeg
        out = _jpeg(x, round(90 - 85 * m))
    return out.clamp(0, 1)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) of single-channel images, Gaussian window sigma 1.5 (11 taps).

    Matches ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range)``: the SSIM map is averaged over the
    pixels whose window lies inside the image.

    Args:
        x: ``(B, 1, H, W)`` or ``(1, 1, H, W)`` (one reference for all, its statistics computed once),
            ``H, W >= 11``.
        y: ``(B, 1, H, W)``.

    Returns:
        ``(B,)``.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, xx = _blur(torch.cat([x, x * x], dim=1), 1.5, pad=None).unbind(1)
    mu_y, yy, xy = _blur(torch.cat([y, y * y, x * y], dim=1), 1.5, pad=None).unbind(1)
    vx, vy, cov = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def perceptual_distance(reference: torch.Tensor, images: torch.Tensor,
                        colour_pool: int = COLOUR_POOL) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean CIEDE2000 and luma SSIM of ``images`` against ``reference``.

    The colour term compares ``colour_pool`` x ``colour_pool`` box averages of the sRGB values
    (colour differences as seen from a few times the viewing distance, a crude S-CIELAB; it is
    also 16 times cheaper); the fine detail is the SSIM term's.

    Args:
        reference: ``(B, 3, H, W)`` or ``(1, 3, H, W)`` (broadcast), sRGB in ``[0, 1]``.
        images: ``(B, 3, H, W)``.
        colour_pool: box size of the colour term (1 = per pixel).

    Returns:
        ``(mean ΔE00 (B,), SSIM (B,))``.
    """
    pool = (lambda x: F.avg_pool2d(x, colour_pool)) if colour_pool > 1 else (lambda x: x)  # noqa: E731
    lab_ref = srgb_to_lab(pool(reference)).expand(images.shape[0], -1, -1, -1)
    de = delta_e_2000(lab_ref, srgb_to_lab(pool(images))).flatten(1).mean(1)
    return de, ssim(luma(reference), luma(images))


def pseudo_mos(reference: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The starter's training target: ``1 / (1 + ΔE00 / 8 + (1 - SSIM) / 0.25)`` in ``(0, 1]``.

    1 for the photograph's own rendering, falling with the perceptual distance from it.
    """
    de, s = perceptual_distance(reference, images)
    return 1.0 / (1.0 + de / DE_SCALE + (1.0 - s).clamp_min(0) / SSIM_SCALE)
