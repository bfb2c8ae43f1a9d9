"""Training helpers: building the agent, callbacks, saving and restoring a run's state.

Nothing here unpickles: the agent is reloaded with ``set_parameters`` (``torch.load(...,
weights_only=True)``), normalisation statistics and the replay buffer are plain ``npz`` arrays,
and counters are JSON.
"""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from rl.common import (
    AGENT_FILE,
    CURVE_FILE,
    REPLAY_FILE,
    STATE_FILE,
    VECNORM_FILE,
    atomic_write_bytes,
    atomic_write_text,
    dump_json,
    load_npz,
    save_npz,
)
from rl.inference import ObsNormalizer, _algo_class

__all__ = [
    "CurveCallback",
    "ProgressCallback",
    "RunStateCallback",
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


def _save_model_zip(model, path: Path) -> None:
    buf = io.BytesIO()
    model.save(buf)
    atomic_write_bytes(path, buf.getvalue())


def save_run_state(model, venv, run_dir: Path, curve: list[dict], save_replay: bool = True) -> None:
    """Writes everything ``--resume`` needs: agent, normalisation stats, replay buffer, counters, curve."""
    run_dir = Path(run_dir)
    _save_model_zip(model, run_dir / AGENT_FILE)
    if isinstance(venv, VecNormalize):
        save_npz(
            run_dir / VECNORM_FILE,
            obs_mean=venv.obs_rms.mean,
            obs_var=venv.obs_rms.var,
            obs_count=np.asarray(venv.obs_rms.count),
            clip_obs=np.asarray(venv.clip_obs),
            epsilon=np.asarray(venv.epsilon),
        )
    buffer = getattr(model, "replay_buffer", None)
    if save_replay and buffer is not None:
        n = buffer.buffer_size if buffer.full else buffer.pos
        save_npz(
            run_dir / REPLAY_FILE,
            observations=buffer.observations[:n],
            next_observations=buffer.next_observations[:n],
            actions=buffer.actions[:n],
            rewards=buffer.rewards[:n],
            dones=buffer.dones[:n],
            timeouts=buffer.timeouts[:n],
            pos=np.asarray(buffer.pos),
            full=np.asarray(buffer.full),
        )
    state = {"num_timesteps": int(model.num_timesteps), "n_updates": int(getattr(model, "_n_updates", 0))}
    dump_json(run_dir / STATE_FILE, state)
    lines = ["timesteps,mean_return,mean_score"] + [f"{c['timesteps']},{c['mean_return']},{c['mean_score']}" for c in curve]
    atomic_write_text(run_dir / CURVE_FILE, "\n".join(lines) + "\n")


def restore_run_state(model, venv, run_dir: Path) -> tuple[int, list[dict]]:
    """Loads a run's saved state into a freshly built ``model``/``venv`` (same config).

    Returns:
        The timestep count reached and the training curve so far.

    Raises:
        FileNotFoundError: the run folder has no saved agent.
    """
    from stable_baselines3.common.save_util import load_from_zip_file

    run_dir = Path(run_dir)
    if not (run_dir / AGENT_FILE).is_file() or not (run_dir / STATE_FILE).is_file():
        raise FileNotFoundError(f"nothing to resume in {run_dir}: no {AGENT_FILE} / {STATE_FILE}")
    _, params, variables = load_from_zip_file(run_dir / AGENT_FILE, device=model.device, load_data=False)
    model.set_parameters(params, exact_match=True, device=model.device)
    for name, value in (variables or {}).items():  # e.g. SAC's log_ent_coef
        if value is not None:
            getattr(model, name).data.copy_(value.data)
    state = json.loads((run_dir / STATE_FILE).read_text())
    model.num_timesteps = int(state["num_timesteps"])
    model._n_updates = int(state.get("n_updates", 0))
    if isinstance(venv, VecNormalize) and (run_dir / VECNORM_FILE).is_file():
        d = load_npz(run_dir / VECNORM_FILE)
        venv.obs_rms.mean = d["obs_mean"].astype(np.float64)
        venv.obs_rms.var = d["obs_var"].astype(np.float64)
        venv.obs_rms.count = float(d["obs_count"])
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None and (run_dir / REPLAY_FILE).is_file():
        d = load_npz(run_dir / REPLAY_FILE)
        n = len(d["observations"])
        if d["observations"].shape[1:] == buffer.observations.shape[1:] and n <= buffer.buffer_size:
            for key in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
                getattr(buffer, key)[:n] = d[key]
            buffer.pos = int(d["pos"])
            buffer.full = bool(d["full"])
    curve = []
    if (run_dir / CURVE_FILE).is_file():
        for line in (run_dir / CURVE_FILE).read_text().splitlines()[1:]:
            t, r, s = line.split(",")
            curve.append({"timesteps": int(t), "mean_return": float(r), "mean_score": float(s)})
    return model.num_timesteps, curve


class CurveCallback(BaseCallback):
    """Collects finished episodes' return and final score; one curve point every ``every`` timesteps."""

    def __init__(self, curve: list[dict], every: int = 512) -> None:
        super().__init__()
        self.curve = curve
        self.every = max(int(every), 1)
        self._returns: list[float] = []
        self._scores: list[float] = []
        self._next = (curve[-1]["timesteps"] if curve else 0) + self.every

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


class RunStateCallback(BaseCallback):
    """Every ``every`` timesteps: saves the resumable state and a copy of the agent in ``checkpoints/``."""

    def __init__(self, run_dir: Path, curve: list[dict], every: int, save_replay: bool = True) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.curve = curve
        self.every = max(int(every), 1)
        self.save_replay = save_replay
        self._last = None

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every:
            self._last = self.num_timesteps
            save_run_state(self.model, self.training_env, self.run_dir, self.curve, self.save_replay)
            ckpt = self.run_dir / "checkpoints" / f"agent_{self.num_timesteps}_steps.zip"
            ckpt.parent.mkdir(exist_ok=True)
            shutil.copyfile(self.run_dir / AGENT_FILE, ckpt)
        return True


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
