"""isp.noise: the noise level measured from a mosaic, and the denoising strengths it calls for."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import isp
from isp import noise
from isp.sample_data import CAMERAS

CAMERA = CAMERAS[1]  # BGGR, black 0, white 15892


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour scene (linear, in [0.05, 0.8]) with edges: blobs and a step, ``(h, w, 3)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.zeros((h, w, 3))
    for c in range(3):
        v = 0.3 + 0.2 * np.sin(2 * np.pi * (xx * rng.uniform(1, 3) + yy * rng.uniform(1, 3)) + rng.uniform(0, 6))
        v += 0.25 * (xx > 0.5)  # an edge
        out[..., c] = v
    return np.clip(out, 0.05, 0.8)


def _mosaic(scene: np.ndarray, pattern: str) -> np.ndarray:
    idx = {"R": 0, "G": 1, "B": 2}
    m = np.empty(scene.shape[:2])
    for k, ch in enumerate(pattern):
        i, j = divmod(k, 2)
        m[i::2, j::2] = scene[i::2, j::2, idx[ch]]
    return m


def _raw(gain: float, floor: float, seed: int = 0, h: int = 256, w: int = 384) -> tuple[isp.RawImage, isp.RawImage]:
    """The same capture with and without photosite noise of variance ``gain * signal + floor`` (DN)."""
    span = CAMERA.white - CAMERA.black
    clean = _mosaic(_scene(h, w, seed), CAMERA.cfa) * span
    rng = np.random.default_rng(seed + 1)
    noisy = clean + rng.standard_normal(clean.shape) * np.sqrt(gain * clean + floor)

    def make(m):
        return isp.RawImage(
            mosaic=(np.clip(m, 0, span) + CAMERA.black).astype(np.float32), cfa_pattern=CAMERA.cfa,
            black_level=np.full(4, CAMERA.black, np.float32), white_level=float(CAMERA.white),
            as_shot_wb=np.array([2.0, 1.0, 1.5], np.float32), cam_to_xyz=np.eye(3, dtype=np.float32),
        )

    return make(noisy), make(clean)


@pytest.mark.parametrize("gain,floor", [(2.0, 50.0), (40.0, 4000.0)])
def test_noise_level_function_recovers_the_photosite_noise(gain, floor):
    """The measured gain and floor match those the mosaic was made with (a base and a high ISO)."""
    noisy, _ = _raw(gain, floor)
    g, f = noise.noise_level_function(noisy)
    assert g == pytest.approx(gain, rel=0.25)
    # the floor is the variance at zero signal: checked where it matters, at the scene's signal
    span = CAMERA.white - CAMERA.black
    for level in (0.1 * span, 0.5 * span):
        assert g * level + f == pytest.approx(gain * level + floor, rel=0.25)


def test_noise_level_function_of_a_clean_mosaic_is_near_zero():
    _, clean = _raw(0.0, 0.0)
    g, f = noise.noise_level_function(clean)
    span = CAMERA.white - CAMERA.black
    # the scene's own detail leaks in at under 1 % of the base-ISO case's noise variance (2 * 7946 + 50)
    assert g * 0.5 * span + f < 0.01 * (2.0 * 0.5 * span + 50.0)


def _srgb_error(raw_noisy, reference: torch.Tensor, luma: float, chroma: float) -> float:
    p = isp.neutral_params().reshape(-1).clone()
    p[isp.PARAM_INDEX["denoise_luma"]], p[isp.PARAM_INDEX["denoise_chroma"]] = luma, chroma
    return float(((isp.render(raw_noisy, p) - reference) ** 2).mean())


def test_denoise_strengths_are_near_the_best_pair_for_the_noise_free_rendering():
    """Independent reference: a grid search over both strengths of the error against the rendering
    of the same capture without noise. The measured pair must come within 10 % of the grid's best
    error, and be far better than no denoising."""
    noisy, clean = _raw(40.0, 4000.0)
    reference = isp.render(clean)
    luma, chroma = noise.denoise_strengths(noisy)
    grid = {(a, c): _srgb_error(noisy, reference, a, c) for a, c in itertools.product(np.linspace(0, 1, 6), np.linspace(0, 1, 6))}
    best = min(grid.values())
    ours = _srgb_error(noisy, reference, luma, chroma)
    assert ours <= 1.10 * best
    assert ours < 0.7 * grid[(0.0, 0.0)]
    assert luma > 0.3 and chroma > 0.3


def test_denoise_strengths_of_a_clean_capture_are_near_zero_and_grow_with_the_noise():
    _, clean = _raw(0.0, 0.0)
    assert max(noise.denoise_strengths(clean)) < 0.05
    low = noise.denoise_strengths(_raw(2.0, 50.0)[0])
    high = noise.denoise_strengths(_raw(40.0, 4000.0)[0])
    assert high[0] > low[0] and high[1] > low[1]


def test_denoise_strengths_are_deterministic_and_bounded():
    noisy, _ = _raw(400.0, 40000.0, h=128, w=128)
    a = noise.denoise_strengths(noisy)
    assert a == noise.denoise_strengths(noisy)
    assert all(0.0 <= v <= 1.0 for v in a)
