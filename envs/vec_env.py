"""A Stable-Baselines3 ``VecEnv`` that renders and scores all its environments in one batch.

``DummyVecEnv`` would call the ISP and the reward model once per environment; here every step
makes one ``isp.ISP`` call on a ``(n_envs, ...)`` batch and one reward forward, which is where
the throughput comes from. The per-environment logic (episode state, reward, observation) is
the single :class:`envs.IspTuningEnv`'s own public step pieces (``draw``, ``start``, ``prepare``,
``complete``), so both give the same transitions for the same seeds.
"""
from __future__ import annotations

from copy import deepcopy
from typing import Any, Sequence

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from envs.core import TuningCore
from envs.isp_tuning import IspTuningEnv, result_from_state, result_state

__all__ = ["IspTuningVecEnv"]


class IspTuningVecEnv(VecEnv):
    """``n_envs`` :class:`IspTuningEnv` sharing one :class:`TuningCore`, stepped in one batch.

    Args:
        n_envs: number of environments.
        config: the :class:`envs.EnvConfig` (or its dict) every environment uses.
        core: a ready core to share (else the first environment builds one).
        **env_kwargs: further arguments of :class:`IspTuningEnv` (``data_root``, ``reward``, env keys ...).

    Example:
        >>> venv = IspTuningVecEnv(8, reward="analytic")   # doctest: +SKIP
        >>> venv.seed(0); obs = venv.reset()              # doctest: +SKIP
        >>> obs, rew, done, infos = venv.step(np.zeros((8, venv.action_space.shape[0])))  # doctest: +SKIP
    """

    def __init__(self, n_envs: int, config=None, core: TuningCore | None = None, **env_kwargs: Any) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        first = IspTuningEnv(config, core=core, **env_kwargs)
        self.core = first.core
        self.config = first.config
        self.envs = [first] + [IspTuningEnv(self.config, core=self.core) for _ in range(n_envs - 1)]
        super().__init__(n_envs, first.observation_space, first.action_space)
        self._actions: np.ndarray | None = None
        self._obs = np.zeros((n_envs,) + first.observation_space.shape, dtype=np.float32)

    # -- batched core ---------------------------------------------------------------------
    def _reset_envs(self, which: Sequence[int], seeds=None, options=None) -> list[tuple[np.ndarray, dict]]:
        images = [
            self.envs[i].draw(
                seed=None if seeds is None else seeds[k],
                options=None if options is None else options[k],
            )
            for k, i in enumerate(which)
        ]
        neutrals = self.core.neutral(images)
        return [self.envs[i].start(img, res) for i, img, res in zip(which, images, neutrals)]

    def reset(self) -> np.ndarray:
        results = self._reset_envs(range(self.num_envs), self._seeds, self._options)
        for i, (obs, info) in enumerate(results):
            self._obs[i] = obs
            self.reset_infos[i] = info
        self._reset_seeds()
        self._reset_options()
        return self._obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float32)

    def step_wait(self):
        pending = [env.prepare(a) for env, a in zip(self.envs, self._actions)]
        active = [i for i, p in enumerate(pending) if p.unit is not None]
        res = None
        if active:
            res = self.core.evaluate([pending[i].image for i in active], np.stack([pending[i].unit for i in active]))
        row = {i: k for k, i in enumerate(active)}
        rewards = np.zeros(self.num_envs, np.float32)
        dones = np.zeros(self.num_envs, bool)
        infos: list[dict] = [{} for _ in range(self.num_envs)]
        for i, env in enumerate(self.envs):
            r = res.row(row[i]) if i in row else None
            obs, rewards[i], terminated, truncated, infos[i] = env.complete(pending[i], r)
            dones[i] = terminated or truncated
            infos[i]["TimeLimit.truncated"] = truncated and not terminated
            self._obs[i] = obs
            if dones[i]:
                infos[i]["terminal_observation"] = obs
        finished = [i for i in range(self.num_envs) if dones[i]]
        if finished:
            for i, (obs, info) in zip(finished, self._reset_envs(finished)):
                self._obs[i] = obs
                self.reset_infos[i] = info
        return self._obs.copy(), rewards, dones, deepcopy(infos)

    def close(self) -> None:
        for env in self.envs:
            env.close()

    # -- exact resume ---------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Every env's :meth:`IspTuningEnv.get_state`, the current observations, pending seeds and
        the core's cached neutral renderings (renders of one image can differ in the last bit with
        the batch they were computed in, so a resumed run reuses the very same ones)."""
        return {
            "envs": [env.get_state() for env in self.envs],
            "obs": self._obs.tolist(),
            "seeds": list(self._seeds),
            "neutral": {str(i): result_state(r) for i, r in sorted(self.core._neutral.items())},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`get_state`'s output (same number of envs, same configuration)."""
        if len(state["envs"]) != self.num_envs:
            raise ValueError(f"saved state has {len(state['envs'])} envs, this VecEnv has {self.num_envs}")
        for env, s in zip(self.envs, state["envs"]):
            env.set_state(s)
        self._obs[:] = np.asarray(state["obs"], np.float32)
        self._seeds = list(state["seeds"])
        self.core._neutral = {int(i): result_from_state(r) for i, r in state.get("neutral", {}).items()}

    # -- VecEnv plumbing --------------------------------------------------------------------
    def _targets(self, indices: VecEnvIndices) -> list[IspTuningEnv]:
        return [self.envs[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(env, attr_name) for env in self._targets(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for env in self._targets(indices):
            setattr(env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        return [getattr(env, method_name)(*method_args, **method_kwargs) for env in self._targets(indices)]

    def env_is_wrapped(self, wrapper_class, indices: VecEnvIndices = None) -> list[bool]:
        return [isinstance(env, wrapper_class) for env in self._targets(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [env.render() for env in self.envs]
