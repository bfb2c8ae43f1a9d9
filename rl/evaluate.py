"""Held-out evaluation of an agent against the default parameters, random search and gradient ascent.

``evaluate_policies`` fills the ``eval.json`` of a run folder:

    {"default":         {"mean_score", "per_image", "reward_evals", "seconds", ...},
     "agent":           {...},
     "random_search":   {... as many reward evaluations per image as the agent uses},
     "gradient_ascent": {... per-image Adam on the unit-box params through ISP + reward},
     "amortisation":    {"score_gain_ratio": agent gain / GA gain, "compute_ratio": GA s / agent s}}

Scores are the reward model's own scores (``mos`` for ATTIQA), not the regularised reward.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

__all__ = ["evaluate_policies", "gradient_ascent", "random_search", "save_before_after_grid", "save_training_curve"]


def _entry(core, idx, unit: np.ndarray, evals: int, seconds: float, keep_images: bool = False) -> tuple[dict, np.ndarray | None]:
    """Scores the final params of a policy (this measurement is not counted in its compute)."""
    import isp

    res = core.evaluate(idx, unit, keep_images=keep_images)
    physical = isp.unit_to_params(torch.as_tensor(unit)).numpy()
    names = list(isp.PARAM_NAMES)
    per_image = [
        {
            "id": core.images.ids[i],
            "score": float(res.score[k]),
            "clipped_fraction": float(res.clipped[k]),
            "colour_cast": float(res.cast[k]),
            "params": {n: float(v) for n, v in zip(names, physical[k])},
        }
        for k, i in enumerate(idx)
    ]
    entry = {
        "mean_score": float(np.mean(res.score)),
        "mean_clipped_fraction": float(np.mean(res.clipped)),
        "mean_colour_cast": float(np.mean(res.cast)),
        "reward_evals": int(evals),
        "seconds": float(seconds),
        "seconds_per_image": float(seconds / max(len(idx), 1)),
        "per_image": per_image,
    }
    return entry, res.images


def random_search(
    core, idx, n_evals: int, seed: int = 0, *, reward_scale: float = 10.0, param_penalty: float = 0.0, clip_penalty: float = 0.0,
    cast_penalty: float = 0.0,
) -> np.ndarray:
    """Best of ``n_evals`` uniform draws in the unit box per image, by the environment's potential.

    With zero penalties that is simply the best reward-model score.
    """
    from envs.core import potential

    rng = np.random.default_rng(seed)
    B, P = len(idx), core.num_params
    best = np.zeros((B, P), np.float32)
    best_obj = np.full(B, -np.inf)
    neutral = core.neutral(idx)
    clipped_neutral = np.stack([r.clipped[0] for r in neutral])
    cast_neutral = np.stack([r.cast[0] for r in neutral])
    for _ in range(max(int(n_evals), 1)):
        cand = rng.uniform(-1.0, 1.0, size=(B, P)).astype(np.float32)
        res = core.evaluate(idx, cand)
        o = potential(res.normalized, res.clipped, clipped_neutral, cand,
                      reward_scale=reward_scale, clip_penalty=clip_penalty, param_penalty=param_penalty,
                      cast=res.cast, cast_neutral=cast_neutral, cast_penalty=cast_penalty)
        better = o > best_obj
        best[better], best_obj[better] = cand[better], o[better]
    return best


def gradient_ascent(
    core,
    idx,
    *,
    steps: int = 60,
    lr: float = 0.05,
    reward_scale: float = 10.0,
    param_penalty: float = 0.0,
    clip_penalty: float = 0.0,
    cast_penalty: float = 0.0,
    progress: Callable | None = None,
    trace: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Per-image Adam on the unit-box params through the ISP and the differentiable reward.

    Ascends ``reward_scale * normalized_score - cast_penalty * relu(cast - cast_neutral)
    - param_penalty * mean(u**2)`` with
    ``u = tanh(z)`` (stays in the box; ``z = 0`` is neutral). Images are optimised together in
    one batch, but each has its own parameters and the objective is a sum, so the gradients are
    per-image. Returns the best iterate seen per image by the environment's full potential
    (:func:`envs.core.potential`, whose clipped-pixel term has no useful gradient and so only
    enters this selection), i.e. the same objective the agent is rewarded by.

    ``trace(u, potential)``, when given, sees every iterate: ``(B, P)`` unit-box params and their
    ``(B,)`` potential (used to turn the optimisation path into demonstrations for the agent).
    """
    from envs.core import clipped_fraction, colour_cast, potential

    B, P = len(idx), core.num_params
    z = torch.zeros(B, P, device=core.device, requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr)
    best = np.zeros((B, P), np.float32)
    best_obj = np.full(B, -np.inf)
    raw = core.raw_batch(idx)  # the same images at every step
    neutral = core.neutral(idx)
    clipped_neutral = np.stack([r.clipped[0] for r in neutral])
    cast_neutral = torch.as_tensor(np.stack([r.cast[0] for r in neutral]), device=core.device)
    for _ in range(steps):
        u = torch.tanh(z)
        imgs = core.render(idx, u, batch=raw)
        out = core.reward(imgs)
        cast = colour_cast(imgs)
        obj = reward_scale * out.normalized - param_penalty * (u**2).mean(dim=1)
        if cast_penalty:
            obj = obj - cast_penalty * torch.clamp(cast - cast_neutral, min=0.0)
        core.reward_evals += B
        with torch.no_grad():
            o = potential(
                out.normalized.detach().float().cpu().numpy(),
                clipped_fraction(imgs.detach()).float().cpu().numpy(),
                clipped_neutral,
                u.detach().cpu().numpy(),
                reward_scale=reward_scale,
                clip_penalty=clip_penalty,
                param_penalty=param_penalty,
                cast=cast.detach().float().cpu().numpy(),
                cast_neutral=cast_neutral.cpu().numpy(),
                cast_penalty=cast_penalty,
            )
        u_np = u.detach().cpu().numpy()
        if trace is not None:
            trace(u_np, o)
        better = o > best_obj
        best[better], best_obj[better] = u_np[better], o[better]
        opt.zero_grad(set_to_none=True)
        (-obj.sum()).backward()
        opt.step()
        if progress is not None:
            progress(1)
    return best


