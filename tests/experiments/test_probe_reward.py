"""experiments/probe_reward.py: the views are judged upright, the candidates, and a run on the sample set."""
from __future__ import annotations

import json

import numpy as np
import torch

from experiments import probe_reward


def _scene(h: int, w: int) -> np.ndarray:
    """A smooth, asymmetric colour image (a ramp per channel plus a bright corner)."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.stack([0.2 + 0.6 * x, 0.3 + 0.5 * y, 0.5 - 0.3 * x * y], -1)
    img[: h // 4, : w // 4] = 0.95
    return img.astype(np.float32)


def test_views_are_put_upright_before_they_are_compared():
    expert = _scene(40, 24)  # upright, portrait
    t = torch.from_numpy(expert).permute(2, 0, 1)
    sideways = torch.rot90(t, 1, dims=(-2, -1))  # what the ISP renders for a RAW of LibRaw flip 6
    upside_down = torch.flip(t, dims=(-2, -1))   # ... of flip 3
    assert probe_reward.view_delta_e(sideways, 6, expert) < 0.05
    assert probe_reward.view_delta_e(upside_down, 3, expert) < 0.05
    assert probe_reward.view_delta_e(upside_down, 0, expert) > 5.0  # same aspect: only the metadata can tell


def test_candidates_start_with_the_default_and_the_oracle_and_stay_in_the_box():
    rng = np.random.default_rng(0)
    oracle = np.linspace(-0.5, 0.5, 15).astype(np.float32)
    c = probe_reward.candidate_params(10, 15, oracle, rng)
    assert c.shape == (10, 15) and np.abs(c).max() <= 1.0
    assert np.all(c[0] == 0) and np.allclose(c[1], oracle)
    assert len({row.tobytes() for row in c}) == 10  # every perturbation is a new rendering
    near_oracle = np.abs(c[3::2] - oracle).mean() < np.abs(c[3::2]).mean()
    assert near_oracle  # every second perturbation is centred on the oracle
    c0 = probe_reward.candidate_params(4, 15, None, rng)
    assert np.all(c0[0] == 0) and not np.all(c0[1] == 0)


def test_probe_on_the_sample_set_finds_that_the_oracle_fixes_capture_errors(sample_root, tmp_path):
    from isp import datasets, sample_data

    out = tmp_path / "probe.json"
    rc = probe_reward.main(["--reward", "analytic", "--data", str(sample_root), "--candidates", "5", "--ga-steps", "2",
                            "--out", str(out), "--hyperparams", "env.crop=[64,96]", "env.preview_side=128"])
    assert rc == 0
    res = json.loads(out.read_text())
    test_ids = {e.id for e in datasets.load_split(sample_root)["test"]}
    rows = {r["id"]: r for r in res["per_image"]}
    assert set(rows) == test_ids
    conditions = sample_data.read_conditions(sample_root)
    exposure = [r for r in rows.values() if conditions[r["id"]]["condition"] in ("under", "over")]
    assert exposure
    for r in exposure:  # the judge (not the reward) says the recorded correction fixes the capture
        assert r["oracle_dE"] < 0.7 * r["default_dE"], r
    for r in rows.values():
        assert -1.0 <= r["srocc"] <= 1.0 and np.isfinite(r["ga_dE"])
    ga = res["gradient_ascent"]
    errors = [r for r in rows.values() if r["condition"] != "correct"]
    assert abs(ga["ga_vs_default_dE_ratio"] - np.mean([r["ga_dE"] for r in errors]) / np.mean([r["default_dE"] for r in errors])) < 1e-9
