"""Reference ISP: the rendering of :class:`isp.ISP`, written plainly from Kornia's operations.

:class:`isp.ISP` is fast because it is hand-fused (single autograd nodes with hand-written
backward passes, shifted slices instead of convolutions, phase planes, row tiles). This module
renders the same image the slow, obvious way, so that the fast path can be held equal to it in
value and in gradient (``tests/isp/test_isp_reference.py``). It uses no code of
:mod:`isp.stages`: every operation is Kornia's own where Kornia has the same operation, and plain
torch through autograd elsewhere (no custom ``torch.autograd.Function``, no tiling, no in-place
tricks). Being autograd all the way, it is also twice differentiable.

Stage by stage (``x`` an image ``(B, C, H, W)``, per-image parameters broadcast as ``(B, 1, 1, 1)``):

========================  ===================================================================
stage                     how it is computed here
========================  ===================================================================
white balance             mosaic times the CFA tile of the gains, ``torch.clamp`` to ``[0, 1]``
demosaic                  ``"bilinear"``: :func:`kornia.color.raw_to_rgb` (one call per CFA)
colour matrix             ``einsum`` with the batch's camera -> sRGB matrices, clamp
denoise                   luminance by :func:`kornia.color.rgb_to_grayscale` with the sRGB
                          luma weights, binomial low-pass by
                          :func:`kornia.filters.filter2d_separable` with
                          :func:`kornia.filters.kernels.get_pascal_kernel_1d`; chrominance
                          ``x - Y`` through ``avg_pool2d`` / the same low-pass / bilinear
                          ``interpolate``; clamp
exposure                  :func:`kornia.enhance.adjust_contrast` by ``2**ev`` (a clipped gain)
highlights / shadows      ``x + h x^2 (1 - x) + s x (1 - x)^2``
saturation / vibrance     ``clamp(Y + f (x - Y))``, ``f = (1 + s)(1 + v (1 - sat))``
sRGB encoding             :func:`kornia.color.linear_rgb_to_rgb`
brightness / contrast     ``e + a e (1 - e)``, then ``b + c b (1 - b)(2 b - 1)``
sharpen                   ``clamp(x + k (Y - lowpass(Y)))``
========================  ===================================================================

Where Kornia's operation is not the same, plain torch is used and the difference is this:

* :func:`kornia.filters.gaussian_blur2d` samples a Gaussian; the pipeline's low-pass of
  sigma = 1 px is the binomial kernel ``[1 4 6 4 1] / 16`` (variance exactly 1), whose taps
  differ from the sampled Gaussian's (``[0.054 0.244 0.403 ...]`` for a 5-tap window) by up to
  0.03. Kornia's Pascal kernel through its separable filter is the same operation, so that is
  used. (The Gaussian of :func:`kornia.filters.gaussian_blur2d` is used where the pipeline does
  use a sampled Gaussian: the full-resolution chroma fallback for images under 8 px.)
* :func:`kornia.filters.unsharp_mask` adds the full detail of every channel back with gain 1;
  the pipeline adds ``k`` times the *luminance* detail to all three channels.
* :func:`kornia.enhance.adjust_saturation` works in HSV and
  :func:`kornia.enhance.adjust_saturation_with_gray_subtraction` blends toward BT.601 grey with
  one factor per image; the pipeline blends toward the sRGB luminance with a per-pixel factor.
* :func:`kornia.enhance.adjust_brightness` is additive, its ``adjust_contrast`` a gain (used here
  for the exposure); the pipeline's brightness and contrast are curves that keep 0 and 1 fixed.
* Kornia has no general per-image 3x3 colour matrix (``einsum``) and no Bayer white balance.
* The sRGB encoding: Kornia takes the linear branch for ``x <= 0.0031308`` (IEC 61966-2-1); the
  fast path computes ``min(linear, power)``, and the two branches cross about 1.3e-7 below the
  threshold, so on ``[0.0031307, 0.0031308)`` the fast path's value is lower by at most 2.9e-8
  (its gradient there is the linear branch's, as here).

Demosaicing methods are looked up by name in :data:`DEMOSAIC_METHODS`, so a reference for
another method can be added next to the bilinear one.

Example:
    >>> ref = ReferenceISP()  # doctest: +SKIP
    >>> rgb = ref(batch.to(dtype=torch.float64), params.double())  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from .color import LUMA_WEIGHTS
from .params import PARAM_INDEX, as_param_batch

__all__ = [
    "DEMOSAIC_METHODS",
    "KORNIA_CFA",
    "ReferenceISP",
    "reference_render",
    "reference_demosaic_bilinear",
    "reference_white_balance",
]

#: The pipeline's CFA strings (top-left 2x2 cell, row-major) as Kornia's OpenCV-style names, which
#: read the pattern from pixel (1, 1).
KORNIA_CFA: dict[str, kornia.color.CFA] = {
    "RGGB": kornia.color.CFA.BG,
    "GRBG": kornia.color.CFA.GB,
    "BGGR": kornia.color.CFA.RG,
    "GBRG": kornia.color.CFA.GR,
}
_CHANNEL = {"R": 0, "G": 1, "B": 2}

#: Standard deviations (px) of the pipeline's low-passes: luminance denoise, chrominance denoise
#: (at full resolution; half of it at half resolution), sharpening.
LUMA_SIGMA, CHROMA_SIGMA, SHARPEN_SIGMA = 1.0, 2.0, 1.0
#: Saturation: ``(max - min) / (max + SAT_EPS)``.
SAT_EPS = 1e-4


def _per_image(v: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, 1, 1)``."""
    return v.reshape(-1, 1, 1, 1)


