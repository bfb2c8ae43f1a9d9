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
                            "--baselines", "--out", str(out), "--hyperparams", "env.crop=[64,96]", "env.preview_side=128"])
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
    base = res["baselines"]
    b_err = [r for r in base["per_image"] if r["condition"] != "correct"]
    assert {r["id"] for r in base["per_image"]} == test_ids
    assert abs(base["ae_vs_default_dE_ratio"] - np.mean([r["ae_dE"] for r in b_err]) / np.mean([r["default_dE"] for r in b_err])) < 1e-9
    for r in base["per_image"]:  # the default row is the probe's own default rendering
        assert abs(r["default_dE"] - rows[r["id"]]["default_dE"]) < 1e-6


def test_scene_statistics_follow_exposure_and_colour_balance():
    base = _scene(20, 30)
    s = probe_reward.scene_statistics(base)
    assert np.allclose(s, probe_reward.scene_statistics(np.transpose(base, (2, 0, 1))))  # either layout
    darker = probe_reward.scene_statistics(base * 0.5)
    assert darker[0] < s[0] - 0.5  # half the sRGB values: about 2.2x less light, log ~ -1.5
    bluer = base.copy()
    bluer[..., 2] = np.clip(bluer[..., 2] * 1.5, 0, 1)
    assert probe_reward.scene_statistics(bluer)[1] < s[1] and abs(probe_reward.scene_statistics(bluer)[0] - s[0]) < 0.2


def test_auto_exposure_to_the_experts_own_statistics_undoes_exposure_errors(sample_root):
    """Given each held-out capture's own expert statistics, the search moves exposure the way the
    recorded correction does, touches only exposure and then WB, and the judge agrees."""
    from envs import judges
    from envs.config import EnvConfig
    from envs.core import TuningCore, load_image_set
    from envs.rewards import create_reward

    import isp

    cfg = EnvConfig.from_dict({"crop": [64, 96], "preview_side": 128})
    images = load_image_set(sample_root, "test", **{**cfg.image_kwargs(), "crop_mode": "whole", "flip": False})
    core = TuningCore(images, create_reward("analytic"), **cfg.core_kwargs(), device="cpu")
    i_exp = isp.PARAM_NAMES.index("exposure")
    checked = 0
    for k, e in enumerate(images.sources):
        if e.condition not in ("under", "over"):
            continue
        expert = judges.load_expert_srgb(e.expert_c)
        ae, awb = probe_reward.statistics_baseline(core, k, probe_reward.scene_statistics(expert), steps=11)
        assert np.sign(ae[i_exp]) == np.sign(-float(e.meta["ev_error"])), (e.id, ae[i_exp])
        assert np.count_nonzero(ae) == 1 and np.count_nonzero(awb - ae) <= 1  # only exposure, then only WB
        res = core.evaluate([k, k], np.stack([np.zeros_like(ae), ae]), keep_images=True)
        de = [probe_reward.view_delta_e(im, images.raws[k].orientation, expert) for im in res.images]
        assert de[1] < 0.8 * de[0], (e.id, de)
        checked += 1
    assert checked >= 2


def test_an_unknown_ga_parameter_is_one_line_and_exit_2(capsys):
    rc = probe_reward.main(["--ga-params", "exposure,warmth", "--candidates", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "warmth" in err[0] and "wb_temperature" in err[0]
