"""The noise of a RAW file, measured from the file itself, and the denoising it calls for.

A camera's own pipeline keys its noise reduction to the noise of the capture (its ISO tables);
this module does the same without metadata, so that it works on any Bayer RAW:

1. :func:`noise_level_function` measures the photosites' noise as a function of signal from the
   mosaic. The two greens of a 2 x 2 cell see nearly the same light and have independent noise,
   so their scaled difference is a sample of the noise with little of the scene in it; its
   variance is taken over blocks of 4 x 4 cells, the blocks are binned by their mean signal,
   and in each bin a low quantile of the block variances (the smoothest blocks, corrected by
   the chi-square quantile) is the noise variance at that signal. ``variance = gain * signal +
   floor`` (shot and read noise, the model of Brooks et al. 2019 and of the DNG NoiseProfile
   tag) is fitted to the bins by non-negative least squares. Restricting a robust estimate to
   weak-texture blocks is the textbook answer (as in Liu et al.'s noise level functions)
   because texture only ever adds variance.
2. :func:`denoise_strengths` turns it into the ISP's two denoising strengths. The ISP's denoise
   removes ``a`` times the luminance detail ``Dy`` and ``c`` times the chroma detail ``Dc`` of
   the linear image; the pair that minimises the squared error to the noise-free image is the
   solution of a 2 x 2 least-squares (Wiener) system whose right-hand side is the correlation of
   the noise with the detail it lands in. That correlation depends on how demosaicking and the
   colour matrix spread the noise, so it is measured by rendering the RAW a second time with
   extra noise drawn from the measured noise level function (the pipeline is close to linear
   up to the denoise stage) and taking the difference of the two renderings as a sample of the
   noise. The errors are weighted by the slope of the sRGB encoding, so that they count as they
   are seen after encoding (noise in the shadows more than in the highlights).

The strengths are those of the neutral rendering at 1:1 scale; :mod:`envs` uses them as the
per-image starting point of the agent's detail controls (``env.auto_denoise``).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["noise_level_function", "denoise_strengths", "NOISE_WINDOW"]

#: Largest side (photosites) of the centre window :func:`denoise_strengths` renders twice.
NOISE_WINDOW = 1024

_BLOCK = 4          # 2 x 2 cells per block side (16 green differences per block variance)
_QUANTILE = 0.02    # quantile of the block variances taken as the noise variance of a bin
_BINS = 8           # signal bins
_MIN_BLOCKS = 50    # bins with fewer blocks are left out of the fit
_CLIP_MARGIN = 0.9  # blocks with a photosite above this fraction of the white level are left out


def _green_positions(pattern: str) -> tuple[int, int]:
    """Row-major CFA positions of the two greens of a 2 x 2 Bayer cell (they sit on a diagonal)."""
    g = [k for k, ch in enumerate(pattern) if ch == "G"]
    return g[0], g[1]


def noise_level_function(raw) -> np.ndarray:
    """Photosite noise variance as ``gain * signal + floor`` (raw counts, black level subtracted).

    Measured on the two green photosites of each 2 x 2 cell: they see nearly the same light (they
    sit on a diagonal, 1.4 photosites apart) and have independent noise, so
    ``(G1 - G2) / sqrt(2)`` is a sample of the noise with very little of the scene in it. Its
    variance about the block mean (which removes a green-green imbalance) is taken over blocks
    of 4 x 4 cells, the blocks are binned by signal, and a low quantile per bin (corrected by the
    chi-square quantile) is fitted by non-negative least squares. The gain and the floor are a
    property of the photosites and their read-out before white balance, so one pair serves the
    four CFA positions.

    Args:
        raw: an :class:`isp.RawImage`.

    Returns:
        ``(gain, floor)`` as a float64 array of 2, both ``>= 0``; zeros when the mosaic has too few
        unclipped blocks to measure.
    """
    from scipy.optimize import nnls
    from scipy.stats import chi2

    m = np.asarray(raw.mosaic, dtype=np.float64)
    k1, k2 = _green_positions(raw.cfa_pattern)
    (i1, j1), (i2, j2) = divmod(k1, 2), divmod(k2, 2)
    g1 = m[i1::2, j1::2] - float(raw.black_level[k1])
    g2 = m[i2::2, j2::2] - float(raw.black_level[k2])
    h, w = min(g1.shape[0], g2.shape[0]) // _BLOCK * _BLOCK, min(g1.shape[1], g2.shape[1]) // _BLOCK * _BLOCK
    if h == 0 or w == 0:
        return np.zeros(2)
    g1, g2 = g1[:h, :w], g2[:h, :w]
    shape = (h // _BLOCK, _BLOCK, w // _BLOCK, _BLOCK)
    diff = ((g1 - g2) / np.sqrt(2.0)).reshape(shape)
    n = _BLOCK * _BLOCK
    var = diff.var(axis=(1, 3), ddof=1).ravel()
    level = ((g1 + g2) / 2.0).reshape(shape).mean(axis=(1, 3)).ravel()
    white = float(raw.white_level) - float(max(raw.black_level[k1], raw.black_level[k2]))
    top = np.maximum(g1, g2).reshape(shape).max(axis=(1, 3)).ravel()
    ok = top < _CLIP_MARGIN * white
    var, level = var[ok], level[ok]
    if var.size < _MIN_BLOCKS:
        return np.zeros(2)
    factor = float(chi2.ppf(_QUANTILE, n - 1) / (n - 1))
    edges = np.quantile(level, np.linspace(0.0, 1.0, _BINS + 1))
    xs, ys = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (level >= lo) & (level <= hi)
        if sel.sum() < _MIN_BLOCKS:
            continue
        xs.append(max(float(level[sel].mean()), 0.0))
        ys.append(float(np.quantile(var[sel], _QUANTILE)) / factor)
    if not xs:
        return np.zeros(2)
    coef, _ = nnls(np.stack([np.asarray(xs), np.ones(len(xs))], axis=1), np.asarray(ys))
    return coef


def _linear(raw, device) -> torch.Tensor:
    """The neutral rendering of ``raw`` in linear sRGB, ``(1, 3, H, W)`` (orientation as stored)."""
    from .color import srgb_decode
    from .pipeline import ISP, RawBatch

    with torch.inference_mode():
        return srgb_decode(ISP().to(device).eval()(RawBatch.from_raws([raw], device=device)))


def _detail(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the ISP's denoise at full strength takes away: luminance and chroma detail of ``x``."""
    from .stages.detail import denoise

    with torch.inference_mode():
        return x - denoise(x, 1.0, 0.0), x - denoise(x, 0.0, 1.0)


