"""Tests of the ISP tuning environment, its reward registry and the batched VecEnv."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
import isp
from envs import IspTuningEnv, create_reward
from envs.core import TuningCore, clipped_fraction, load_image_set
from envs.rewards import REWARDS, RewardEntry, RewardModel, register_reward
from envs.vec_env import IspTuningVecEnv

CROP = (64, 64)


@pytest.fixture(scope="module")
def images(sample_root):
    return load_image_set(sample_root, "train", preview_side=128, crop=CROP)


@pytest.fixture(scope="module")
def analytic():
    return create_reward("analytic")


@pytest.fixture(scope="module")
def core(images, analytic):
    return TuningCore(images, analytic, thumb_size=4)


def make_env(core, **kw):
    """An env without penalties unless a test asks for them (the product's default clip_penalty is 2)."""
    return IspTuningEnv(core=core, **{"clip_penalty": 0.0, **kw})


# -- API checks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{"mode": "absolute"}, {"mode": "incremental", "horizon": 3, "allow_stop": True}])
def test_gymnasium_check_env(core, kw):
    gym_check_env(make_env(core, **kw), skip_render_check=True)


@pytest.mark.parametrize("mode", ["absolute", "incremental"])
def test_sb3_check_env(core, mode):
    sb3_check_env(make_env(core, mode=mode), warn=True)


def test_registered_id(images, analytic):
    assert envs.ENV_ID in gym.registry
    env = gym.make(envs.ENV_ID, images=images, reward=analytic, thumb_size=4)
    assert env.spec.max_episode_steps == 64
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs.dtype == np.float32


def test_render_rgb_array(core):
    env = make_env(core, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (*CROP, 3)


def test_unknown_mode_and_nan_action(core):
    with pytest.raises(ValueError, match="mode"):
        make_env(core, mode="sideways")
    env = make_env(core)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(env.action_space.shape, np.nan, np.float32))


# -- determinism ------------------------------------------------------------------------------------
def _rollout(env, seed, n_episodes=3):
    rng = np.random.default_rng(123)
    out = []
    obs, info = env.reset(seed=seed)
    out.append((obs, info["image_id"]))
    for _ in range(n_episodes):
        done = False
        while not done:
            obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
            out.append((obs, r, info["image_id"]))
            done = term or trunc
        obs, info = env.reset()
        out.append((obs, info["image_id"]))
    return out


@pytest.mark.parametrize("mode", ["absolute", "incremental"])
def test_same_seed_same_rollout(core, images, analytic, mode):
    a = _rollout(make_env(core, mode=mode, horizon=2), seed=7)
    # A separately built core (fresh caches) must give the same transitions.
    b = _rollout(make_env(TuningCore(images, analytic, thumb_size=4), mode=mode, horizon=2), seed=7)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]


def test_seed_changes_image_sequence(core):
    env = make_env(core)
    ids = {tuple(env.reset(seed=s)[1]["image_id"] for _ in range(1)) for s in range(20)}
    assert len(ids) > 1


# -- action mapping and reward -------------------------------------------------------------------------
def test_zero_action_is_neutral(core):
    import isp

    env = make_env(core)
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(np.zeros(env.action_space.shape, np.float32))
    assert terminated
    assert reward == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(env.physical_params, isp.neutral_params(1)[0].numpy(), rtol=0, atol=1e-6)


def test_absolute_action_maps_through_unit_to_params(core, analytic, images):
    import isp

    env = make_env(core, reward_scale=3.0)
    _, info = env.reset(seed=1)
    i = images.ids.index(info["image_id"])
    a = np.linspace(-0.8, 0.8, env.action_space.shape[0]).astype(np.float32)
    _, reward, _, _, info = env.step(a)
    expected_params = isp.unit_to_params(torch.as_tensor(a[None]))
    np.testing.assert_allclose(env.physical_params, expected_params[0].numpy(), atol=1e-6)
    # Independent path: render with the ISP directly, score with the reward model.
    with torch.no_grad():
        batch = isp.RawBatch.from_raws([images.raws[i]] * 2)
        imgs = isp.ISP()(batch, torch.cat([isp.neutral_params(1), expected_params]))
        norm = analytic(imgs).normalized.numpy()
    assert reward == pytest.approx(3.0 * (norm[1] - norm[0]), abs=1e-4)


