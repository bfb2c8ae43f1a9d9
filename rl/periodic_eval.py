"""Held-out evaluation during training (SB3's ``EvalCallback`` idea) and the final TensorBoard entries.

:class:`HeldOutEvalCallback` runs, every ``eval.every`` timesteps, the current deterministic
policy on the held-out views (the same :class:`rl.inference.AgentParamsPredictor` the final
evaluation uses, so the same fallback), and logs to TensorBoard and to ``eval_curve.csv``:

* ``eval/mean_score``: the reward model's mean score of the agent's renders, and
  ``eval/score_gain`` over the default parameters on the same views;
* ``eval/clipped_fraction`` and ``eval/colour_cast`` of those renders;
* ``eval/delta_e2000``: the agent's mean CIEDE2000 to the expert renderings, on the whole
  held-out RAWs rendered small (``eval.de_side`` px; 0 turns it off), where experts exist;
* ``eval/before_after``: an image, default | agent for the first held-out views.

:func:`log_final_to_tensorboard` adds, after the final evaluation, the ``before_after.png``
grid as an image and the judges of every policy as scalars and as the metrics of an ``hparams``
entry (the run's main settings as its hyperparameters).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rl.common import atomic_write_text

__all__ = ["EVAL_CURVE_FILE", "HeldOutEvalCallback", "log_final_to_tensorboard", "strip_image"]

EVAL_CURVE_FILE = "eval_curve.csv"
_COLUMNS = ("timesteps", "mean_score", "score_gain", "clipped_fraction", "colour_cast", "delta_e2000", "default_score")
_NOT_TB = ("stdout", "log", "json", "csv")


def strip_image(left: np.ndarray, right: np.ndarray, rows: int = 4, gap: int = 2) -> np.ndarray:
    """``(H', W', 3)`` uint8: rows of ``left[i] | right[i]`` for the first ``rows`` images.

    Args:
        left, right: ``(B, 3, H, W)`` float renders in ``[0, 1]`` (same shapes).
    """
    n = min(rows, len(left))
    _, h, w = left.shape[1:]
    out = np.full((n * (h + gap) - gap, 2 * w + gap, 3), 255, np.uint8)
    for i in range(n):
        for k, img in enumerate((left[i], right[i])):
            out[i * (h + gap): i * (h + gap) + h, k * (w + gap): k * (w + gap) + w] = \
                (np.clip(np.transpose(img, (1, 2, 0)), 0, 1) * 255 + 0.5).astype(np.uint8)
    return out


class HeldOutEvalCallback(BaseCallback):
    """Every ``every`` timesteps: the deterministic policy on the held-out views, logged (module docstring).

    Args:
        core: a ``TuningCore`` over the held-out views (its own, not the training one).
        config: the run's resolved config (the predictor's settings).
        reward: the reward model.
        every: timesteps between evaluations (``<= 0``: never).
        run_dir: where ``eval_curve.csv`` goes (``None``: not written).
        device: torch device.
        de_side: longer side of the small whole-image renders for ΔE2000 (0: no ΔE).
        strip_rows: views in the logged image.
    """

    def __init__(self, core, config: dict, reward, every: int, run_dir=None, device: str = "cpu", de_side: int = 128,
                 strip_rows: int = 4) -> None:
        super().__init__()
        self.core, self.config, self.reward, self.device = core, config, reward, device
        self.every = int(every)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.de_side = int(de_side)
        self.strip_rows = int(strip_rows)
        self.rows: list[dict] = []
        self._last = 0
        self._default = None
        self._experts = None
        self.seconds = 0.0

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps
        path = None if self.run_dir is None else self.run_dir / EVAL_CURVE_FILE
        if path is not None and path.is_file():  # a resumed run keeps its earlier points
            with open(path, newline="", encoding="utf-8") as f:
                self.rows = [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)
                             if float(r["timesteps"]) <= self.num_timesteps]

    def _on_step(self) -> bool:
        if self.every > 0 and self.num_timesteps - self._last >= self.every:
            self._last = self.num_timesteps
            self.evaluate()
        return True

    # -- the measurement ----------------------------------------------------------------------------
    def _small_views(self):
        """``[(preview RawImage, expert (h, w, 3) or None)]`` per held-out RAW, decoded once."""
        if self._experts is None:
            from envs import judges
            from isp import fivek

            self._experts = []
            for i in self.core.images.center_indices():
                e = self.core.images.sources[i] if self.core.images.sources else None
                if e is None or not getattr(e, "expert_c", None):
                    continue
                raw = fivek.cached_preview(e.dng, self.de_side)
                expert = judges.load_expert_srgb(e.expert_c)
                step = max(1, int(max(expert.shape[:2]) // (2 * self.de_side)))
                self._experts.append((i, raw, np.ascontiguousarray(expert[::step, ::step])))
        return self._experts

    def _delta_e(self, unit: np.ndarray) -> float | None:
        import torch

        import isp
        from envs import judges

        if self.de_side <= 0:
            return None
        views = self._small_views()
        if not views:
            return None
        values = []
        for i, raw, expert in views:
            img = isp.render(raw, isp.unit_to_params(torch.as_tensor(unit[i : i + 1]))[0])
            values.append(judges.judge(img, expert)["delta_e2000"])
        return float(np.mean(values))

    def evaluate(self) -> dict:
        """Runs the evaluation now; returns and logs its row."""
        import time

        from rl.inference import AgentParamsPredictor
        from rl.training import normalizer_of

        t0 = time.perf_counter()
        idx = list(range(len(self.core.images)))
        zero = self.core.offset(idx, np.zeros((len(idx), self.core.num_params), np.float32))  # the camera's neutral parameters
        if self._default is None:
            self._default = self.core.evaluate(idx, zero, keep_images=True)
        predictor = AgentParamsPredictor(self.model.policy, self.config, normalizer_of(self.training_env), self.reward, self.device)
        unit, _ = predictor.predict_unit(self.core, idx)
        res = self.core.evaluate(idx, unit, keep_images=True)
        d = float(np.mean(self._default.score))
        row = {"timesteps": float(self.num_timesteps), "mean_score": float(np.mean(res.score)),
               "score_gain": float(np.mean(res.score)) - d, "clipped_fraction": float(np.mean(res.clipped)),
               "colour_cast": float(np.mean(res.cast)), "delta_e2000": self._delta_e(self.core.absolute(idx, unit)), "default_score": d}
        self.rows.append(row)
        for k in _COLUMNS[1:-1]:
            if row[k] is not None:
                self.logger.record(f"eval/{k}", row[k])
        from stable_baselines3.common.logger import Image

        self.logger.record("eval/before_after", Image(strip_image(self._default.images, res.images, self.strip_rows), "HWC"),
                           exclude=_NOT_TB)
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        if self.run_dir is not None:
            lines = [",".join(_COLUMNS)] + [",".join("" if r.get(k) is None else repr(float(r[k])) for k in _COLUMNS)
                                            for r in self.rows]
            atomic_write_text(self.run_dir / EVAL_CURVE_FILE, "\n".join(lines) + "\n")
        self.seconds += time.perf_counter() - t0
        return row


def log_final_to_tensorboard(model, results: dict, config: dict, before_after_png=None) -> None:
    """The final evaluation in TensorBoard: the judges as scalars and ``hparams`` metrics, the grid as an image.

    Args:
        model: the SB3 agent (its logger writes to the run's ``tb/``).
        results: the ``eval.json`` dictionary (with ``judges`` sections).
        config: the run's resolved config (the hyperparameters shown beside the metrics).
        before_after_png: the ``before_after.png`` file, logged as an image when it exists.
    """
    from stable_baselines3.common.logger import HParam, Image, configure

    from rl.evaluate import POLICIES

    logger, own = getattr(model, "_logger", None), False
    if logger is None:  # nothing was trained in this call (a re-evaluation): a TensorBoard folder of its own
        if not getattr(model, "tensorboard_log", None):
            return
        logger, own = configure(str(Path(model.tensorboard_log) / f"eval_{model.num_timesteps}"), ["tensorboard"]), True

    metrics: dict[str, float] = {}
    for p in POLICIES:
        entry = results.get(p) or {}
        if entry.get("mean_score") is not None:
            metrics[f"judges/{p}/reward"] = float(entry["mean_score"])
        for k, v in ((entry.get("judges") or {}).get("mean") or {}).items():
            if v is not None and np.isfinite(v):
                metrics[f"judges/{p}/{k}"] = float(v)
    ratio = (results.get("benchmark") or {}).get("agent_vs_default_dE_ratio")
    if ratio is not None:
        metrics["judges/agent_vs_default_dE_ratio"] = float(ratio)
    for k, v in metrics.items():
        logger.record(k, v)
    env = config.get("env", {}) or {}
    hparams = {"algo": str(config.get("algo")), "reward": str(config.get("reward")), "seed": int(config.get("seed", 0)),
               "total_timesteps": int(config.get("total_timesteps", 0)), "n_envs": int(config.get("n_envs", 0))}
    for k in ("mode", "reward_scale", "clip_penalty", "cast_penalty", "param_penalty", "detail_penalty", "crop_mode"):
        if isinstance(env.get(k), (int, float, str, bool)):
            hparams[f"env.{k}"] = env[k]
    for k, v in (config.get("algo_kwargs") or {}).items():
        if isinstance(v, (int, float, str, bool)):
            hparams[f"algo.{k}"] = v
    if metrics:
        logger.record("hparams", HParam(hparams, metrics), exclude=_NOT_TB)
    if before_after_png is not None and Path(before_after_png).is_file():
        from PIL import Image as PILImage

        arr = np.asarray(PILImage.open(io.BytesIO(Path(before_after_png).read_bytes())).convert("RGB"))
        logger.record("eval/final_before_after", Image(arr, "HWC"), exclude=_NOT_TB)
    logger.dump(model.num_timesteps)
    if own:
        logger.close()
