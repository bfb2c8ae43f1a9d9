"""The environment's configuration: every env key, its default and its check, in one place.

:class:`EnvConfig` is what the ``env:`` section of a run's ``config.yaml`` holds. The single
environment, the vectorised environment, the predictor that applies a trained agent and the
held-out evaluation all build what they need from it (:meth:`EnvConfig.image_kwargs`,
:meth:`EnvConfig.core_kwargs`, :attr:`EnvConfig.penalties`), so a new key is added here and
nowhere else.

Example:
    >>> cfg = EnvConfig.from_dict({"mode": "incremental", "clip_penalty": 2.0})
    >>> cfg.horizon, cfg.penalties.clip_penalty
    (4, 2.0)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["EnvConfig", "Penalties", "MODES", "advance"]

MODES = ("absolute", "incremental")


@dataclass(frozen=True)
class Penalties:
    """The weights of the reward's potential (:func:`envs.core.potential`).

    ``reward_scale * s - clip_penalty * relu(clipped - clipped_neutral) - cast_penalty *
    relu(cast - cast_neutral) - param_penalty * mean(u**2)``, with ``s`` the reward model's
    normalised score; ``detail_penalty``, when set, replaces ``param_penalty`` for the denoising
    and sharpening controls (:func:`envs.core.trust_region`).
    """

    reward_scale: float = 10.0
    clip_penalty: float = 2.0
    param_penalty: float = 0.0
    cast_penalty: float = 0.0
    detail_penalty: float | None = None

    def kwargs(self) -> dict[str, float]:
        """As keyword arguments of :func:`envs.core.potential` and the baselines in ``rl.evaluate``."""
        return dataclasses.asdict(self)

    def potential(self, res, unit: np.ndarray, neutral) -> np.ndarray:
        """The potential of renderings ``res`` (``StepResult``, ``B`` rows) against their neutral ones."""
        from envs.core import potential

        return potential(res.normalized, res.clipped, neutral.clipped, unit, cast=res.cast, cast_neutral=neutral.cast, **self.kwargs())


_PENALTY_KEYS = tuple(f.name for f in fields(Penalties))


@dataclass(frozen=True)
class EnvConfig:
    """Every setting of the ISP-tuning environment.

    Attributes:
        mode: ``absolute`` (one step sets all parameters) or ``incremental``.
        horizon: steps per episode in ``incremental`` mode (``absolute`` uses 1).
        step_size: largest change per step in the unit box (``incremental``).
        allow_stop: an extra action component > 0 ends the episode (``incremental``).
        crop: ``(H, W)`` of every view's mosaic (even numbers).
        preview_side: longest side of the cached preview the views are made from.
        crop_mode: ``whole`` (the whole RAW resampled to ``crop``), ``center``, ``five`` or
            ``random`` windows of the preview (:data:`envs.core.CROP_MODES`).
        crops_per_image: windows per RAW in ``random`` mode.
        flip: mirrored views as extra training contexts.
        thumb_size: side of the observation's thumbnail.
        hist_bins: bins of the observation's luma histogram (0 = none).
        detail_crop: side of the 1:1 window of the full-resolution RAW scored beside each view
            (0 = none). detail_halo: its margin. detail_weight: its share of the score.
        detail_observation: the observation also carries the reward model's five attribute
            scores of the rendered 1:1 window (where noise and sharpening show), not only the
            view's (zeros where a RAW has no window).
        auto_denoise: the detail controls start from (and the trust region is centred on) the
            denoising strengths that each RAW's measured noise calls for
            (:func:`isp.noise.denoise_strengths`) instead of zero: the agent's action is an offset
            from that base (:attr:`envs.core.ImageSet.bases`).
        auto_exposure: the base is also brightened until each RAW's highlights reach white
            (:func:`isp.exposure.highlight_exposure`; never darkened).
        penalties: the weights of the reward's potential (:class:`Penalties`).
    """

    mode: str = "absolute"
    horizon: int = 4
    step_size: float = 0.5
    allow_stop: bool = False
    crop: tuple[int, int] = (128, 128)
    preview_side: int = 256
    crop_mode: str = "center"
    crops_per_image: int = 1
    flip: bool = False
    thumb_size: int = 8
    hist_bins: int = 0
    detail_crop: int = 0
    detail_halo: int = 16
    detail_weight: float = 0.0
    detail_observation: bool = False
    auto_denoise: bool = False
    auto_exposure: bool = False
    penalties: Penalties = field(default_factory=Penalties)

    def __post_init__(self) -> None:
        from envs.core import CROP_MODES

        if self.mode not in MODES:
            raise ValueError(f"env.mode must be one of {MODES}, got {self.mode!r}")
        if self.crop_mode not in CROP_MODES:
            raise ValueError(f"env.crop_mode must be one of {CROP_MODES}, got {self.crop_mode!r}")
        crop = tuple(int(c) for c in self.crop)
        if len(crop) != 2 or min(crop) < 2 or any(c % 2 for c in crop):
            raise ValueError(f"env.crop must be two even numbers >= 2, got {self.crop!r}")
        object.__setattr__(self, "crop", crop)
        checks = {
            "horizon": self.horizon >= 1, "step_size": self.step_size > 0, "preview_side": self.preview_side >= 2,
            "crops_per_image": self.crops_per_image >= 1, "thumb_size": self.thumb_size >= 1, "hist_bins": self.hist_bins >= 0,
            "detail_crop": self.detail_crop >= 0 and self.detail_crop % 2 == 0, "detail_halo": self.detail_halo >= 0,
            "detail_weight": 0.0 <= self.detail_weight <= 1.0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"env: invalid value for {', '.join(bad)} ({', '.join(f'{k}={getattr(self, k)!r}' for k in bad)})")

    @property
    def steps(self) -> int:
        """Steps per episode (1 in ``absolute`` mode)."""
        return 1 if self.mode == "absolute" else int(self.horizon)

    @property
    def stop_action(self) -> bool:
        """Whether the action has the extra stop component."""
        return bool(self.allow_stop) and self.mode == "incremental"

    @property
    def view_mode(self) -> str:
        """How a single RAW is turned into the view the agent sees at inference (whole or center)."""
        return "whole" if self.crop_mode == "whole" else "center"

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "EnvConfig":
        """From a config's flat ``env`` section (penalty weights sit beside the other keys).

        Raises:
            ValueError: an unknown key (the message lists the known ones) or an invalid value.
        """
        d = dict(d or {})
        known = {f.name for f in fields(cls)} - {"penalties"}
        unknown = sorted(set(d) - known - set(_PENALTY_KEYS))
        if unknown:
            raise ValueError(f"unknown env key(s) {', '.join(unknown)}; known: {', '.join(sorted(known | set(_PENALTY_KEYS)))}")
        pen = {k: d.pop(k) for k in _PENALTY_KEYS if k in d}
        pen = Penalties(**{k: None if v is None and k == "detail_penalty" else float(v) for k, v in pen.items()})
        types = {"horizon": int, "step_size": float, "preview_side": int, "crops_per_image": int, "thumb_size": int,
                 "hist_bins": int, "detail_crop": int, "detail_halo": int, "detail_weight": float, "allow_stop": bool, "flip": bool,
                 "detail_observation": bool, "auto_denoise": bool, "auto_exposure": bool}
        values = {k: (types[k](v) if k in types and v is not None else v) for k, v in d.items()}
        if values.get("horizon") is None:
            values.pop("horizon", None)
        return cls(**values, penalties=pen)

    def to_dict(self) -> dict[str, Any]:
        """The flat ``env`` section for ``config.yaml`` (plain Python types)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "penalties"}
        out["crop"] = list(self.crop)
        out.update(self.penalties.kwargs())
        return out

    def replace(self, **changes) -> "EnvConfig":
        """A copy with some keys changed (penalty weights included, by their flat names)."""
        d = self.to_dict()
        d.update(changes)
        return EnvConfig.from_dict(d)

    def image_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`envs.core.load_image_set` for the training views."""
        return dict(preview_side=self.preview_side, crop=self.crop, crop_mode=self.crop_mode, crops_per_image=self.crops_per_image,
                    flip=self.flip, detail_crop=self.detail_crop, detail_halo=self.detail_halo, auto_denoise=self.auto_denoise,
                    auto_exposure=self.auto_exposure)

    def core_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`envs.core.TuningCore` (besides images, reward, device)."""
        return dict(thumb_size=self.thumb_size, hist_bins=self.hist_bins, detail_weight=self.detail_weight,
                    detail_observation=self.detail_observation)


