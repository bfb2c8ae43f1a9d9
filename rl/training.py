"""Training helpers: building the agent, callbacks, saving and restoring a run's state.

Saving and restoring a run's state lives in :mod:`rl.run_state` (one atomic checkpoint folder
per step, nothing pickled); this module re-exports ``save_run_state`` / ``restore_run_state``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from rl.inference import ObsNormalizer, _algo_class
from rl.run_state import restore_run_state, save_run_state

__all__ = [
    "CurveCallback",
    "ProgressCallback",
    "RunStateCallback",
    "TrainingStopped",
    "add_demonstrations",
    "build_model",
    "restore_run_state",
    "save_run_state",
    "wrap_env",
]


def wrap_env(venv, normalize: bool, clip_obs: float = 10.0):
    """``VecMonitor`` (episode statistics) then, optionally, ``VecNormalize`` of observations only."""
    venv = VecMonitor(venv)
    if normalize:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=False, clip_obs=clip_obs)
    return venv


def build_model(algo: str, env, config: dict, seed: int, device: str, tensorboard_log: str | None):
    """An SB3 agent with the config's ``algo_kwargs`` and an ``MlpPolicy``."""
    kwargs = dict(config["algo_kwargs"])
    return _algo_class(algo)("MlpPolicy", env, seed=seed, device=device, tensorboard_log=tensorboard_log, verbose=0, **kwargs)


def add_demonstrations(
    model, core, env_config, *, steps: int = 60, lr: float = 0.05, seed: int = 0, center_only: bool = True
) -> dict:
    """Puts gradient-ascent paths on the training images into an off-policy agent's replay buffer.

    An amortised-optimisation warm start: for every training entry, per-image gradient ascent
    (:func:`rl.evaluate.gradient_ascent`, the same optimiser the evaluation compares with) runs
    ``steps`` Adam steps from the neutral parameters; each iterate is a real, scored action, so it
    becomes one transition ``(neutral observation, iterate, potential gain, done)`` of the
    absolute-mode bandit. The critic then knows the reward landscape around each image's
    optimum before the agent has acted. Only for ``absolute`` mode and agents with a replay buffer.

    Args:
        model: an SB3 off-policy agent (``model.replay_buffer``), freshly built.
        core: the training ``TuningCore`` the agent's environments use.
        env_config: the environment's :class:`envs.EnvConfig` (mode and the reward's potential).
        steps, lr: gradient-ascent budget and step size per entry.
        seed: which entries pad the last incomplete buffer row.
        center_only: only the center crop of each RAW (ids without ``/``), not the random windows.

    Returns:
        ``{"transitions", "reward_evals", "seconds", "mean_best_gain"}``.
    """
    import time

    from envs.isp_tuning import IspTuningEnv
    from rl.evaluate import gradient_ascent

    buffer = getattr(model, "replay_buffer", None)
    if buffer is None or env_config.mode != "absolute" or steps <= 0:
        return {"transitions": 0, "reward_evals": 0, "seconds": 0.0, "mean_best_gain": 0.0}
    t0 = time.perf_counter()
    env = IspTuningEnv(env_config, core=core)
    idx = [i for i, name in enumerate(core.images.ids) if not (center_only and "/" in name)]
    neutrals = core.neutral(idx)
    obs0, phi0 = [], []
    for i, res in zip(idx, neutrals):
        obs0.append(env.start(i, res)[0])
        phi0.append(env.potential_value)
    obs0, phi0 = np.stack(obs0), np.asarray(phi0)
    path_u, path_r = [], []
    evals_before = core.reward_evals
    weights = env_config.penalties.kwargs()
    gradient_ascent(
        core, idx, steps=int(steps), lr=float(lr), **weights,
        trace=lambda u, o: (path_u.append(u.copy()), path_r.append(o - phi0)),
    )
    actions = np.concatenate(path_u).astype(np.float32)  # (steps * B, P), step-major
    rewards = np.concatenate(path_r).astype(np.float32)
    obs = np.tile(obs0, (len(path_u), 1))
    n_envs = buffer.n_envs
    pad = (-len(actions)) % n_envs
    if pad:
        extra = np.random.default_rng(seed).choice(len(actions), pad, replace=False if pad <= len(actions) else True)
        actions, rewards, obs = (np.concatenate([a, a[extra]]) for a in (actions, rewards, obs))
    for k in range(0, len(actions), n_envs):
        sl = slice(k, k + n_envs)
        buffer.add(obs[sl], obs[sl], actions[sl], rewards[sl], np.ones(n_envs, np.float32), [{} for _ in range(n_envs)])
    best_gain = np.max(np.stack(path_r), axis=0) / weights["reward_scale"]
    return {
        "transitions": int(len(actions)),
        "reward_evals": int(core.reward_evals - evals_before),
        "seconds": float(time.perf_counter() - t0),
        "mean_best_gain": float(best_gain.mean()),
    }