def test_incremental_steps_accumulate_and_clip(core):
    env = make_env(core, mode="incremental", horizon=3, step_size=0.5)
    env.reset(seed=0)
    P = env.num_params
    a = np.ones(P, np.float32)
    total = 0.0
    for t in range(3):
        obs, r, term, _, _ = env.step(a)
        total += r
        assert term == (t == 2)
        np.testing.assert_allclose(obs[-P - 1 : -1], min(0.5 * (t + 1), 1.0))
    # The return telescopes to the score gain of the final params over the neutral ones.
    ref = make_env(core, reward_scale=env.penalties.reward_scale)
    ref.reset(seed=0)
    _, r_abs, _, _, _ = ref.step(np.ones(P, np.float32))
    assert total == pytest.approx(r_abs, abs=1e-4)


def test_stop_action_ends_episode_without_reward(core):
    env = make_env(core, mode="incremental", horizon=4, allow_stop=True)
    env.reset(seed=0)
    a = np.zeros(env.action_space.shape, np.float32)
    a[-1] = 1.0
    _, r, term, _, info = env.step(a)
    assert term and r == 0.0 and info["stopped"]


def test_clip_penalty_lowers_reward_of_blown_images(core):
    P = core.num_params
    u = np.ones(P, np.float32)  # every parameter at its high end: bright, contrasty, saturated
    plain = make_env(core)
    penalised = make_env(core, clip_penalty=5.0, param_penalty=1.0)
    plain.reset(seed=3)
    penalised.reset(seed=3)
    _, r0, _, _, i0 = plain.step(u)
    _, r1, _, _, i1 = penalised.step(u)
    neutral = core.neutral([core.images.ids.index(i0["image_id"])])[0]
    excess = max(i0["clipped"] - float(neutral.clipped[0]), 0.0)
    assert r1 == pytest.approx(r0 - 5.0 * excess - 1.0, abs=1e-4)


def test_detail_penalty_weights_only_the_denoising_and_sharpening_controls(core):
    """With ``detail_penalty`` the trust region is ``(param_penalty * tone u**2 + detail_penalty *
    detail u**2) / P``; without it, ``param_penalty * mean(u**2)`` as before."""
    from envs.core import DETAIL_PARAMS, trust_region

    P = core.num_params
    u = np.linspace(-0.9, 0.9, P).astype(np.float32)
    detail = np.isin(np.asarray(isp.PARAM_NAMES), DETAIL_PARAMS)
    assert detail.sum() == 3 and not detail[isp.PARAM_INDEX["exposure"]]
    expected = (2.0 * np.sum(u[~detail] ** 2) + 0.5 * np.sum(u[detail] ** 2)) / P
    assert trust_region(u[None], 2.0, 0.5)[0] == pytest.approx(expected, rel=1e-6)
    assert float(trust_region(torch.as_tensor(u[None]), 2.0, 0.5)[0]) == pytest.approx(expected, rel=1e-6)
    assert trust_region(u[None], 2.0)[0] == 2.0 * np.mean(u**2)
    # in the env: the same image and action, rewards apart by exactly the trust regions' difference
    plain, weighted = make_env(core, param_penalty=2.0), make_env(core, param_penalty=2.0, detail_penalty=0.5)
    plain.reset(seed=4)
    weighted.reset(seed=4)
    _, r0, _, _, i0 = plain.step(u)
    _, r1, _, _, i1 = weighted.step(u)
    assert i0["image_id"] == i1["image_id"]
    assert r1 - r0 == pytest.approx(2.0 * np.mean(u**2) - expected, abs=1e-4)


def test_cast_penalty_matches_an_independent_colour_cast(core):
    """The cast term is cast_penalty * rise of the mean colour's distance from grey over neutral."""
    u = np.zeros(core.num_params, np.float32)
    u[1] = 0.8  # wb_temperature: warmer
    plain, penalised = make_env(core), make_env(core, cast_penalty=4.0)
    plain.reset(seed=5)
    penalised.reset(seed=5)
    _, r0, _, _, info = plain.step(u)
    _, r1, _, _, _ = penalised.step(u)
    i = core.images.ids.index(info["image_id"])

    def cast(unit):  # numpy reference on the render
        with torch.no_grad():
            img = core.render([i], torch.as_tensor(unit[None])).numpy()[0]
        m = img.reshape(3, -1).mean(axis=1)
        return float(np.sqrt(((m - m.mean()) ** 2).sum()))

    rise = cast(u) - cast(np.zeros_like(u))
    assert rise > 0.0  # a warm push moves the mean colour away from grey on this image
    assert r1 == pytest.approx(r0 - 4.0 * rise, abs=1e-4)


def test_clipped_fraction_reference():
    img = torch.full((1, 3, 4, 4), 0.5)
    img[0, :, 0, :] = 1.0  # one row blown
    img[0, 1, 1, 0] = 0.0  # one pixel with a crushed channel
    assert clipped_fraction(img).item() == pytest.approx(5 / 16)


