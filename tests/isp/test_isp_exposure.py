"""isp.exposure: brighten until the highlights reach white, never darken."""
from __future__ import annotations

import numpy as np
import pytest

import isp
from isp import exposure
from isp.sample_data import CAMERAS

CAMERA = CAMERAS[1]


def _raw(scale: float, h: int = 96, w: int = 128) -> isp.RawImage:
    """A grey-world scene with a few bright patches, exposed at ``scale`` times its level."""
    rng = np.random.default_rng(0)
    span = CAMERA.white - CAMERA.black
    scene = 0.05 + 0.25 * rng.random((h, w))
    scene[10:20, 10:30] = 0.9  # highlights: about 1.6 % of the frame
    m = np.clip(scene * scale, 0.0, 1.0) * span + CAMERA.black
    return isp.RawImage(mosaic=m.astype(np.float32), cfa_pattern=CAMERA.cfa, black_level=np.full(4, CAMERA.black, np.float32),
                        white_level=float(CAMERA.white), as_shot_wb=np.ones(3, np.float32), cam_to_xyz=np.eye(3, dtype=np.float32))


def _percentile_after(raw, ev: float) -> float:
    p = isp.neutral_params().reshape(-1).clone()
    p[isp.PARAM_INDEX["exposure"]] = ev
    img = isp.render(raw, p)
    return float(np.percentile(img.amax(dim=0).flatten().numpy(), exposure.HIGHLIGHT_PERCENTILE))


@pytest.mark.parametrize("scale", [0.3, 0.6])
def test_the_chosen_exposure_brings_the_highlights_to_the_target(scale):
    """Checked through the ISP's own exposure control: rendered with the returned EV, the
    percentile lands on the target; the darker capture needs one stop more."""
    raw = _raw(scale)
    ev = exposure.highlight_exposure(raw)
    assert ev > 0
    assert _percentile_after(raw, ev) == pytest.approx(exposure.HIGHLIGHT_TARGET, abs=0.02)


def test_a_capture_twice_as_dark_needs_one_stop_more():
    assert exposure.highlight_exposure(_raw(0.3)) - exposure.highlight_exposure(_raw(0.6)) == pytest.approx(1.0, abs=0.05)


def test_bright_and_clipped_captures_are_never_darkened():
    assert exposure.highlight_exposure(_raw(1.0)) == 0.0  # highlights at 0.9 linear: above the target already
    assert exposure.highlight_exposure(_raw(3.0)) == 0.0  # clipped in the RAW


def test_a_nearly_black_capture_gets_at_most_the_largest_brightening():
    assert exposure.highlight_exposure(_raw(0.001)) == exposure.MAX_BRIGHTENING_EV
