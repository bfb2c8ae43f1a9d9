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
white balance             mosaic times the CFA tile of the gains, clipped at ``min(1, min gain)``
                          (``neutral`` highlights) or ``torch.clamp`` to ``[0, 1]`` (``channel``)
demosaic                  ``"bilinear"``: :func:`kornia.color.raw_to_rgb` (one call per CFA);
                          ``"mhc"``: ``conv2d`` with the published 5x5 kernels; ``"menon"``
                          (default): full-resolution masks, shifts and ``torch.where``
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
    "reference_demosaic_mhc",
    "reference_demosaic_menon",
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


def reference_white_balance(mosaic: torch.Tensor, gains: torch.Tensor, patterns: Sequence[str],
                            highlight: str = "neutral") -> torch.Tensor:
    """Each Bayer sample times its colour's gain, clipped to ``[0, 1]`` (``channel``, LibRaw's
    clip) or to ``[0, min(1, min gain)]`` (``neutral``: saturated samples all end at the lowest
    channel's saturation point; the gradient passes at the level, goes to it above).

    Args:
        mosaic: ``(B, 1, H, W)`` normalised mosaic, H and W even.
        gains: ``(B, 3)`` R/G/B gains.
        patterns: B CFA strings.
        highlight: ``neutral`` or ``channel``.

    Returns:
        ``(B, 1, H, W)``.
    """
    _, _, h, w = mosaic.shape
    idx = torch.tensor([[_CHANNEL[c] for c in p] for p in patterns], device=gains.device)
    tile = torch.gather(gains, 1, idx).reshape(-1, 1, 2, 2)  # gain of each CFA position
    x = mosaic * tile.repeat(1, 1, h // 2, w // 2)
    if highlight == "channel":
        return torch.clamp(x, 0.0, 1.0)
    if highlight != "neutral":
        raise ValueError(f"unknown highlight mode {highlight!r}")
    level = torch.clamp(gains.amin(dim=1), max=1.0).reshape(-1, 1, 1, 1)
    x = torch.clamp(x, min=0.0)
    return torch.where(x <= level, x, level)


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


# ---------------------------------------------------------------------------------------------
# Malvar-He-Cutler and Menon demosaicing, full resolution


#: Reflection padding of the Menon reference (the pipeline pads the same; the centre does not
#: depend on it).
MENON_PAD = 14

#: Malvar-He-Cutler kernels (ICASSP 2004), in eighths: green at red/blue; red at green in a red
#: row (its transpose: in a blue row); red at blue. Blue is symmetric.
MHC_KERNELS = {
    "g_at_rb": [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]],
    "row": [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]],
    "diag": [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]],
}