def _luminance(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` linear sRGB -> ``(B, 1, H, W)`` relative luminance (sRGB Y row)."""
    return kornia.color.rgb_to_grayscale(x, rgb_weights=torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device))


# ---------------------------------------------------------------------------------------------
# white balance and demosaicing


def reference_wb_gains(as_shot: torch.Tensor, temperature: torch.Tensor, tint: torch.Tensor) -> torch.Tensor:
    """``(B, 3)`` R/G/B gains: as-shot times ``2**(t/2)``, ``2**(-tint/2)``, ``2**(-t/2)``.

    Args:
        as_shot: ``(B, 3)`` as-shot multipliers.
        temperature: ``(B,)`` in ``[-1, 1]``.
        tint: ``(B,)`` in ``[-1, 1]``.
    """
    return as_shot * torch.exp2(torch.stack([temperature / 2, -tint / 2, -temperature / 2], dim=1))


def reference_white_balance(mosaic: torch.Tensor, gains: torch.Tensor, patterns: Sequence[str]) -> torch.Tensor:
    """Each Bayer sample times its colour's gain, clipped to ``[0, 1]`` (LibRaw's clip).

    Args:
        mosaic: ``(B, 1, H, W)`` normalised mosaic, H and W even.
        gains: ``(B, 3)`` R/G/B gains.
        patterns: B CFA strings.

    Returns:
        ``(B, 1, H, W)``.
    """
    _, _, h, w = mosaic.shape
    idx = torch.tensor([[_CHANNEL[c] for c in p] for p in patterns], device=gains.device)
    tile = torch.gather(gains, 1, idx).reshape(-1, 1, 2, 2)  # gain of each CFA position
    return torch.clamp(mosaic * tile.repeat(1, 1, h // 2, w // 2), 0.0, 1.0)


def reference_demosaic_bilinear(mosaic: torch.Tensor, patterns: Sequence[str]) -> torch.Tensor:
    """Bilinear demosaicing by :func:`kornia.color.raw_to_rgb`, one call per image.

    Kornia keeps the known samples, averages the 2 or 4 nearest same-colour samples for red and
    blue (bilinear upsampling of the colour's plane, replicated at the far border) and the 4
    direct neighbours for green (reflection padding), which is the pipeline's bilinear
    demosaic, borders included.

    Args:
        mosaic: ``(B, 1, H, W)``, H and W even.
        patterns: B CFA strings (``RGGB``, ``BGGR``, ``GRBG``, ``GBRG``).

    Returns:
        ``(B, 3, H, W)``.
    """
    unknown = sorted(set(patterns) - set(KORNIA_CFA))
    if unknown:
        raise ValueError(f"CFA pattern must be one of {sorted(KORNIA_CFA)}, got {unknown}")
    return torch.cat([kornia.color.raw_to_rgb(mosaic[i : i + 1], KORNIA_CFA[p]) for i, p in enumerate(patterns)])


#: Demosaicing methods of the reference by name: ``fn(white-balanced mosaic (B, 1, H, W), B CFA
#: strings) -> (B, 3, H, W)``, each built from Kornia or plain torch through autograd.
DEMOSAIC_METHODS: dict[str, Callable[[torch.Tensor, Sequence[str]], torch.Tensor]] = {
    "bilinear": reference_demosaic_bilinear,
}


# ---------------------------------------------------------------------------------------------
# low-passes


def _binomial_lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable binomial low-pass of standard deviation ``sigma``: ``4 sigma^2 + 1`` taps of
    Pascal's triangle, normalised (1 px: ``[1 4 6 4 1] / 16``); reflection padding, or
    replication when a side is not larger than the radius (reflection needs one more pixel)."""
    taps = round(4.0 * sigma**2) + 1
    k = kornia.filters.kernels.get_pascal_kernel_1d(taps, norm=True, dtype=x.dtype, device=x.device).reshape(1, -1)
    border = "replicate" if min(x.shape[-2:]) <= taps // 2 else "reflect"
    return kornia.filters.filter2d_separable(x, k, k, border_type=border)


def _gaussian_lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Sampled, normalised Gaussian of radius ``ceil(3 sigma)`` by :func:`kornia.filters.gaussian_blur2d`."""
    r = int(-(-3.0 * sigma // 1))
    border = "replicate" if min(x.shape[-2:]) <= r else "reflect"
    return kornia.filters.gaussian_blur2d(x, 2 * r + 1, (sigma, sigma), border_type=border)


def _chroma_lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The chroma low-pass: 2x2 mean, binomial low-pass of ``sigma / 2`` at half resolution,
    2x bilinear upsampling (half-pixel centres); images with an odd side or a side under 8 px
    take a full-resolution Gaussian of ``sigma`` instead."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2 or min(h, w) < 8:
        return _gaussian_lowpass(x, sigma)
    half = _binomial_lowpass(F.avg_pool2d(x, 2), sigma / 2.0)
    return F.interpolate(half, scale_factor=2, mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------
# the stages after demosaicing (all per-image parameters (B,))


def reference_denoise(x: torch.Tensor, luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """Luminance ``Y`` moved toward its low-pass by ``a``, chrominance ``C = x - Y`` toward its
    low-pass by ``c``, clipped to ``[0, 1]``. ``x``: ``(B, 3, H, W)`` linear sRGB.

    Written as ``x`` plus the two changes, so that zero strength returns ``x`` bit for bit (a
    value clipped to exactly 0 or 1 upstream stays there, and the clip passes its gradient)."""
    y = _luminance(x)
    c = x - y
    dy = _per_image(luma) * (_binomial_lowpass(y, LUMA_SIGMA) - y)
    dc = _per_image(chroma) * (_chroma_lowpass(c, CHROMA_SIGMA) - c)
    return torch.clamp(x + dy + dc, 0.0, 1.0)


def reference_tone(x: torch.Tensor, ev: torch.Tensor, highlights: torch.Tensor, shadows: torch.Tensor) -> torch.Tensor:
    """Exposure (``clip(x 2^ev)``, Kornia's clipped gain), then ``x + h x^2 (1-x) + s x (1-x)^2``."""
    x = kornia.enhance.adjust_contrast(x, torch.exp2(ev), clip_output=True)
    h, s = _per_image(highlights), _per_image(shadows)
    return x + h * x**2 * (1 - x) + s * x * (1 - x) ** 2


def reference_saturate(x: torch.Tensor, saturation: torch.Tensor, vibrance: torch.Tensor) -> torch.Tensor:
    """``clip(Y + f (x - Y))`` with ``f = (1 + s)(1 + v (1 - sat))``, ``sat = (max - min) / (max + eps)``."""
    y = _luminance(x)
    mx, mn = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    sat = (mx - mn) / (mx + SAT_EPS)
    f = (1 + _per_image(saturation)) * (1 + _per_image(vibrance) * (1 - sat))
    return torch.clamp(x + (f - 1) * (x - y), 0.0, 1.0)  # = Y + f (x - Y); exactly x at f = 1


def reference_encode_curves(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """Kornia's sRGB encoding, then the brightness curve ``e + a e (1 - e)`` and the contrast
    S-curve ``b + c b (1 - b)(2 b - 1)``."""
    e = kornia.color.linear_rgb_to_rgb(x)
    a, c = _per_image(brightness), _per_image(contrast)
    b = e + a * e * (1 - e)
    return b + c * b * (1 - b) * (2 * b - 1)


def reference_sharpen(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """``clip(x + k (Y - lowpass(Y)))``: the luminance detail added to every channel."""
    y = _luminance(x)
    return torch.clamp(x + _per_image(amount) * (y - _binomial_lowpass(y, SHARPEN_SIGMA)), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# the pipeline


def reference_render(batch, params: torch.Tensor | None = None, *, demosaic: str = "bilinear",
                     validate: bool = True, unit: bool = False) -> torch.Tensor:
    """Render a batch as :class:`isp.ISP` does, untiled, through Kornia and autograd.

    Args:
        batch: an :class:`isp.RawBatch`; the computation runs in its mosaic's dtype (use
            ``batch.to(dtype=torch.float64)`` for a precise comparison).
        params: ``(B, P)`` physical parameters, or ``(P,)`` for every image; None = neutral.
        demosaic: a name in :data:`DEMOSAIC_METHODS`.
        validate: check finiteness and ranges.
        unit: ``params`` are in the unit box ``[-1, 1]``.

    Returns:
        ``(B, 3, H, W)`` sRGB in ``[0, 1]`` (orientation not applied).

    Raises:
        ValueError: an unknown demosaicing method, or parameters :class:`isp.ISP` rejects.
    """
    if demosaic not in DEMOSAIC_METHODS:
        raise ValueError(f"unknown reference demosaic {demosaic!r}; known: {sorted(DEMOSAIC_METHODS)}")
    mosaic = batch.linear
    p = as_param_batch(params, len(batch), validate=validate, unit=unit, device=mosaic.device, dtype=mosaic.dtype)
    P = {n: p[:, i] for n, i in PARAM_INDEX.items()}
    gains = reference_wb_gains(batch.as_shot_wb.to(p.dtype), P["wb_temperature"], P["wb_tint"])
    x = DEMOSAIC_METHODS[demosaic](reference_white_balance(mosaic, gains, batch.patterns), batch.patterns)
    x = torch.clamp(torch.einsum("bij,bjhw->bihw", batch.cam_to_srgb.to(x.dtype), x), 0.0, 1.0)
    x = reference_denoise(x, P["denoise_luma"], P["denoise_chroma"])
    x = reference_tone(x, P["exposure"], P["highlights"], P["shadows"])
    x = reference_saturate(x, P["saturation"], P["vibrance"])
    x = reference_encode_curves(x, P["brightness"], P["contrast"])
    return reference_sharpen(x, P["sharpen"])


class ReferenceISP(nn.Module):
    """Module form of :func:`reference_render` (same call as :class:`isp.ISP`).

    Args:
        demosaic: a name in :data:`DEMOSAIC_METHODS`.
    """

    def __init__(self, demosaic: str = "bilinear") -> None:
        super().__init__()
        if demosaic not in DEMOSAIC_METHODS:
            raise ValueError(f"unknown reference demosaic {demosaic!r}; known: {sorted(DEMOSAIC_METHODS)}")
        self.demosaic = demosaic

    def forward(self, batch, params: torch.Tensor | None = None, validate: bool = True, *,
                unit: bool = False) -> torch.Tensor:  # noqa: D102
        return reference_render(batch, params, demosaic=self.demosaic, validate=validate, unit=unit)
