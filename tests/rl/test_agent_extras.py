"""Tests of the gradient-ascent demonstrations and the critic fallback (rl/training.py, rl/inference.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from envs import IspTuningEnv
from envs.config import EnvConfig
from envs.core import TuningCore, load_image_set
from envs.rewards import create_reward
from envs.vec_env import IspTuningVecEnv
from rl.inference import AgentParamsPredictor, fallback_mode
from rl.training import add_demonstrations, build_model, normalizer_of, wrap_env

ENV = dict(mode="absolute", reward_scale=10.0, clip_penalty=2.0, param_penalty=0.0)


@pytest.fixture(scope="module")
def setup(sample_root):
    images = load_image_set(sample_root, "train", preview_side=128, crop=(48, 48), limit=3)
    core = TuningCore(images, create_reward("analytic"), thumb_size=4)
    venv = wrap_env(IspTuningVecEnv(4, core=core, **ENV), normalize=True)
    config = {
        "algo": "sac", "env": {**ENV, "thumb_size": 4, "crop": [48, 48], "preview_side": 128},
        "algo_kwargs": {"buffer_size": 256, "learning_starts": 0, "batch_size": 16, "policy_kwargs": {"net_arch": [16]}},
    }
    model = build_model("sac", venv, config, seed=0, device="cpu", tensorboard_log=None)
    return core, venv, model, config


def test_demonstrations_are_real_env_transitions(setup):
    core, venv, model, _ = setup
    buffer = model.replay_buffer
    stats = add_demonstrations(model, core, EnvConfig.from_dict(ENV), steps=3, lr=0.2)
    B = len(core.images)
    assert stats["transitions"] == 12 and stats["reward_evals"] == 3 * B  # 9 iterates padded to 3 rows of 4
    assert buffer.pos == 3
    obs = buffer.observations[:3].reshape(12, -1)
    act = buffer.actions[:3].reshape(12, -1)
    rew = buffer.rewards[:3].reshape(12)
    assert np.all(buffer.dones[:3] == 1.0)
    # Each stored (observation, action, reward) is what a fresh environment gives for that action.
    env = IspTuningEnv(core=core, **ENV)
    starts = [env.reset(options={"image_index": i})[0] for i in range(B)]
    assert np.any(np.abs(act) > 1e-3)
    for k in range(9):  # the iterates, step-major: step k // B on image k % B
        i = k % B
        np.testing.assert_allclose(obs[k], starts[i], atol=1e-6)
        env.reset(options={"image_index": i})
        _, r, terminated, _, _ = env.step(act[k])
        assert terminated and r == pytest.approx(float(rew[k]), abs=1e-4)


def test_fallback_modes():
    assert fallback_mode({"inference": {"fallback_to_neutral": True}}) == "render"
    assert fallback_mode({"inference": {}}) == "none"
    assert fallback_mode({"inference": {"fallback": "critic"}}) == "critic"
    with pytest.raises(ValueError):
        fallback_mode({"inference": {"fallback": "sometimes"}})


def test_critic_fallback_uses_one_evaluation_and_the_critic(setup, sample_root):
    core, venv, model, config = setup
    test_core = TuningCore(load_image_set(sample_root, "test", preview_side=128, crop=(48, 48)), core.reward, thumb_size=4)
    idx = list(range(len(test_core.images)))
    plain = AgentParamsPredictor(model.policy, {**config, "inference": {"fallback": "none"}}, normalizer_of(venv), core.reward)
    critic = AgentParamsPredictor(model.policy, {**config, "inference": {"fallback": "critic"}}, normalizer_of(venv), core.reward)
    chosen, evals_plain = plain.predict_unit(test_core, idx)
    kept, evals = critic.predict_unit(test_core, idx)
    assert evals == evals_plain == 1  # no second render
    # Independently: the observation of the neutral rendering, both actions through the critic.
    res = test_core.evaluate(idx, np.zeros_like(chosen))
    obs = plain._obs(res, np.zeros_like(chosen), 0)
    with torch.no_grad():
        q = lambda a: torch.cat(model.policy.critic(torch.as_tensor(obs), torch.as_tensor(a)), 1).min(1).values.numpy()  # noqa: E731
        better = q(chosen) >= q(np.zeros_like(chosen))
    np.testing.assert_array_equal(kept, np.where(better[:, None], chosen, 0.0))
    with pytest.raises(ValueError, match="critic"):
        AgentParamsPredictor(object(), {**config, "algo": "ppo", "inference": {"fallback": "critic"}}, None, core.reward)


def test_critic_refinement_raises_q_without_rendering(setup, sample_root):
    core, venv, model, config = setup
    test_core = TuningCore(load_image_set(sample_root, "test", preview_side=128, crop=(48, 48)), core.reward, thumb_size=4)
    idx = list(range(len(test_core.images)))
    plain = AgentParamsPredictor(model.policy, {**config, "inference": {"fallback": "none"}}, normalizer_of(venv), core.reward)
    refined = AgentParamsPredictor(
        model.policy, {**config, "inference": {"fallback": "none", "refine_steps": 5, "refine_lr": 0.1}}, normalizer_of(venv), core.reward
    )
    a0, _ = plain.predict_unit(test_core, idx)
    evals_before = test_core.reward_evals
    a1, evals = refined.predict_unit(test_core, idx)
    assert evals == 1 and test_core.reward_evals - evals_before == len(idx)
    assert np.all(np.abs(a1) <= 1.0) and not np.allclose(a0, a1)
    obs = plain._obs(test_core.evaluate(idx, np.zeros_like(a0)), np.zeros_like(a0), 0)
    assert np.all(plain.critic_value(obs, a1) >= plain.critic_value(obs, a0) - 1e-5)
    assert all(p.grad is None or not p.grad.abs().sum() for p in model.policy.critic.parameters())
