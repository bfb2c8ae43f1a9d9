"""envs.judges against independent implementations, on a rendering saved to disk and read back."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.color
import torch

import isp
from envs import judges


@pytest.fixture(scope="module")
def saved_pair(sample_root, tmp_path_factory):
    """A neutral rendering of a sample DNG, written as a 16-bit PNG and read back, and its expert."""
    from PIL import Image

    from isp import fivek

    entry = fivek.index(sample_root)[0]
    raw = isp.read_raw(entry.dng)
    params = isp.neutral_params(1)[0]
    params[isp.PARAM_INDEX["exposure"]] = 0.7  # some clipping, so the clipped fraction is not ~0
    img = isp.render(raw, params, max_side=256)
    path = tmp_path_factory.mktemp("judge") / "render.png"
    isp.save_image(img, path, bits=16)
    with Image.open(path) as im:
        back = np.asarray(im).astype(np.float64) / 65535.0
    expert = judges.align_to(judges.load_expert_srgb(entry.expert_c), back)
    return back, expert


def test_delta_e_matches_scikit_image(saved_pair):
    """colour-science's CIEDE2000 (what judge uses) against scikit-image's own implementation."""
    img, ref = saved_pair
    ours = judges.judge(img, ref)["delta_e2000"]
    lab_i = skimage.color.rgb2lab(img, illuminant="D65", observer="2")
    lab_r = skimage.color.rgb2lab(ref, illuminant="D65", observer="2")
    independent = float(np.mean(skimage.color.deltaE_ciede2000(lab_r, lab_i)))
    assert ours == pytest.approx(independent, rel=2e-3)
    assert ours > 0.5  # the exposure push moved the rendering away from the photograph


def test_psnr_ssim_match_plain_formulas(saved_pair):
    import kornia

    img, ref = saved_pair
    j = judges.judge(img, ref)
    mse = np.mean((img - ref) ** 2)
    assert j["psnr"] == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-9)
    # kornia's SSIM: the same Gaussian window (11 px, sigma 1.5), another implementation; it pads
    # the borders where scikit-image crops them, hence the tolerance.
    t = lambda a: torch.as_tensor(a.transpose(2, 0, 1).copy())[None]  # noqa: E731
    k = float(kornia.metrics.ssim(t(img), t(ref), window_size=11, max_val=1.0).mean())
    assert j["ssim"] == pytest.approx(k, abs=0.02)


def test_clipping_and_casts_match_numpy(saved_pair):
    img, ref = saved_pair
    j = judges.judge(img, ref)
    eps = 1.0 / 255.0
    assert j["clipped_fraction"] == pytest.approx(float(((img <= eps) | (img >= 1 - eps)).any(-1).mean()), abs=1e-6)
    m = img.reshape(-1, 3).mean(0)
    assert j["colour_cast"] == pytest.approx(float(np.linalg.norm(m - m.mean())), abs=1e-5)
    ab = lambda a: skimage.color.rgb2lab(a)[..., 1:].reshape(-1, 2).mean(0)  # noqa: E731
    assert j["cast_vs_expert"] == pytest.approx(float(np.linalg.norm(ab(img) - ab(ref))), rel=2e-3)


def test_cast_vs_expert_sees_a_white_balance_shift_not_identity(saved_pair):
    _, ref = saved_pair
    assert judges.cast_vs_expert(ref, ref) == pytest.approx(0.0, abs=1e-9)
    warm = np.clip(ref * np.array([1.15, 1.0, 0.85]), 0, 1)
    assert judges.cast_vs_expert(warm, ref) > 3.0


def test_judge_without_expert_has_only_no_reference_judges(saved_pair):
    img, _ = saved_pair
    assert set(judges.judge(img)) == {"clipped_fraction", "colour_cast"}


def test_summarize_groups_by_condition():
    rows = [
        {"condition": "under", "delta_e2000": 4.0, "score": 0.2},
        {"condition": "under", "delta_e2000": 6.0, "score": 0.4},
        {"condition": "correct", "delta_e2000": 1.0, "score": None},
    ]
    s = judges.summarize(rows)
    assert s["n"] == 3 and s["mean"]["delta_e2000"] == pytest.approx(11 / 3)
    assert s["mean"]["score"] == pytest.approx(0.3)  # None skipped
    assert s["per_condition"]["under"] == {"mean": {"delta_e2000": 5.0, "score": pytest.approx(0.3)}, "n": 2}
    assert "score" not in s["per_condition"]["correct"]["mean"]


def test_judge_converts_once_and_gives_the_plain_functions_numbers(saved_pair, monkeypatch):
    """judge() converts each image to CIELAB once for ΔE2000 and the cast; the plain functions
    (compare, cast_vs_expert: each converts both images itself) give the same numbers exactly."""
    img, ref = saved_pair
    calls = []
    to_lab = judges.srgb_to_lab
    monkeypatch.setattr(judges, "srgb_to_lab", lambda rgb: calls.append(1) or to_lab(rgb))
    j = judges.judge(img, ref)
    assert len(calls) == 2  # ours and the expert's, once each
    monkeypatch.undo()
    plain = {**judges.compare(img, ref), "cast_vs_expert": judges.cast_vs_expert(img, ref)}
    assert {k: j[k] for k in plain} == plain
    assert j["delta_e2000"] > 0.5 and j["cast_vs_expert"] > 0.0
