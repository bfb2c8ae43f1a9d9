"""The environment's views: whole-image views and 1:1 detail windows of the full-resolution RAW."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import isp
from envs.core import ImageSet, TuningCore, detail_window, load_image_set, whole_view
from envs.rewards import create_reward


@pytest.fixture(scope="module")
def raw(sample_root):
    from isp import fivek

    return isp.read_raw(fivek.index(sample_root)[0].dng)


def _random_params(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return isp.unit_to_params(torch.rand(n, isp.NUM_PARAMS, generator=g) * 2 - 1)


def test_detail_window_renders_the_pixels_of_the_full_render(raw):
    """Window + halo rendered alone, halo cut off == the full-resolution render cut to the window."""
    pipe = isp.ISP().eval()
    params = _random_params(1, 0)
    params[0, isp.PARAM_INDEX["denoise_luma"]] = 0.8  # the detail stages are what the window is for
    params[0, isp.PARAM_INDEX["denoise_chroma"]] = 0.8
    params[0, isp.PARAM_INDEX["sharpen"]] = 1.5
    with torch.no_grad():
        full = pipe(isp.RawBatch.from_raws([raw]), params)[0]
        for seed in (0, 1, 2):
            win, top, left = detail_window(raw, 48, 16, np.random.default_rng(seed))
            assert top % 2 == 0 and left % 2 == 0  # the CFA phase is kept
            out = pipe(isp.RawBatch.from_raws([win]), params)[0][:, 16:-16, 16:-16]
            np.testing.assert_allclose(out.numpy(), full[:, top : top + 48, left : left + 48].numpy(), atol=2e-5)


def test_detail_window_too_large_is_one_clear_error(raw):
    with pytest.raises(ValueError, match="smaller than the detail window"):
        detail_window(raw, max(raw.mosaic.shape), 16)


def test_detail_window_fit_takes_the_largest_centred_window_a_small_raw_holds(raw):
    small = raw.replace(mosaic=np.ascontiguousarray(raw.mosaic[:70, :90]))
    win, top, left = detail_window(small, 48, 16, fit=True)
    assert win.mosaic.shape == (70, 70) and (top, left) == (16, 26)  # 38 px inside the 16 px halo, centred
    np.testing.assert_array_equal(win.mosaic, small.mosaic[:70, 10:80])
    big, _, _ = detail_window(raw, 48, 16, fit=True)  # a RAW that holds the window is cut as without fit
    np.testing.assert_array_equal(big.mosaic, detail_window(raw, 48, 16)[0].mosaic)
    with pytest.raises(ValueError, match="smaller than the detail window"):  # no room for 8 px inside the halo
        detail_window(raw.replace(mosaic=np.ascontiguousarray(raw.mosaic[:38, :90])), 48, 16, fit=True)


def test_whole_view_keeps_the_scene_and_the_cfa_phase(raw):
    """The whole view renders like a downscaled full render: same layout, same colours."""
    view = whole_view(raw.preview(256), (96, 128))
    assert view.mosaic.shape == (96, 128) and view.cfa_pattern == raw.cfa_pattern
    pipe = isp.ISP().eval()
    with torch.no_grad():
        small = pipe(isp.RawBatch.from_raws([view]), None)[0]
        full = pipe(isp.RawBatch.from_raws([raw]), None)[0]
    # The view averages raw (linear) values: the reference averages the full render in linear light too.
    lin = torch.where(full <= 0.04045, full / 12.92, ((full + 0.055) / 1.055) ** 2.4)
    small_lin = F.interpolate(lin[None], size=(96, 128), mode="area")[0]
    ref = torch.where(small_lin <= 0.0031308, small_lin * 12.92, 1.055 * small_lin.clamp(min=1e-12) ** (1 / 2.4) - 0.055)
    assert float((small - ref).abs().mean()) < 0.06
    mean_err = lambda img: float((img.mean(dim=(1, 2)) - ref.mean(dim=(1, 2))).abs().max())  # noqa: E731
    assert mean_err(small) < 0.03


def test_whole_view_of_the_right_size_is_the_identity(raw):
    p = raw.preview(128)
    h, w = p.mosaic.shape
    np.testing.assert_array_equal(whole_view(p, (h // 2 * 2, w // 2 * 2)).mosaic, p.mosaic[: h // 2 * 2, : w // 2 * 2])


def test_detail_term_mixes_the_scores(sample_root):
    images = load_image_set(sample_root, "test", preview_side=128, crop=(64, 64), crop_mode="whole", detail_crop=32, detail_halo=8)
    assert images.details is not None and len(images.details) == len(images.raws)
    assert images.details[0].mosaic.shape == (48, 48)
    reward = create_reward("analytic")
    mixed = TuningCore(images, reward, thumb_size=4, detail_weight=0.5)
    view_only = TuningCore(ImageSet(images.raws, images.ids, images.crop), reward, thumb_size=4)
    unit = np.zeros((len(images), isp.NUM_PARAMS), np.float32)
    a, b = mixed.evaluate(range(len(images)), unit), view_only.evaluate(range(len(images)), unit)
    with torch.no_grad():
        d = reward(mixed.render_detail(list(range(len(images))), torch.as_tensor(unit)))
    np.testing.assert_allclose(a.normalized, 0.5 * b.normalized + 0.5 * d.normalized.numpy(), atol=1e-6)
    np.testing.assert_allclose(a.attributes, b.attributes, atol=1e-6)  # observations come from the view


def test_detail_observation_carries_the_rendered_windows_attributes(sample_root):
    """With ``detail_observation`` the observation gains the reward model's five attribute scores
    of the rendered 1:1 window (where noise shows), after the view's; the rest is unchanged, the
    env's observation space holds it, and a core without windows observes zeros there."""
    from envs import IspTuningEnv
    from envs.config import EnvConfig
    from envs.isp_tuning import observe

    cfg = EnvConfig.from_dict({"crop": [64, 64], "preview_side": 128, "crop_mode": "whole", "thumb_size": 4, "hist_bins": 8,
                               "detail_crop": 32, "detail_halo": 8, "detail_weight": 0.5, "detail_observation": True})
    assert EnvConfig.from_dict(cfg.to_dict()) == cfg and cfg.core_kwargs()["detail_observation"] is True
    images = load_image_set(sample_root, "test", **{**cfg.image_kwargs(), "flip": False}, limit=3)
    reward = create_reward("analytic")
    seen = TuningCore(images, reward, **cfg.core_kwargs())
    plain = TuningCore(images, reward, **{**cfg.core_kwargs(), "detail_observation": False})
    idx = list(range(len(images)))
    unit = (np.random.default_rng(3).uniform(-0.8, 0.8, (len(idx), isp.NUM_PARAMS))).astype(np.float32)
    a, b = seen.evaluate(idx, unit), plain.evaluate(idx, unit)
    assert b.detail_attributes is None
    with torch.no_grad():
        d = reward(seen.render_detail(idx, torch.as_tensor(unit))).attributes.numpy()
    np.testing.assert_allclose(a.detail_attributes, d, atol=1e-6)
    assert np.abs(d - a.attributes).max() > 1e-3  # the window's scores are not the view's
    obs_a, obs_b = observe(a, unit, 0, 1), observe(b, unit, 0, 1)
    k = 3 * 4 * 4 + 8 + 5  # thumbnail, histogram, the view's attributes
    assert obs_a.shape[1] == obs_b.shape[1] + 5
    np.testing.assert_allclose(obs_a[:, k : k + 5], d, atol=1e-6)
    np.testing.assert_array_equal(np.delete(obs_a, np.s_[k : k + 5], axis=1), obs_b)
    env = IspTuningEnv(cfg, core=seen)
    obs, _ = env.reset(options={"image_index": 1})
    assert env.observation_space.contains(obs) and obs.shape == (obs_a.shape[1],)
    no_windows = TuningCore(ImageSet(images.raws, images.ids, images.crop), reward, **cfg.core_kwargs())
    np.testing.assert_array_equal(no_windows.evaluate(idx, unit).detail_attributes, np.zeros((len(idx), 5), np.float32))


