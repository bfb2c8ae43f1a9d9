"""Teachers: models that give unlabeled images five attribute scores.

Every teacher is an ``nn.Module`` with ``forward(images (B, 3, H, W) sRGB in [0, 1]) -> (B, 5)``,
columns in the order of :data:`attiqa.ATTRIBUTES`, higher = more of the good pole (sharper,
more contrast, brighter, more colourful, *less* noisy).

* ``clip`` (:class:`attiqa.teachers.clip.CLIPTeacher`): CLIP with antonym prompt pairs, the
  paper's teacher (needs CLIP weights from the Hugging Face hub or a local folder).
* ``analytic`` (:class:`AnalyticTeacher`): closed-form measures that need no weights, for
  offline use (the starter model, tests, the ``analytic`` reward). All of them are
  differentiable.

The analytic measures (``Y`` = Rec. 709 luma of the sRGB-encoded image; each raw measure is
mapped to ``[0, 1]`` by a fixed monotone squashing whose constants put typical photographs
in the middle of the range):

==============  ======================================================  ==========================
attribute       raw measure                                              squashing
==============  ======================================================  ==========================
sharpness       blur effect b of Crété-Roffet et al. (2007): the share   1 − b
                of gradient that survives re-blurring ``Y`` with an
                11-px box filter (:func:`blur_effect`; = skimage's)
contrast        RMS contrast: standard deviation of ``Y`` (Peli 1990)   1 − exp(−c / 0.2)
brightness      mean CIE 1976 lightness L* of the linear luminance      L* / 100
colorfulness    Hasler & Süsstrunk (2003) colourfulness M on the        1 − exp(−M / 45)
                0–255 scale: sqrt(σ_rg² + σ_yb²) + 0.3 sqrt(μ_rg² + μ_yb²)
noisiness       Immerkær (1996) fast noise estimate: σ = sqrt(π/2) ·     exp(−σ / 0.03)
                mean|Y ∗ N| / 6 with N the 3×3 Laplacian-difference mask
==============  ======================================================  ==========================

Each is monotone under its own distortion of :mod:`attiqa.data.distortions` (tested): a blurred image
loses less of its gradient when re-blurred, blending towards the mean scales the RMS contrast, an exposure
gain moves L*, blending towards luma scales both opponent channels, and scaling added noise
raises the mask response.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attiqa.attributes import ATTRIBUTES
from attiqa.utils.color import luma, srgb_to_linear

__all__ = ["AnalyticTeacher", "analytic_measures", "blur_effect"]


def _symmetric_pad(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """Half-sample symmetric padding (``d c b a | a b c d``), SciPy's ``reflect`` mode."""
    n = x.shape[dim]
    parts = [x.narrow(dim, 0, before).flip(dim), x, x.narrow(dim, n - after, after).flip(dim)]
    return torch.cat(parts, dim=dim)


def blur_effect(gray: torch.Tensor, h_size: int = 11) -> torch.Tensor:
    """Crété-Roffet et al. (2007) blur effect of greyscale images, 0 = sharp, 1 = maximally blurred.

    The image is re-blurred with an ``h_size`` box filter along each axis; a sharp image loses much
    of its gradient there, a blurred one little. Per axis, ``B = (M1 - M2) / M1`` with ``M1`` the
    summed absolute Sobel response of the image and ``M2`` the summed positive part of its drop
    after re-blurring (borders excluded); the result is the maximum over the two axes. Same
    definition and boundary handling as ``skimage.measure.blur_effect`` (tested against it), but
    batched and differentiable.

    Args:
        gray: ``(B, 1, H, W)``, ``H, W >= h_size``.

    Returns:
        ``(B,)`` in ``[0, 1]``.
    """
    eps = 1e-10
    x = gray
    smooth = x.new_tensor([1.0, 2.0, 1.0]) / 4
    edge = x.new_tensor([1.0, 0.0, -1.0])
    half = h_size // 2
    out = []
    for ax in (2, 3):  # rows (vertical derivative), then columns
        other = 5 - ax

        def corr1d(t, w, dim):
            r = len(w) // 2
            t = _symmetric_pad(t, r, len(w) - 1 - r, dim)
            n = t.shape[dim] - len(w) + 1
            return sum(w[k] * t.narrow(dim, k, n) for k in range(len(w)))

        def sobel(t):
            return corr1d(corr1d(t, edge, ax), smooth, other)

        padded = _symmetric_pad(x, half, h_size - 1 - half, ax)
        filt = padded.unfold(ax, h_size, 1).mean(dim=-1)
        im_sharp = sobel(x).abs().clamp_min(eps)
        im_blur = sobel(filt).abs().clamp_min(eps)
        t = (im_sharp - im_blur).clamp_min(0)
        core = (slice(None), slice(None), slice(2, x.shape[2] - 1), slice(2, x.shape[3] - 1))
        m1 = im_sharp[core].sum(dim=(1, 2, 3))
        m2 = t[core].sum(dim=(1, 2, 3))
        out.append((m1 - m2).abs() / m1)
    return torch.maximum(out[0], out[1])


def analytic_measures(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The raw (unsquashed) analytic measures, each ``(B,)``.

    Returns:
        ``{"blur_effect": b, "rms_contrast": c, "lightness": L*, "colorfulness": M, "noise_sigma": σ}``.
    """
    x = images.clamp(0, 1)
    y = luma(x)
    blur = blur_effect(y)
    rms = y.flatten(1).std(dim=1)
    lum = luma(srgb_to_linear(x)).flatten(1).mean(dim=1)  # mean relative luminance
    # CIE 1976 lightness of the mean luminance (smooth at the linear segment boundary)
    eps = (6 / 29) ** 3
    f = torch.where(lum > eps, lum.clamp_min(eps) ** (1 / 3), lum / (3 * (6 / 29) ** 2) + 4 / 29)
    lightness = 116 * f - 16
    r, g, b = (x * 255.0).unbind(dim=1)
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    colorfulness = (rg.var(dim=1) + yb.var(dim=1) + 1e-6).sqrt() + \
        0.3 * (rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2 + 1e-6).sqrt()
    mask = y.new_tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]).view(1, 1, 3, 3)
    resp = F.conv2d(y, mask)  # valid region only, as in Immerkær's estimator
    sigma = math.sqrt(math.pi / 2) / 6 * resp.abs().mean(dim=(1, 2, 3))
    return {"blur_effect": blur, "rms_contrast": rms, "lightness": lightness, "colorfulness": colorfulness,
            "noise_sigma": sigma}


class AnalyticTeacher(nn.Module):
    """Closed-form attribute scores in ``[0, 1]`` (see the module docstring for the formulas).

    Example:
        >>> t = AnalyticTeacher()
        >>> t(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 5])
    """

    name = "analytic"
    attributes = ATTRIBUTES

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        m = analytic_measures(images.float())
        sharp = 1 - m["blur_effect"]
        contrast = 1 - torch.exp(-m["rms_contrast"] / 0.2)
        bright = (m["lightness"] / 100).clamp(0, 1)
        colorful = 1 - torch.exp(-m["colorfulness"] / 45)
        clean = torch.exp(-m["noise_sigma"] / 0.03)
        return torch.stack([sharp, contrast, bright, colorful, clean], dim=1)