def denoise_strengths(raw, *, exposure_ev: float = 0.0, window: int = NOISE_WINDOW, seed: int = 0,
                      device="cpu") -> tuple[float, float]:
    """The ISP's ``denoise_luma`` and ``denoise_chroma`` for a RAW's measured noise (module docstring).

    Args:
        raw: an :class:`isp.RawImage` at full resolution (the strengths act at 1:1 scale).
        exposure_ev: the exposure compensation the rendering will have (the denoise stage comes
            before it, but a brightened rendering shows the noise larger, and a clipped one not at all).
        window: the centre window of at most this side (photosites) is rendered; the noise
            level function is measured on the whole mosaic.
        seed: seed of the synthetic noise sample (the result is deterministic for a seed).
        device: torch device for the two renderings.

    Returns:
        ``(luma, chroma)``, each in ``[0, 1]``; ``(0, 0)`` for a RAW without measurable noise.
    """
    from .color import SRGB_GAMMA, SRGB_OFFSET, SRGB_THRESHOLD
    from .stages.adjust import luminance
    from .stages.detail import lowpass

    nlf = noise_level_function(raw)
    if not np.any(nlf > 0):
        return 0.0, 0.0
    h, w = raw.mosaic.shape
    crop = raw.center_crop(min(h, window) // 2 * 2, min(w, window) // 2 * 2) if max(h, w) > window else raw
    m = np.asarray(crop.mosaic, dtype=np.float64)
    var = np.empty_like(m)
    for k in range(4):
        i, j = divmod(k, 2)
        signal = np.clip(m[i::2, j::2] - float(crop.black_level[k]), 0.0, None)
        var[i::2, j::2] = nlf[0] * signal + nlf[1]
    rng = np.random.default_rng(seed)
    noisy = crop.replace(mosaic=(m + rng.standard_normal(m.shape) * np.sqrt(var)).astype(np.float32))
    x, xn = _linear(crop, device), _linear(noisy, device)
    noise = xn - x
    dy, dc = _detail(x)
    ny, nc = _detail(noise)
    # squared slope of the sRGB encoding at the local luminance as rendered (the power branch,
    # held at its value at the threshold below it); clipped: no noise shows
    gain = 2.0 ** float(exposure_ev)
    y = (gain * lowpass(luminance(x), 2.0)).clamp(min=SRGB_THRESHOLD)
    weight = (gain * (1.0 + SRGB_OFFSET) / SRGB_GAMMA * y ** (1.0 / SRGB_GAMMA - 1.0)) ** 2 * (y < 1.0)

    def dot(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((weight * a * b).double().mean())

    gram = np.array([[dot(dy, dy), dot(dy, dc)], [dot(dc, dy), dot(dc, dc)]])
    rhs = np.array([dot(noise, ny), dot(noise, nc)])
    try:
        luma, chroma = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:  # a flat image: no detail to take away
        return 0.0, 0.0
    return float(np.clip(luma, 0.0, 1.0)), float(np.clip(chroma, 0.0, 1.0))