def advance(config: EnvConfig, unit: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Applies actions to the current unit-box parameters: the one definition of a step.

    Args:
        config: the environment's configuration.
        unit: ``(B, P)`` current parameters in the unit box.
        action: ``(B, P)`` or ``(B, P + 1)`` (with the stop component) actions, clipped to ``[-1, 1]``.

    Returns:
        ``(new_unit (B, P), stopped (B,) bool)``: in ``absolute`` mode the action is the new
        parameter vector; in ``incremental`` mode ``unit + step_size * action``, clipped to the
        box, and rows whose stop component is > 0 keep their parameters and are ``stopped``.

    Raises:
        ValueError: NaN or infinite actions.
    """
    a = np.asarray(action, dtype=np.float32)
    if a.ndim == 1:
        a = a[None]
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action contains NaN or inf: {a}")
    a = np.clip(a, -1.0, 1.0)
    P = unit.shape[1]
    if config.mode == "absolute":
        return a[:, :P].copy(), np.zeros(len(a), bool)
    stopped = a[:, P] > 0.0 if config.stop_action else np.zeros(len(a), bool)
    new = np.clip(unit + config.step_size * a[:, :P], -1.0, 1.0).astype(np.float32)
    return np.where(stopped[:, None], unit, new).astype(np.float32), stopped
