"""The ISP tuning environment: choose ISP parameters for a RAW photo, rewarded by image quality."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.config import MODES, EnvConfig, advance
from envs.core import ImageSet, StepResult, TuningCore, load_image_set
from envs.rewards import RewardModel, create_reward

__all__ = ["IspTuningEnv", "MODES", "Pending", "observe", "observation_bounds"]

ATTR_BOUND = 100.0  # attribute scores are clipped to [-ATTR_BOUND, ATTR_BOUND] in observations


def observe(res: StepResult, unit: np.ndarray, t: int, horizon: int) -> np.ndarray:
    """The observation of ``B`` renderings: thumbnail, luma histogram, attributes, params, time.

    The one definition used by :class:`IspTuningEnv`, the vectorised env and the predictor that
    applies a trained agent (:class:`rl.inference.AgentParamsPredictor`).

    Args:
        res: the renderings' :class:`envs.core.StepResult` (``B`` rows).
        unit: ``(B, P)`` current params in the unit box.
        t: steps taken so far. horizon: steps per episode.

    Returns:
        ``(B, D)`` float32 (layout in :class:`IspTuningEnv`'s table).
    """
    B = unit.shape[0]
    hist = res.hist if res.hist is not None else np.zeros((B, 0), np.float32)
    detail = np.zeros((B, 0), np.float32) if res.detail_attributes is None else np.clip(res.detail_attributes, -ATTR_BOUND, ATTR_BOUND)
    return np.concatenate(
        [res.thumb.reshape(B, -1), hist.reshape(B, -1), np.clip(res.attributes, -ATTR_BOUND, ATTR_BOUND), detail, unit,
         np.full((B, 1), t / horizon)], axis=1,
    ).astype(np.float32)


def observation_bounds(thumb_size: int, hist_bins: int, num_params: int, detail_attributes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of :func:`observe`'s output (``detail_attributes``: with the detail windows' five scores)."""
    t, h, P, a = int(thumb_size), int(hist_bins), int(num_params), 10 if detail_attributes else 5
    low = np.concatenate([np.zeros(3 * t * t + h), np.full(a, -ATTR_BOUND), -np.ones(P), [0.0]]).astype(np.float32)
    high = np.concatenate([np.ones(3 * t * t + h), np.full(a, ATTR_BOUND), np.ones(P), [1.0]]).astype(np.float32)
    return low, high


@dataclass
class Pending:
    """An action turned into what to render: the entry and its new unit-box parameters."""

    image: int
    unit: np.ndarray | None  # None: the agent stopped, nothing to render


class IspTuningEnv(gym.Env):
    """
    ## Description

    An episode takes one RAW photograph from the training split (decoded once and kept in
    memory as a center-cropped preview) and lets the agent set the parameters of the
    differentiable ISP (`isp.ISP`: white balance, exposure, tone, saturation, denoise,
    sharpen, ...). The rendered sRGB image is scored by a no-reference quality model (ATTIQA
    by default); the reward is the change of that score.

    Two modes:
    - `absolute` (default): a contextual bandit. The agent sees the neutral rendering and
      sets all parameters in one step; the episode ends after that step.
    - `incremental`: the agent starts from the neutral parameters and moves them by at most
      `step_size` (in unit-box coordinates) per step, for up to `horizon` steps; with
      `allow_stop=True` an extra action component > 0 ends the episode without a change.

    ## Action Space

    `Box(-1, 1, (P,), float32)` (`P = isp.NUM_PARAMS`; `P + 1` with `allow_stop`). In
    `absolute` mode the action is the parameter vector in the unit box, mapped to physical
    values by `isp.unit_to_params` (`0` = neutral, `-1`/`+1` = each parameter's declared low/high).
    In `incremental` mode it is a change of that vector, scaled by `step_size` and clipped to the box.

    ## Observation Space

    `Box(float32)` of size `3 t^2 + h + 5 + d + P + 1` (`t = thumb_size`, `h = hist_bins`, `d = 5`
    with `detail_observation`, else 0), built by `envs.isp_tuning.observe` (the same function
    serves the vectorised env and the predictor):

    | Slice                     | Observation                                                        | Min  | Max |
    |---------------------------|--------------------------------------------------------------------|------|-----|
    | `[0, 3t^2)`               | thumbnail of the current rendering, RGB in `[0, 1]`, channel-major  | 0    | 1   |
    | next `h`                  | luma histogram of the current rendering (fraction per bin)         | 0    | 1   |
    | next 5                    | the reward model's five attribute scores of the current rendering  | -100 | 100 |
    | next `d`                  | the same five scores of the rendered 1:1 detail window             | -100 | 100 |
    | next `P`                  | current ISP parameters in the unit box (the entry's base + offset)  | -1   | 1   |
    | last                      | elapsed fraction of the episode `t / horizon`                      | 0    | 1   |

    ## Rewards

    With `s` the reward model's score normalised to "higher is better, declared range -> [0, 1]",
    the potential is `reward_scale * s - clip_penalty * max(0, clipped - clipped_neutral)
    - cast_penalty * max(0, cast - cast_neutral) - param_penalty * mean(u^2)` (`clipped`:
    fraction of pixels at pure black or white, `cast`: distance of the mean colour from grey,
    `envs.core.colour_cast`; `u`: unit-box params). The reward of a step is the change of that
    potential, so an episode's
    return is the regularised score gain over the neutral parameters.

    ## Starting State

    An entry (a crop of a RAW, see `crop_mode`) drawn uniformly from the split with
    `self.np_random` (or `options={"image_index": i}`), and the neutral parameters (`u = 0`): the
    camera's own, or the entry's base with `auto_denoise` / `auto_exposure` (the actions are then
    offsets from it, `envs.core.TuningCore.absolute`).

    ## Episode End

    Terminated after one step (`absolute`), after `horizon` steps or a stop action
    (`incremental`). The registered id `IspTuning-v0` adds a 64-step time limit as a safety net.

    ## Arguments

    ```python
    import gymnasium as gym
    import envs  # registers the id
    env = gym.make("IspTuning-v0", data_root="path/to/fivek", reward="analytic")
    ```

    - `config`: an `envs.EnvConfig` (or its dict); every env key below can also be given as a
      keyword, which overrides it. The keys, their defaults and their checks live only there.
    - `data_root`: a dataset root or RAW folder (required unless `images` or `core` is given:
      the environment never builds the sample set by itself; `isp.sample_data.ensure_sample_set()` does).
    - `split`: `"train"` or `"test"`. `images`: a ready `ImageSet` instead.
    - `reward` (required unless `core` is given): registry name (`"attiqa"`, `"analytic"`) or a
      `RewardModel`; `reward_checkpoint`: its checkpoint (`None` = the registry's default: for
      `attiqa`, the starter model).
    - `mode`, `horizon`, `step_size`, `allow_stop`: see above.
    - `crop` `(H, W)`, `preview_side`: preprocessing of every RAW; `thumb_size`, `hist_bins`:
      observation thumbnail and luma histogram.
    - `crop_mode`, `crops_per_image`, `flip`: the views. `"whole"` resamples each whole RAW to
      `crop` (tone and colour are judged on the whole picture; `flip` adds its mirror image).
      `"random"` adds
      `crops_per_image - 1` randomly placed crops of each RAW to the center one (each a separate
      episode context with its own neutral rendering), `flip` mirrors every second of them after
      rendering; `"five"` takes the center and the four corners. Default: the center crop only.
    - `reward_scale`, `clip_penalty`, `cast_penalty`, `param_penalty`: the reward's potential.
    - `device`: torch device of the ISP and the reward model. `core`: share a `TuningCore`.
    - `render_mode`: `None` or `"rgb_array"` (the current rendering, `(H, W, 3)` uint8).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        config: EnvConfig | dict | None = None,
        *,
        data_root: str | Path | None = None,
        split: str = "train",
        reward: str | RewardModel | None = None,
        reward_checkpoint: str | None = None,
        device: str = "cpu",
        render_mode: str | None = None,
        images: ImageSet | None = None,
        core: TuningCore | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(config, dict) or config is None:
            config = EnvConfig.from_dict({**(config or {}), **overrides})
        elif overrides:
            config = config.replace(**overrides)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if core is None:
            if reward is None:
                raise ValueError("IspTuningEnv needs a reward: a registry name (e.g. reward='analytic', reward='attiqa') or a "
                                 "RewardModel (envs.create_reward)")
            if images is None:
                if data_root is None:
                    raise ValueError("IspTuningEnv needs data_root (a dataset root or RAW folder), images or core; the embedded "
                                     "sample set is isp.sample_data.ensure_sample_set()")
                images = load_image_set(data_root, split, **config.image_kwargs())
            if isinstance(reward, str):
                reward = create_reward(reward, reward_checkpoint, device)
            core = TuningCore(images, reward, **config.core_kwargs(), device=device)
        self.config = config
        self.core = core
        self.mode = config.mode
        self.horizon = config.steps
        self.allow_stop = config.stop_action
        self.penalties = config.penalties
        self.render_mode = render_mode

        P = core.num_params
        self.num_params = P
        self.action_space = spaces.Box(-1.0, 1.0, shape=(P + int(self.allow_stop),), dtype=np.float32)
        self.observation_space = spaces.Box(*observation_bounds(core.thumb_size, core.hist_bins, P, core.detail_observation),
                                            dtype=np.float32)

        self._image = 0
        self._unit = np.zeros(P, np.float32)
        self._t = 0
        self._last: StepResult | None = None
        self._neutral: StepResult | None = None
        self._phi = 0.0

    # -- one step, in pieces the vectorised env batches -----------------------------------------
    def draw(self, seed: int | None = None, options: dict[str, Any] | None = None) -> int:
        """Seeds (as ``reset`` does) and draws the entry of the next episode from ``self.np_random``."""
        gym.Env.reset(self, seed=seed)
        if options and "image_index" in options:
            i = int(options["image_index"])
            if not 0 <= i < len(self.core.images):
                raise ValueError(f"image_index {i} out of range [0, {len(self.core.images)})")
            return i
        return int(self.np_random.integers(len(self.core.images)))

    def start(self, image: int, neutral: StepResult) -> tuple[np.ndarray, dict]:
        """Begins an episode on entry ``image`` whose neutral rendering is ``neutral``; ``(obs, info)``."""
        self._image = image
        self._unit = np.zeros(self.num_params, np.float32)
        self._t = 0
        self._last = self._neutral = neutral
        self._phi = self._potential(neutral, self._unit)
        return self._obs(), self._info()

    @property
    def potential_value(self) -> float:
        """The current potential (regularised score) whose change is the reward."""
        return self._phi

    def _potential(self, res: StepResult, unit: np.ndarray) -> float:
        return float(self.penalties.potential(res, unit[None], self._neutral)[0])

    def prepare(self, action: np.ndarray) -> Pending:
        """Turns an action into the params to render (``unit=None`` for a stop), see :func:`envs.config.advance`."""
        a = np.asarray(action, dtype=np.float32).reshape(self.action_space.shape)
        unit, stopped = advance(self.config, self._unit[None], a[None])
        return Pending(self._image, None if stopped[0] else unit[0])

    def complete(self, pending: Pending, res: StepResult | None):
        """Applies the rendered result of :meth:`prepare`; returns the Gymnasium step tuple."""
        self._t += 1
        stopped = pending.unit is None
        if stopped:
            reward = 0.0
        else:
            phi = self._potential(res, pending.unit)
            reward = phi - self._phi
            self._phi = phi
            self._unit = pending.unit
            self._last = res
        terminated = stopped or self._t >= self.horizon
        return self._obs(), float(reward), bool(terminated), False, self._info(stopped=stopped)

    def _obs(self) -> np.ndarray:
        # the parameters as rendered (the base plus the offset), which tell the agent its base
        return observe(self._last, self.core.absolute([self._image], self._unit[None]), self._t, self.horizon)[0]

    def _info(self, stopped: bool = False) -> dict[str, Any]:
        return {
            "image_id": self.core.images.ids[self._image],
            "score": float(self._last.score[0]),
            "clipped": float(self._last.clipped[0]),
            "stopped": stopped,
        }

    # -- Gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        image = self.draw(seed, options)
        return self.start(image, self.core.neutral([image])[0])

    def step(self, action: np.ndarray):
        pending = self.prepare(action)
        res = None if pending.unit is None else self.core.evaluate([pending.image], pending.unit[None]).row(0)
        return self.complete(pending, res)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        import torch

        with torch.no_grad():
            img = self.core.render([self._image], torch.as_tensor(self._unit[None], device=self.core.device))
        return (img[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)

    # -- exact resume ---------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Everything that decides this env's future, as plain JSON values: the RNG state and the
        current episode (entry, params, step, neutral references, potential, last rendering).

        :meth:`set_state` on an env built with the same arguments continues exactly where this
        one stands (used by ``rl.training.save_run_state``)."""
        last = self._last
        return {
            "rng": self.np_random.bit_generator.state,
            "image": int(self._image),
            "unit": [float(x) for x in self._unit],
            "t": int(self._t),
            "neutral": result_state(self._neutral),
            "phi": float(self._phi),
            "last": result_state(last),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`get_state`'s output (an env of the same configuration)."""
        rng = state["rng"]
        self._np_random = np.random.Generator(getattr(np.random, rng["bit_generator"])())
        self._np_random.bit_generator.state = rng
        self._image = int(state["image"])
        self._unit = np.asarray(state["unit"], np.float32)
        self._t = int(state["t"])
        self._neutral = result_from_state(state["neutral"])
        self._phi = float(state["phi"])
        self._last = result_from_state(state["last"])

    @property
    def physical_params(self) -> np.ndarray:
        """Current ISP parameters in physical units, ``(P,)``."""
        import torch

        return self.core.isp_module.unit_to_params(torch.as_tensor(self.core.absolute([self._image], self._unit[None])))[0].numpy()


def _array_state(a: np.ndarray) -> dict[str, Any]:
    """A numpy array as JSON values that round-trip exactly (float32/float64 via Python floats)."""
    a = np.asarray(a)
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": a.ravel().tolist()}


_RESULT_FIELDS = ("score", "normalized", "attributes", "thumb", "clipped", "cast", "hist", "detail_attributes")


def result_state(res: StepResult | None) -> dict[str, Any] | None:
    """A :class:`envs.core.StepResult` (without images) as JSON values that round-trip exactly."""
    if res is None:
        return None
    return {name: None if getattr(res, name) is None else _array_state(getattr(res, name)) for name in _RESULT_FIELDS}


def result_from_state(state: dict[str, Any] | None) -> StepResult | None:
    """Inverse of :func:`result_state`."""
    if state is None:
        return None
    return StepResult(**{name: None if v is None else np.asarray(v["data"], dtype=v["dtype"]).reshape(v["shape"])
                         for name, v in state.items()})