def test_observation_tells_an_under_from_an_over_exposed_capture(tmp_path):
    """The same scene under- and over-exposed: the agent's observation of the neutral rendering differs."""
    from envs.isp_tuning import observe
    from isp import sample_data as sd

    photo = sd.scene_image("chelsea", max_side=256)
    photo = np.ascontiguousarray(photo[: photo.shape[0] // 2 * 2, : photo.shape[1] // 2 * 2])
    raws = []
    for name, ev in (("under", -1.5), ("over", 0.8)):
        mosaic, info = sd.unprocess(photo, sd.CAMERAS[0], np.random.default_rng(0), ev_error=ev)
        raws.append(isp.read_raw(sd.write_dng(tmp_path / f"{name}.dng", mosaic, sd.CAMERAS[0], info)))
    views = [whole_view(r, (64, 96)) for r in raws]
    core = TuningCore(ImageSet(views, ["under", "over"], (64, 96)), create_reward("analytic"), thumb_size=4, hist_bins=16)
    res = core.evaluate([0, 1], np.zeros((2, isp.NUM_PARAMS), np.float32))
    obs = observe(res, np.zeros((2, isp.NUM_PARAMS), np.float32), 0, 1)
    thumb, hist = obs[:, : 3 * 16], obs[:, 3 * 16 : 3 * 16 + 16]
    assert thumb[1].mean() > thumb[0].mean() + 0.1  # the over-exposed rendering is brighter ...
    lum = np.arange(16)
    assert (hist[1] * lum).sum() > (hist[0] * lum).sum() + 2  # ... and its histogram lies higher
    np.testing.assert_allclose(hist.sum(axis=1), 1.0, atol=1e-5)


def test_env_vecenv_and_predictor_share_one_step(sample_root):
    """For the same RAW and action, the env, the vectorised env and the predictor observe and reward alike."""
    from envs import IspTuningEnv
    from envs.config import EnvConfig
    from envs.vec_env import IspTuningVecEnv
    from rl.inference import AgentParamsPredictor

    cfg = EnvConfig.from_dict({"crop": [64, 96], "preview_side": 128, "crop_mode": "whole", "thumb_size": 4, "hist_bins": 8,
                               "clip_penalty": 3.0, "cast_penalty": 1.5, "param_penalty": 0.5, "detail_penalty": 0.1})
    assert EnvConfig.from_dict(cfg.to_dict()) == cfg and cfg.penalties.detail_penalty == 0.1
    assert EnvConfig.from_dict({"detail_penalty": None}).penalties.detail_penalty is None
    images = load_image_set(sample_root, "test", **{**cfg.image_kwargs(), "flip": False}, limit=2)
    core = TuningCore(images, create_reward("analytic"), **cfg.core_kwargs())
    env = IspTuningEnv(cfg, core=core)
    venv = IspTuningVecEnv(2, cfg, core=core)
    predictor = AgentParamsPredictor(None, {"algo": "sac", "env": cfg.to_dict(), "inference": {"fallback": "none"}}, None,
                                     core.reward)
    action = np.linspace(-0.7, 0.7, isp.NUM_PARAMS).astype(np.float32)
    venv.reset()
    for i in range(2):
        venv.envs[i].reset(options={"image_index": i})
        obs_env, _ = env.reset(options={"image_index": i})
        obs_vec = venv.envs[i].start(i, core.neutral([i])[0])[0]
        neutral = core.evaluate([i], np.zeros((1, isp.NUM_PARAMS), np.float32))
        obs_pred = predictor._obs(neutral, np.zeros((1, isp.NUM_PARAMS), np.float32), 0)[0]
        np.testing.assert_array_equal(obs_env, obs_vec)
        np.testing.assert_allclose(obs_env, obs_pred, atol=1e-6)
        _, r_env, *_ = env.step(action)
        chosen = core.evaluate([i], action[None])
        r_pred = float(predictor._potential(chosen, action[None], neutral)[0] - predictor._potential(neutral, np.zeros((1, isp.NUM_PARAMS)), neutral)[0])
        assert r_env == pytest.approx(r_pred, abs=1e-5)
    actions = np.stack([action, -action])
    _, r_vec, _, _ = venv.step(actions)
    for i in range(2):
        env.reset(options={"image_index": i})
        assert float(env.step(actions[i])[1]) == pytest.approx(float(r_vec[i]), abs=1e-5)