def normalizer_of(venv) -> ObsNormalizer | None:
    """The observation normaliser of a wrapped env (``None`` without ``VecNormalize``)."""
    if isinstance(venv, VecNormalize):
        return ObsNormalizer(venv.obs_rms.mean, venv.obs_rms.var, venv.clip_obs, venv.epsilon)
    return None


class CurveCallback(BaseCallback):
    """Collects finished episodes' return and final score; one curve point every ``every`` timesteps.

    ``pending`` (:meth:`pending_state` of a saved run) restores the unfinished point, so a
    resumed run's curve equals an uninterrupted one's."""

    def __init__(self, curve: list[dict], every: int = 512, pending: dict | None = None) -> None:
        super().__init__()
        self.curve = curve
        self.every = max(int(every), 1)
        self._returns: list[float] = list(pending["returns"]) if pending else []
        self._scores: list[float] = list(pending["scores"]) if pending else []
        self._next = int(pending["next"]) if pending else (curve[-1]["timesteps"] if curve else 0) + self.every

    def pending_state(self) -> dict:
        """The episodes collected since the last curve point and when the next one is due."""
        return {"returns": list(self._returns), "scores": list(self._scores), "next": int(self._next)}

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if done and "episode" in info:
                self._returns.append(float(info["episode"]["r"]))
                self._scores.append(float(info.get("score", np.nan)))
        if self.num_timesteps >= self._next and self._returns:
            point = {
                "timesteps": int(self.num_timesteps),
                "mean_return": float(np.mean(self._returns)),
                "mean_score": float(np.nanmean(self._scores)),
            }
            self.curve.append(point)
            self.logger.record("rollout/mean_final_score", point["mean_score"])
            self._returns, self._scores = [], []
            self._next = self.num_timesteps + self.every
        return True


class TrainingStopped(Exception):
    """Raised by :class:`RunStateCallback` after it saved a checkpoint because a stop was requested."""

    def __init__(self, step: int, checkpoint) -> None:
        super().__init__(f"stopped at timestep {step}")
        self.step = int(step)
        self.checkpoint = checkpoint


class RunStateCallback(BaseCallback):
    """Every ``every`` timesteps: saves a resumable checkpoint (:func:`rl.run_state.save_run_state`).

    The save waits for the start of the next rollout: SB3 calls ``on_step`` before it stores the
    step's transition and runs the step's updates, so only between rollouts do the replay
    buffer, the envs, ``_last_obs`` and the weights belong to one timestep. :meth:`request_stop`
    (Ctrl-C) saves at that same point and raises :class:`TrainingStopped`.
    """

    def __init__(self, run_dir: Path, curve_cb: CurveCallback, every: int, save_replay: bool = True) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.curve_cb = curve_cb
        self.every = max(int(every), 1)
        self.save_replay = save_replay
        self._last = None
        self._due = False
        self.stop_requested = False

    def request_stop(self) -> None:
        self.stop_requested = True

    def save(self):
        return save_run_state(self.model, self.training_env, self.run_dir, self.curve_cb.curve, self.save_replay,
                              curve_pending=self.curve_cb.pending_state())

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every:
            self._due = True
        return True

    def _on_rollout_start(self) -> None:
        if self.num_timesteps == self._last:
            if self.stop_requested:
                raise TrainingStopped(self.num_timesteps, None)
            return
        if self._due or self.stop_requested:
            self._due = False
            self._last = self.num_timesteps
            ckpt = self.save()
            if self.stop_requested:
                raise TrainingStopped(self.num_timesteps, ckpt)


class ProgressCallback(BaseCallback):
    """A tqdm bar over the timesteps of this call to ``learn``."""

    def __init__(self, total: int, start: int = 0) -> None:
        super().__init__()
        self.total = int(total)
        self.start = int(start)
        self.bar = None

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, initial=self.start, desc="training", unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.bar.update(min(self.num_timesteps, self.total) - self.bar.n)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