def evaluate_policies(
    core,
    predictor,
    *,
    ga_steps: int = 60,
    ga_lr: float = 0.05,
    reward_scale: float = 10.0,
    param_penalty: float = 0.0,
    clip_penalty: float = 0.0,
    cast_penalty: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Runs the four policies on every image of ``core`` (the held-out split).

    Args:
        core: a ``TuningCore`` over the test images.
        predictor: an :class:`rl.inference.AgentParamsPredictor`.
        ga_steps, ga_lr: gradient ascent budget and step size.
        reward_scale, param_penalty, clip_penalty, cast_penalty: the environment's potential, which gradient
            ascent and random search maximise like the agent (see :func:`gradient_ascent`).
        seed: random search seed.
        progress: show a tqdm bar for gradient ascent.

    Returns:
        The ``eval.json`` dictionary and the renders ``{"default", "agent", "gradient_ascent"}``
        as ``(B, 3, H, W)`` arrays for the before/after grid.
    """
    from tqdm import tqdm

    idx = list(range(len(core.images)))
    B, P = len(idx), core.num_params
    results: dict = {}
    renders: dict[str, np.ndarray] = {}

    t0 = time.perf_counter()
    zero = np.zeros((B, P), np.float32)
    results["default"], renders["default"] = _entry(core, idx, zero, 0, time.perf_counter() - t0, keep_images=True)

    t0 = time.perf_counter()
    agent_unit, agent_evals = predictor.predict_unit(core, idx)
    results["agent"], renders["agent"] = _entry(core, idx, agent_unit, agent_evals, time.perf_counter() - t0, True)

    t0 = time.perf_counter()
    rs_unit = random_search(core, idx, agent_evals, seed, reward_scale=reward_scale, param_penalty=param_penalty, clip_penalty=clip_penalty,
                            cast_penalty=cast_penalty)
    results["random_search"], _ = _entry(core, idx, rs_unit, agent_evals, time.perf_counter() - t0)

    bar = tqdm(total=ga_steps, desc="gradient ascent", disable=not progress, leave=False)
    t0 = time.perf_counter()
    ga_unit = gradient_ascent(
        core, idx, steps=ga_steps, lr=ga_lr, reward_scale=reward_scale, param_penalty=param_penalty,
        clip_penalty=clip_penalty, cast_penalty=cast_penalty, progress=bar.update
    )
    ga_seconds = time.perf_counter() - t0
    bar.close()
    results["gradient_ascent"], renders["gradient_ascent"] = _entry(core, idx, ga_unit, ga_steps, ga_seconds, True)
    results["gradient_ascent"]["backward_passes"] = int(ga_steps)

    d = results["default"]["mean_score"]
    agent_gain = results["agent"]["mean_score"] - d
    ga_gain = results["gradient_ascent"]["mean_score"] - d
    agent_s = max(results["agent"]["seconds_per_image"], 1e-9)
    results["amortisation"] = {
        "agent_gain": agent_gain,
        "gradient_ascent_gain": ga_gain,
        "random_search_gain": results["random_search"]["mean_score"] - d,
        "score_gain_ratio": float(agent_gain / ga_gain) if abs(ga_gain) > 1e-12 else None,
        "compute_ratio": float(results["gradient_ascent"]["seconds_per_image"] / agent_s),
        "reward_eval_ratio": float(ga_steps / max(agent_evals, 1)),
        "n_images": B,
    }
    return results, renders


def _to_hwc(img: np.ndarray) -> np.ndarray:
    return np.clip(np.transpose(img, (1, 2, 0)), 0.0, 1.0)


def save_before_after_grid(
    path, renders: dict[str, np.ndarray], results: dict, ids: list[str], max_rows: int = 6, orientations: list[int] | None = None
) -> None:
    """PNG grid: one row per test image, columns default / agent / gradient ascent, scores in titles.

    Center crops (ids without ``/``) come first. ``orientations`` (LibRaw flips, one per entry)
    turn every render upright as the camera recorded it (``isp.apply_orientation``); the
    environment itself renders and scores the crops in the mosaic's stored orientation.
    """
    import io

    import isp

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rl.common import atomic_write_bytes

    cols = [c for c in ("default", "agent", "gradient_ascent") if c in renders]
    order = sorted(range(len(ids)), key=lambda i: ("/" in ids[i], i))[:max_rows]
    rows = len(order)
    fig, axes = plt.subplots(rows, len(cols), figsize=(3.2 * len(cols), 3.0 * rows), squeeze=False)
    for r, i in enumerate(order):
        for c, name in enumerate(cols):
            ax = axes[r][c]
            img = torch.as_tensor(renders[name][i])
            if orientations is not None:
                img = isp.apply_orientation(img, int(orientations[i]))
            ax.imshow(_to_hwc(img.numpy()))
            s = results[name]["per_image"][i]["score"]
            ax.set_title(f"{ids[i]} {name}: {s:.3f}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_training_curve(path, timesteps: list[int], returns: list[float], scores: list[float]) -> None:
    """PNG of the mean episode return (regularised score gain) and mean final score over training."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rl.common import atomic_write_bytes

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(timesteps, returns)
    ax[0].set_xlabel("timesteps")
    ax[0].set_ylabel("mean episode return")
    ax[0].set_title("training return (score gain, scaled)")
    ax[1].plot(timesteps, scores)
    ax[1].set_xlabel("timesteps")
    ax[1].set_ylabel("mean final score")
    ax[1].set_title("reward-model score at episode end")
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