# -- reward registry -------------------------------------------------------------------------------
def test_registry_builds_rewards_that_know_sign_and_range(analytic):
    from envs.rewards import ANALYTIC_RANGE

    assert {"attiqa", "analytic"} <= set(REWARDS)
    # the entry only names a builder; the sign and range live on the built reward (declared once)
    assert not hasattr(REWARDS["analytic"], "score_range") and not hasattr(REWARDS["analytic"], "lower_better")
    assert analytic.lower_better is False and analytic.score_range == ANALYTIC_RANGE
    x = torch.rand(2, 3, 32, 32)
    out = analytic(x)
    assert out.score.shape == (2,) and out.attributes.shape == (2, 5)
    lo, hi = analytic.score_range
    assert torch.all(out.score >= lo) and torch.all(out.score <= hi)


def test_attiqa_reward_uses_metric_range(tiny_attiqa_checkpoint):
    import attiqa

    reward = create_reward("attiqa", str(tiny_attiqa_checkpoint))
    metric = attiqa.create_metric(str(tiny_attiqa_checkpoint))
    assert reward.lower_better == metric.lower_better is False
    assert reward.score_range == tuple(float(v) for v in metric.score_range)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reward(x).score, metric(x))
        torch.testing.assert_close(reward(x).attributes, metric.attributes(x))


def test_normalisation_flips_lower_better():
    class Const(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(1, 2, 3))

    up = RewardModel("up", Const(), lambda s: (s, s[:, None].expand(-1, 5)), lower_better=False, score_range=(0, 2))
    down = RewardModel("down", Const(), lambda s: (s, s[:, None].expand(-1, 5)), lower_better=True, score_range=(0, 2))
    x = torch.full((1, 3, 2, 2), 0.5)
    assert up(x).normalized.item() == pytest.approx(0.25)
    assert down(x).normalized.item() == pytest.approx(0.75)
    with pytest.raises(ValueError):
        RewardModel("bad", Const(), lambda s: (s, s), lower_better=False, score_range=(1, 1))


def test_registry_errors():
    with pytest.raises(KeyError, match="analytic"):
        create_reward("no-such-reward")
    with pytest.raises(ValueError, match="already"):
        register_reward(RewardEntry("analytic", "dup", lambda c, d: None))


