"""Using a trained agent: ISP parameters for RAW images, from a run folder.

Example:
    >>> from rl.inference import AgentParamsPredictor            # doctest: +SKIP
    >>> predictor = AgentParamsPredictor.load("runs/2026...-sac-attiqa")
    >>> params = predictor.predict([isp.read_raw("photo.dng")])   # (1, P) physical ISP params
    >>> img = isp.render(raw, params[0])
"""
from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from envs.isp_tuning import observe
from envs.config import EnvConfig, advance
from rl.common import AGENT_FILE, CONFIG_FILE, VECNORM_FILE, load_npz, load_yaml

__all__ = ["AgentParamsPredictor", "FALLBACKS", "ObsNormalizer", "build_policy", "fallback_mode", "load_policy_weights"]


class ObsNormalizer:
    """Observation normalisation of SB3's ``VecNormalize``, from plain arrays.

    Args:
        mean: ``(D,)`` running mean. var: ``(D,)`` running variance.
        clip_obs: normalised values are clipped to ``[-clip_obs, clip_obs]``.
        epsilon: added to the variance.
    """

    def __init__(self, mean: np.ndarray, var: np.ndarray, clip_obs: float = 10.0, epsilon: float = 1e-8) -> None:
        self.mean = np.asarray(mean, np.float64)
        self.var = np.asarray(var, np.float64)
        self.clip_obs = float(clip_obs)
        self.epsilon = float(epsilon)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        out = np.clip((obs - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip_obs, self.clip_obs)
        return out.astype(np.float32)

    @classmethod
    def load(cls, path: str | Path) -> "ObsNormalizer":
        d = load_npz(path)
        return cls(d["obs_mean"], d["obs_var"], float(d["clip_obs"]), float(d["epsilon"]))


def _algo_class(algo: str):
    from stable_baselines3 import PPO, SAC

    classes = {"sac": SAC, "ppo": PPO}
    if algo not in classes:
        raise ValueError(f"unknown algorithm {algo!r}; choose one of {', '.join(classes)}")
    return classes[algo]


def build_policy(algo: str, obs_dim: int, act_dim: int, policy_kwargs: dict | None, device: str = "cpu"):
    """Builds an untrained SB3 ``MlpPolicy`` of ``algo`` for flat observations and ``[-1, 1]`` actions."""
    from gymnasium import spaces

    policy_cls = _algo_class(algo).policy_aliases["MlpPolicy"]
    obs_space = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
    act_space = spaces.Box(-1.0, 1.0, shape=(act_dim,), dtype=np.float32)
    policy = policy_cls(obs_space, act_space, lambda _: 0.0, **(policy_kwargs or {}))
    return policy.to(device).eval()


def load_policy_weights(policy, agent_zip: str | Path, device: str = "cpu") -> None:
    """Loads ``policy.pth`` from an SB3 agent zip with ``weights_only=True`` (no pickled data is read).

    Raises:
        ValueError: the zip holds no policy or weights of another architecture.
    """
    agent_zip = Path(agent_zip)
    if not agent_zip.is_file():
        raise FileNotFoundError(f"no agent file {agent_zip}")
    try:
        with zipfile.ZipFile(agent_zip) as zf, zf.open("policy.pth") as f:
            import io

            state = torch.load(io.BytesIO(f.read()), map_location=device, weights_only=True)
    except (KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"{agent_zip} is not a Stable-Baselines3 agent file ({e})") from e
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{agent_zip} does not match the architecture in config.yaml: {e}") from e


FALLBACKS = ("none", "render", "critic")


def fallback_mode(config: dict) -> str:
    """The run's safeguard against choices worse than the neutral parameters.

    ``inference.fallback``: ``none``; ``render`` (score the agent's choice once more, keep the
    neutral params where the environment's potential says it is worse: one extra reward
    evaluation per image); ``critic`` (the same decision from the agent's critic,
    ``Q(s, choice) < Q(s, 0)``: two small MLP calls, no render). Runs written before this key
    existed say ``inference.fallback_to_neutral: true`` (= ``render``).
    """
    inf = config.get("inference", {}) or {}
    mode = inf.get("fallback")
    if mode is None:
        mode = "render" if inf.get("fallback_to_neutral", False) else "none"
    if mode not in FALLBACKS:
        raise ValueError(f"inference.fallback must be one of {', '.join(FALLBACKS)}, got {mode!r}")
    return mode


class AgentParamsPredictor:
    """A trained agent that picks ISP parameters for RAW images.

    Applies the environment's preprocessing (preview of ``env.preview_side``, then the whole
    image resampled to ``env.crop`` when the run trained on ``crop_mode: whole``, else its center
    crop), builds the same observation as the environment (thumbnail of the current
    rendering, the reward model's attributes, current params, elapsed fraction), normalises it
    with the run's statistics and runs the deterministic policy (one step in ``absolute`` mode,
    ``horizon`` steps in ``incremental`` mode). ``inference.fallback`` in the config
    (:func:`fallback_mode`) may replace the choice by the neutral params where it looks worse.

    Args:
        policy: an SB3 policy. config: the run's resolved config. normalizer: observation
            normalisation (``None`` when the run used none). reward: the reward model the
            observation's attributes come from. device: torch device.
    """

    def __init__(self, policy, config: dict, normalizer: ObsNormalizer | None, reward, device: str = "cpu") -> None:
        self.policy = policy
        self.config = config
        self.normalizer = normalizer
        self.reward = reward
        self.device = device
        self.env = EnvConfig.from_dict(config["env"])
        self.mode = self.env.mode
        self.horizon = self.env.steps
        inf = config.get("inference", {}) or {}
        self.fallback = fallback_mode(config)
        # Critic refinement: Adam steps on the agent's own Q(s, a) from the actor's action (no render).
        self.refine_steps = int(inf.get("refine_steps", 0))
        self.refine_lr = float(inf.get("refine_lr", 0.05))
        if (self.fallback == "critic" or self.refine_steps > 0) and getattr(policy, "critic", None) is None:
            raise ValueError(f"inference.fallback=critic and inference.refine_steps need an agent with a critic of actions (sac), "
                             f"not {config.get('algo')}")

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> "AgentParamsPredictor":
        """Loads the agent, its normalisation statistics and its reward model from a run folder.

        Raises:
            FileNotFoundError: ``run_dir`` lacks ``config.yaml`` or the agent.
        """
        from envs.rewards import create_reward

        run_dir = Path(run_dir)
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{run_dir} is not a run folder (no {CONFIG_FILE})")
        config = load_yaml(run_dir / CONFIG_FILE)
        policy = build_policy(
            config["algo"], int(config["obs_dim"]), int(config["act_dim"]), config["algo_kwargs"].get("policy_kwargs"), device
        )
        load_policy_weights(policy, run_dir / AGENT_FILE, device)
        normalizer = ObsNormalizer.load(run_dir / VECNORM_FILE) if (run_dir / VECNORM_FILE).is_file() else None
        reward = create_reward(config["reward"], config.get("attiqa_checkpoint"), device)
        return cls(policy, config, normalizer, reward, device)

    # -- core loop on a TuningCore ----------------------------------------------------------------
    def _obs(self, res, unit: np.ndarray, t: int) -> np.ndarray:
        obs = observe(res, unit, t, self.horizon)
        return self.normalizer(obs) if self.normalizer is not None else obs

    def predict_unit(self, core, idx: Sequence[int]) -> tuple[np.ndarray, int]:
        """Unit-box params ``(B, P)`` the agent picks for images ``idx`` of a ``TuningCore``.

        Returns:
            The params, as offsets from the entries' bases (what ``core.evaluate`` takes;
            ``core.absolute`` gives the parameters rendered), and the number of reward
            evaluations per image it took to choose them.
        """
        idx = list(idx)
        B, P = len(idx), core.num_params
        unit = np.zeros((B, P), np.float32)
        active = np.ones(B, bool)
        neutral = res = core.evaluate(idx, unit)
        evals = 1
        for t in range(self.horizon):
            obs = self._obs(res, core.absolute(idx, unit), t)
            action, _ = self.policy.predict(obs, deterministic=True)
            action = np.clip(np.asarray(action, np.float32).reshape(B, -1), -1.0, 1.0)
            if self.mode == "absolute" and self.refine_steps > 0:
                action = self.refine(obs, action)
            new, stopped = advance(self.env, unit, action)
            active &= ~stopped
            unit = np.where(active[:, None], new, unit).astype(np.float32)
            if self.mode == "absolute":
                break
            if t + 1 < self.horizon and active.any():
                res = core.evaluate(idx, unit)
                evals += 1
        if self.fallback == "render":
            chosen = core.evaluate(idx, unit)
            evals += 1
            keep = self._potential(chosen, unit, neutral) >= self._potential(neutral, np.zeros_like(unit), neutral)
            unit = np.where(keep[:, None], unit, 0.0).astype(np.float32)
        elif self.fallback == "critic" and self.mode == "absolute":
            obs0 = self._obs(neutral, core.absolute(idx, np.zeros_like(unit)), 0)
            keep = self.critic_value(obs0, unit) >= self.critic_value(obs0, np.zeros_like(unit))
            unit = np.where(keep[:, None], unit, 0.0).astype(np.float32)
        return unit, evals

    @torch.enable_grad()
    def refine(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """``refine_steps`` Adam steps on ``min Q(obs, a)`` over ``a = tanh(z)``, from the actor's action.

        The actor is trained to maximise the critic minus an entropy bonus, so its mean is near,
        not at, the critic's maximum; this closes the gap with a few tiny-MLP passes and no
        reward evaluation.

        Args:
            obs: ``(B, D)`` normalised observations. action: ``(B, A)`` in ``[-1, 1]``.
        """
        dev = self.policy.device
        obs_t = torch.as_tensor(obs, device=dev)
        z = torch.atanh(torch.as_tensor(action, device=dev).clamp(-0.999, 0.999)).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.refine_lr)
        for _ in range(self.refine_steps):
            q = self._min_q(obs_t, torch.tanh(z))
            (z.grad,) = torch.autograd.grad(-q.sum(), z)  # only w.r.t. the actions: the critic keeps no gradient
            opt.step()
        return torch.tanh(z).detach().cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def critic_value(self, obs: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """The agent's own estimate of the reward of ``unit`` (min over its critics), ``(B,)``.

        Args:
            obs: ``(B, D)`` normalised observations. unit: ``(B, P)`` actions in the unit box.
        """
        P = unit.shape[1]
        act = np.zeros((unit.shape[0], self.policy.action_space.shape[0]), np.float32)
        act[:, :P] = unit
        dev = self.policy.device
        return self._min_q(torch.as_tensor(obs, device=dev), torch.as_tensor(act, device=dev)).cpu().numpy()

    def _min_q(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The smallest of the agent's critic estimates (SAC's pessimistic value), ``(B,)``."""
        return torch.cat(self.policy.critic(obs, act), dim=1).min(dim=1).values

    def _potential(self, res, unit: np.ndarray, neutral) -> np.ndarray:
        return self.env.penalties.potential(res, unit, neutral)

    @torch.no_grad()
    def predict(self, raws: Sequence) -> torch.Tensor:
        """Physical ISP parameters ``(B, P)`` the agent chooses for each RAW image.

        Args:
            raws: ``isp.RawImage`` objects (any size; the environment's preprocessing is applied).
        """
        import isp

        from envs.core import ImageSet, TuningCore, base_unit, detail_window, prepare_raw

        out = []
        for raw in raws:  # one at a time: previews of different shapes do not stack
            env = self.env
            images = ImageSet([prepare_raw(raw, env.crop, env.preview_side, env.view_mode)], [str(raw.path)], env.crop,
                              bases=base_unit(raw, env.auto_denoise, env.auto_exposure)[None]
                              if env.auto_denoise or env.auto_exposure else None)
            kwargs = env.core_kwargs()
            window = None
            if env.detail_crop and env.detail_weight:
                # the same 1:1 window the held-out evaluation scores (the center); a RAW smaller
                # than it gets the largest centred window that fits, so that an agent observing
                # the window's scores (env.detail_observation) sees an image's, not zeros
                with contextlib.suppress(ValueError):  # no room for a window inside the halo
                    window = detail_window(raw, env.detail_crop, env.detail_halo, fit=True)[0]
            if window is not None:
                images.details, images.detail_halo = [window], env.detail_halo // 2 * 2
            else:  # no detail term, or no room for a window: the window's scores in the observation are zeros
                kwargs["detail_weight"] = 0.0
            core = TuningCore(images, self.reward, **kwargs, device=self.device)
            unit, _ = self.predict_unit(core, [0])
            out.append(isp.unit_to_params(torch.as_tensor(core.absolute([0], unit)))[0])
        return torch.stack(out).to(self.device)