def _colour_masks(pattern: str, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(H, W)`` bool masks of the red, green and blue samples of a Bayer mosaic."""
    out = []
    for c in "RGB":
        tile = torch.tensor([[pattern[0] == c, pattern[1] == c], [pattern[2] == c, pattern[3] == c]], device=device)
        out.append(tile.repeat(h // 2, w // 2))
    return tuple(out)


def _reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflection padding by ``pad`` on all four sides, in rounds when the image is not larger
    than ``pad`` (each round reflects the result of the last, which keeps every pixel's CFA
    parity; the total shift ``pad`` is even)."""
    while pad > 0:
        k = min(pad, x.shape[-2] - 1, x.shape[-1] - 1)
        x = F.pad(x, (k, k, k, k), mode="reflect")
        pad -= k
    return x


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]``, zero outside."""
    h, w = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    xp = F.pad(x, (p, p, p, p))
    return xp[..., p + dy : p + dy + h, p + dx : p + dx + w]


def _mhc_one(mosaic: torch.Tensor, pattern: str) -> torch.Tensor:
    """MHC on one CFA group: the 5x5 kernels by ``conv2d`` of the mosaic reflect-padded by 2,
    each pixel taking the kernel its position and colour call for."""
    k = torch.tensor([MHC_KERNELS["g_at_rb"], MHC_KERNELS["row"], list(map(list, zip(*MHC_KERNELS["row"]))),
                      MHC_KERNELS["diag"]], dtype=mosaic.dtype, device=mosaic.device) / 8
    g_rb, row, col, diag = F.conv2d(_reflect_pad(mosaic, 2), k.unsqueeze(1)).unbind(1)
    x = mosaic[:, 0]
    rm, gm, bm = _colour_masks(pattern, x.shape[-2], x.shape[-1], x.device)
    red_row = rm.any(dim=1, keepdim=True)
    green = torch.where(gm, x, g_rb)
    red = torch.where(rm, x, torch.where(gm, torch.where(red_row, row, col), diag))
    blue = torch.where(bm, x, torch.where(gm, torch.where(red_row, col, row), diag))
    return torch.stack([red, green, blue], dim=1)


def _per_pattern(fn, mosaic: torch.Tensor, patterns: Sequence[str]) -> torch.Tensor:
    unknown = sorted(set(patterns) - set(KORNIA_CFA))
    if unknown:
        raise ValueError(f"CFA pattern must be one of {sorted(KORNIA_CFA)}, got {unknown}")
    return torch.cat([fn(mosaic[i : i + 1], p) for i, p in enumerate(patterns)])


def reference_demosaic_mhc(mosaic: torch.Tensor, patterns: Sequence[str]) -> torch.Tensor:
    """Malvar-He-Cutler demosaicing, one ``conv2d`` per image (the pipeline's ``mhc``).

    Args:
        mosaic: ``(B, 1, H, W)``, H and W even.
        patterns: B CFA strings.

    Returns:
        ``(B, 3, H, W)``.
    """
    return _per_pattern(_mhc_one, mosaic, patterns)


def reference_demosaic_menon(mosaic: torch.Tensor, patterns: Sequence[str], refine: bool = True) -> torch.Tensor:
    """Menon et al. 2007 directional demosaicing with refinement (the pipeline's ``menon``):
    directional green estimates, decision by summed colour-difference gradients, colour
    differences along the decision, refining step; full resolution, autograd through
    ``torch.where``.

    Args:
        mosaic: ``(B, 1, H, W)``, H and W even, larger than 14.
        patterns: B CFA strings.
        refine: run the refining step.

    Returns:
        ``(B, 3, H, W)``.
    """
    return _per_pattern(lambda m, p: _menon_one(m, p, refine), mosaic, patterns)


def _menon_one(mosaic: torch.Tensor, pattern: str, refine: bool = True) -> torch.Tensor:
    """Menon on one CFA group: colour masks, zero-filled shifts and ``torch.where``, on the mosaic
    reflect-padded by :data:`MENON_PAD` pixels."""
    p = MENON_PAD
    x = _reflect_pad(mosaic, p)
    h, w = x.shape[-2:]
    rm, gm, bm = _colour_masks(pattern, h, w, x.device)
    red_row = rm.any(dim=1, keepdim=True).expand(h, w)
    blue_row = ~red_row
    red_col = rm.any(dim=0, keepdim=True).expand(h, w)
    blue_col = ~red_col
    s = _shift
    hmean = lambda t: (s(t, 0, -1) + s(t, 0, 1)) / 2  # noqa: E731
    vmean = lambda t: (s(t, -1, 0) + s(t, 1, 0)) / 2  # noqa: E731
    hmean3 = lambda t: (s(t, 0, -1) + t + s(t, 0, 1)) / 3  # noqa: E731
    vmean3 = lambda t: (s(t, -1, 0) + t + s(t, 1, 0)) / 3  # noqa: E731
    zero = torch.zeros_like(x)
    gh = torch.where(gm, x, (s(x, 0, -1) + s(x, 0, 1)) / 2 + (2 * x - s(x, 0, -2) - s(x, 0, 2)) / 4)
    gv = torch.where(gm, x, (s(x, -1, 0) + s(x, 1, 0)) / 2 + (2 * x - s(x, -2, 0) - s(x, 2, 0)) / 4)
    ch = torch.where(gm, zero, x - gh)
    cv = torch.where(gm, zero, x - gv)
    dh = (ch - s(ch, 0, 2)).abs()
    dv = (cv - s(cv, 2, 0)).abs()
    sum_h = 3 * (dh + s(dh, 0, -2)) + s(dh, -2, 0) + s(dh, 2, 0) + s(dh, -2, -2) + s(dh, 2, -2) + s(dh, -1, -1) + s(dh, 1, -1)
    sum_v = 3 * (dv + s(dv, -2, 0)) + s(dv, 0, -2) + s(dv, 0, 2) + s(dv, -2, -2) + s(dv, -2, 2) + s(dv, -1, -1) + s(dv, -1, 1)
    horiz = sum_v >= sum_h
    g = torch.where(gm, x, torch.where(horiz, gh, gv))
    r = torch.where(rm, x, zero)
    b = torch.where(bm, x, zero)
    r = torch.where(gm & red_row, g + hmean(r) - hmean(g), r)
    r = torch.where(gm & blue_row, g + vmean(r) - vmean(g), r)
    b = torch.where(gm & blue_row, g + hmean(b) - hmean(g), b)
    b = torch.where(gm & red_row, g + vmean(b) - vmean(g), b)
    r = torch.where(bm, torch.where(horiz, b + hmean(r) - hmean(b), b + vmean(r) - vmean(b)), r)
    b = torch.where(rm, torch.where(horiz, r + hmean(b) - hmean(r), r + vmean(b) - vmean(r)), b)
    if refine:
        rg, bg = r - g, b - g
        g = torch.where(rm, r - torch.where(horiz, hmean3(rg), vmean3(rg)), g)
        g = torch.where(bm, b - torch.where(horiz, hmean3(bg), vmean3(bg)), g)
        rg, bg = r - g, b - g
        r = torch.where(gm & blue_row, g + vmean(rg), r)
        r = torch.where(gm & blue_col, g + hmean(rg), r)
        b = torch.where(gm & red_row, g + vmean(bg), b)
        b = torch.where(gm & red_col, g + hmean(bg), b)
        rb = r - b
        r = torch.where(bm, b + torch.where(horiz, hmean3(rb), vmean3(rb)), r)
        b = torch.where(rm, r - torch.where(horiz, hmean3(rb), vmean3(rb)), b)
    return torch.stack([r, g, b], dim=1)[:, :, 0, p:-p, p:-p]


#: Demosaicing methods of the reference by name: ``fn(white-balanced mosaic (B, 1, H, W), B CFA
#: strings) -> (B, 3, H, W)``, each built from Kornia or plain torch through autograd.
DEMOSAIC_METHODS: dict[str, Callable[[torch.Tensor, Sequence[str]], torch.Tensor]] = {
    "bilinear": reference_demosaic_bilinear,
    "mhc": reference_demosaic_mhc,
    "menon": reference_demosaic_menon,
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


def reference_render(batch, params: torch.Tensor | None = None, *, demosaic: str = "menon",
                     highlight: str = "neutral", validate: bool = True, unit: bool = False) -> torch.Tensor:
    """Render a batch as :class:`isp.ISP` does, untiled, through Kornia and autograd.

    Args:
        batch: an :class:`isp.RawBatch`; the computation runs in its mosaic's dtype (use
            ``batch.to(dtype=torch.float64)`` for a precise comparison).
        params: ``(B, P)`` physical parameters, or ``(P,)`` for every image; None = neutral.
        demosaic: a name in :data:`DEMOSAIC_METHODS` (default ``menon``, as :class:`isp.ISP`).
        highlight: ``neutral`` (default, as :class:`isp.ISP`) or ``channel``.
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
    x = DEMOSAIC_METHODS[demosaic](reference_white_balance(mosaic, gains, batch.patterns, highlight), batch.patterns)
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

    def __init__(self, demosaic: str = "menon", highlight: str = "neutral") -> None:
        super().__init__()
        if demosaic not in DEMOSAIC_METHODS:
            raise ValueError(f"unknown reference demosaic {demosaic!r}; known: {sorted(DEMOSAIC_METHODS)}")
        self.demosaic = demosaic
        self.highlight = highlight

    def forward(self, batch, params: torch.Tensor | None = None, validate: bool = True, *,
                unit: bool = False) -> torch.Tensor:  # noqa: D102
        return reference_render(batch, params, demosaic=self.demosaic, highlight=self.highlight, validate=validate, unit=unit)