# -- vectorised env -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["absolute", "incremental"])
def test_vec_env_matches_single_envs(core, mode):
    n, seed = 3, 11
    venv = IspTuningVecEnv(n, core=core, mode=mode, horizon=2, clip_penalty=0.0)
    venv.seed(seed)
    vobs = venv.reset()
    singles = [make_env(core, mode=mode, horizon=2) for _ in range(n)]
    sobs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    np.testing.assert_allclose(vobs, np.stack(sobs), atol=1e-5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = rng.uniform(-1, 1, (n,) + venv.action_space.shape).astype(np.float32)
        vobs, vrew, vdone, vinfo = venv.step(actions)
        for i, env in enumerate(singles):
            obs, r, term, trunc, _ = env.step(actions[i])
            assert vdone[i] == (term or trunc)
            assert vrew[i] == pytest.approx(r, abs=1e-4)
            if vdone[i]:
                np.testing.assert_allclose(vinfo[i]["terminal_observation"], obs, atol=1e-5)
                obs, _ = env.reset()
            np.testing.assert_allclose(vobs[i], obs, atol=1e-5)


def test_vec_env_one_batch_per_step(core):
    venv = IspTuningVecEnv(4, core=core)
    venv.seed(0)
    venv.reset()
    calls = []
    original = core.evaluate

    def spy(idx, unit, keep_images=False):
        calls.append(len(idx))
        return original(idx, unit, keep_images)

    core.evaluate = spy
    try:
        venv.step(np.zeros((4,) + venv.action_space.shape, np.float32))
    finally:
        core.evaluate = original
    assert calls[0] == 4  # all four environments rendered and scored in one call


# -- domain randomisation: crop windows and mirrored entries -------------------------------------
def test_crop_windows_are_even_and_inside():
    from envs.core import crop_windows

    five = crop_windows((100, 150), (64, 64), "five")
    assert [n for n, _, _ in five] == ["", "tl", "tr", "bl", "br"]
    assert five[0][1:] == (18, 42)  # center, rounded down to even offsets
    rnd = crop_windows((101, 151), (64, 64), "random", n=20, rng=np.random.default_rng(0))
    assert len(rnd) == 20 and len({(t, l) for _, t, l in rnd}) > 5
    for _, top, left in five + rnd:
        assert top % 2 == 0 and left % 2 == 0  # the CFA phase is kept
        assert 0 <= top <= 101 - 64 and 0 <= left <= 151 - 64
    with pytest.raises(ValueError):
        crop_windows((100, 100), (64, 64), "corners")


def test_random_crops_and_flips(sample_root, images, analytic):
    aug = load_image_set(sample_root, "train", preview_side=128, crop=CROP, crop_mode="random", crops_per_image=3, flip=True)
    assert len(aug) == 3 * len(images)
    assert aug.ids[:3] == [images.ids[0], f"{images.ids[0]}/r1", f"{images.ids[0]}/r2"]
    assert aug.flips[:3] == [False, True, False]
    for k in range(len(images)):  # the center entry of each RAW is the plain center crop
        np.testing.assert_array_equal(aug.raws[3 * k].mosaic, images.raws[k].mosaic)
    assert all(r.mosaic.shape == CROP for r in aug.raws)
    # A mirrored entry renders as the left-right mirror of the same crop rendered plainly.
    core = TuningCore(aug, analytic, thumb_size=4)
    plain = TuningCore(type(aug)(aug.raws[1:2], ["x"], aug.crop), analytic, thumb_size=4)
    u = torch.full((1, core.num_params), 0.3)
    with torch.no_grad():
        np.testing.assert_allclose(core.render([1], u).numpy(), plain.render([0], u).flip(-1).numpy(), atol=1e-6)
    # Same seed, same windows.
    again = load_image_set(sample_root, "train", preview_side=128, crop=CROP, crop_mode="random", crops_per_image=3, flip=True)
    assert again.ids == aug.ids and all(np.array_equal(a.mosaic, b.mosaic) for a, b in zip(aug.raws, again.raws))


# -- env.auto_denoise: every entry starts from the denoising its measured noise calls for -------------
def test_auto_denoise_starts_noisy_captures_from_stronger_denoising(sample_root, analytic, images):
    """The bases denoise the high-ISO captures more than the base-ISO ones and leave every other
    control at the camera's default; offset 0 renders exactly what the plain core renders at the
    base; the observation's parameter slice shows the base."""
    based = load_image_set(sample_root, "train", preview_side=128, crop=CROP, auto_denoise=True)
    assert based.ids == images.ids and images.bases is None
    P = isp.NUM_PARAMS
    dn = [isp.PARAM_INDEX["denoise_luma"], isp.PARAM_INDEX["denoise_chroma"]]
    others = [k for k in range(P) if k not in dn]
    assert based.bases.shape == (len(based), P)
    assert np.all(based.bases[:, others] == 0.0) and np.all((based.bases[:, dn] >= 0.0) & (based.bases[:, dn] <= 1.0))
    high = [i for i, s in enumerate(based.sources) if s.condition == "high_iso"]
    base_iso = [i for i, s in enumerate(based.sources) if s.condition != "high_iso"]
    assert high and base_iso
    assert based.bases[high][:, dn].min(axis=0).tolist() > np.median(based.bases[base_iso][:, dn], axis=0).tolist()

    core = TuningCore(based, analytic, thumb_size=4)
    plain = TuningCore(images, analytic, thumb_size=4)
    idx = [high[0], base_iso[0]]
    zeros = torch.zeros(2, P)
    assert torch.equal(core.render(idx, zeros), plain.render(idx, torch.as_tensor(based.bases[idx])))
    u = np.random.default_rng(0).uniform(-0.5, 0.5, (2, P)).astype(np.float32)
    inside = np.abs(based.bases[idx] + u) <= 1.0
    np.testing.assert_allclose(core.offset(idx, core.absolute(idx, u))[inside], u[inside], atol=1e-6)
    assert np.all(np.abs(core.absolute(idx, u)) <= 1.0)
    obs, _ = make_env(core).reset(options={"image_index": high[0]})
    np.testing.assert_array_equal(obs[-(P + 1):-1], based.bases[high[0]])


def test_auto_exposure_brightens_the_under_exposed_bases_and_never_darkens(sample_root):
    based = load_image_set(sample_root, "train", preview_side=128, crop=CROP, auto_exposure=True)
    ev = isp.unit_to_params(torch.as_tensor(based.bases))[:, isp.PARAM_INDEX["exposure"]].numpy()
    cond = np.array([s.condition for s in based.sources])
    assert (cond == "under").any() and (cond == "over").any()
    assert np.all(ev >= 0.0)
    assert np.all(ev[cond == "over"] == 0.0)  # clipped highlights: darkening cannot bring them back
    assert ev[cond == "under"].min() > 0.3
    dn = [isp.PARAM_INDEX["denoise_luma"], isp.PARAM_INDEX["denoise_chroma"]]
    assert np.all(based.bases[:, dn] == 0.0)  # auto_denoise is off
