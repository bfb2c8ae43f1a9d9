"""Held-out evaluation of an agent against the default parameters, random search and gradient ascent.

``evaluate_policies`` fills the ``eval.json`` of a run folder:

    {"default":         {"mean_score", "per_image", "reward_evals", "seconds", ...},
     "base":            {... the entries' bases, where the others start (env.auto_denoise / auto_exposure)},
     "agent":           {...},
     "random_search":   {... as many reward evaluations per image as the agent uses},
     "gradient_ascent": {... per-image Adam on the unit-box params through ISP + reward},
     "amortisation":    {"score_gain_ratio": agent gain / GA gain, "compute_ratio": GA s / agent s},
     "benchmark":       {"agent_vs_default_dE_ratio", "judge_max_side", ...}}

``mean_score`` and ``per_image`` are the reward model's own scores (``mos`` for ATTIQA, not the
regularised reward) on the environment's view of each held-out image, the objective the agent was
trained on. :func:`judge_policies` adds a ``judges`` section to every policy: each policy's
parameters applied to the *whole* held-out RAW at full resolution (bounded by ``judge_max_side``)
and measured by the reward model and by judges it never trained on (:mod:`envs.judges`): CIEDE2000,
PSNR, SSIM and colour cast against the expert rendering, clipped-pixel fraction and grey-world
cast; per image, per capture condition and in summary.
"""
from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["POLICIES", "evaluate_policies", "gradient_ascent", "judge_policies", "random_search", "save_before_after_grid",
           "save_training_curve", "format_judges", "CORRECT_CONDITIONS"]

#: The policies of an evaluation, in reporting order.
POLICIES = ("default", "agent", "random_search", "gradient_ascent")
#: Capture conditions without a capture error (the others are what an ISP tuner should fix).
CORRECT_CONDITIONS = ("correct",)


def _entry(core, idx, unit: np.ndarray, evals: int, seconds: float) -> dict:
    """Scores the final params of a policy (this measurement is not counted in its compute)."""
    import isp

    res = core.evaluate(idx, unit)
    physical = isp.unit_to_params(torch.as_tensor(core.absolute(idx, unit))).numpy()
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
    return entry


def random_search(
    core, idx, n_evals: int, seed: int = 0, *, reward_scale: float = 10.0, param_penalty: float = 0.0, clip_penalty: float = 0.0,
    cast_penalty: float = 0.0, detail_penalty: float | None = None,
) -> np.ndarray:
    """Best of ``n_evals`` uniform draws in the unit box per image, by the environment's potential.

    With zero penalties that is simply the best reward-model score. Returns offsets from the
    entries' bases, as the agent's and gradient ascent's are (``core.absolute`` renders them).
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
        cand = core.offset(idx, rng.uniform(-1.0, 1.0, size=(B, P)).astype(np.float32))
        res = core.evaluate(idx, cand)
        o = potential(res.normalized, res.clipped, clipped_neutral, cand,
                      reward_scale=reward_scale, clip_penalty=clip_penalty, param_penalty=param_penalty,
                      cast=res.cast, cast_neutral=cast_neutral, cast_penalty=cast_penalty, detail_penalty=detail_penalty)
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
    detail_penalty: float | None = None,
    progress: Callable | None = None,
    trace: Callable[[np.ndarray, np.ndarray], None] | None = None,
    free: Sequence[int] | None = None,
) -> np.ndarray:
    """Per-image Adam on the unit-box params through the ISP and the differentiable reward.

    Ascends ``reward_scale * normalized_score - cast_penalty * relu(cast - cast_neutral)
    - param_penalty * mean(u**2)`` with
    ``u = tanh(z)`` (stays in the box; ``z = 0`` is neutral; ``detail_penalty``, when set, weights
    the detail parameters' share of the last term, :func:`envs.core.trust_region`). Images are optimised together in
    one batch, but each has its own parameters and the objective is a sum, so the gradients are
    per-image. Returns the best iterate seen per image by the environment's full potential
    (:func:`envs.core.potential`, whose clipped-pixel term has no useful gradient and so only
    enters this selection), i.e. the same objective the agent is rewarded by.

    ``trace(u, potential)``, when given, sees every iterate: ``(B, P)`` unit-box params and their
    ``(B,)`` potential (used to turn the optimisation path into demonstrations for the agent).
    ``free``, when given, lists the parameter indices that may move; the others stay at the
    entries' bases (offset 0). Returns offsets from the bases (``core.absolute`` renders them).
    """
    from envs.core import clipped_fraction, colour_cast, potential, trust_region

    B, P = len(idx), core.num_params
    z = torch.zeros(B, P, device=core.device, requires_grad=True)
    mask = torch.ones(P, device=core.device)
    if free is not None:
        mask = torch.zeros(P, device=core.device)
        mask[list(free)] = 1.0
    opt = torch.optim.Adam([z], lr=lr)
    best = np.zeros((B, P), np.float32)
    best_obj = np.full(B, -np.inf)
    raw, detail = core.raw_batch(idx), core.detail_batch(idx)  # the same images at every step
    neutral = core.neutral(idx)
    clipped_neutral = np.stack([r.clipped[0] for r in neutral])
    cast_neutral = torch.as_tensor(np.stack([r.cast[0] for r in neutral]), device=core.device)
    for _ in range(steps):
        u = torch.tanh(z) * mask
        out, imgs = core.score(idx, u, batch=raw, detail_batch=detail)
        cast = colour_cast(imgs)
        obj = reward_scale * out.normalized - trust_region(u, param_penalty, detail_penalty)
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
                detail_penalty=detail_penalty,
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
    detail_penalty: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Runs the four policies on every image of ``core`` (the held-out split).

    Args:
        core: a ``TuningCore`` over the test images.
        predictor: an :class:`rl.inference.AgentParamsPredictor`.
        ga_steps, ga_lr: gradient ascent budget and step size.
        reward_scale, param_penalty, clip_penalty, cast_penalty, detail_penalty: the environment's potential, which gradient
            ascent and random search maximise like the agent (see :func:`gradient_ascent`).
        seed: random search seed.
        progress: show a tqdm bar for gradient ascent.

    Returns:
        The ``eval.json`` dictionary and the unit-box parameters each policy chose, as rendered
        (the entries' bases plus the policies' offsets), ``{policy: (B, P)}`` (what
        :func:`judge_policies` applies at full resolution). ``default`` is the camera's neutral
        rendering whatever the bases (``env.auto_denoise``, ``env.auto_exposure``).
    """
    from tqdm import tqdm

    idx = list(range(len(core.images)))
    B, P = len(idx), core.num_params
    results: dict = {}

    t0 = time.perf_counter()
    zero = core.offset(idx, np.zeros((B, P), np.float32))  # the camera's neutral parameters
    results["default"] = _entry(core, idx, zero, 0, time.perf_counter() - t0)
    if core.images.bases is not None:  # where every policy starts (env.auto_denoise / auto_exposure): scored, not judged
        results["base"] = _entry(core, idx, np.zeros((B, P), np.float32), 0, 0.0)

    t0 = time.perf_counter()
    agent_unit, agent_evals = predictor.predict_unit(core, idx)
    results["agent"] = _entry(core, idx, agent_unit, agent_evals, time.perf_counter() - t0)

    t0 = time.perf_counter()
    rs_unit = random_search(core, idx, agent_evals, seed, reward_scale=reward_scale, param_penalty=param_penalty, clip_penalty=clip_penalty,
                            cast_penalty=cast_penalty, detail_penalty=detail_penalty)
    results["random_search"] = _entry(core, idx, rs_unit, agent_evals, time.perf_counter() - t0)

    bar = tqdm(total=ga_steps, desc="gradient ascent", disable=not progress, leave=False)
    t0 = time.perf_counter()
    ga_unit = gradient_ascent(
        core, idx, steps=ga_steps, lr=ga_lr, reward_scale=reward_scale, param_penalty=param_penalty,
        clip_penalty=clip_penalty, cast_penalty=cast_penalty, detail_penalty=detail_penalty, progress=bar.update
    )
    ga_seconds = time.perf_counter() - t0
    bar.close()
    results["gradient_ascent"] = _entry(core, idx, ga_unit, ga_steps, ga_seconds)
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
    units = {"default": zero, "agent": agent_unit, "random_search": rs_unit, "gradient_ascent": ga_unit}
    return results, {p: core.absolute(idx, u) for p, u in units.items()}


def judge_policies(
    results: dict,
    entries: list,
    units: dict[str, np.ndarray],
    reward,
    *,
    device="cpu",
    max_side: int | None = 2048,
    thumb_side: int = 320,
    progress: bool = True,
    workers: int | None = None,
) -> dict[str, list[np.ndarray]]:
    """Applies each policy's parameters to the whole held-out RAWs and adds the judges to ``results``.

    Every RAW is decoded once (at most ``max_side`` pixels on its longer side, cached by
    ``isp.fivek.cached_preview``), rendered upright with each policy's parameters, scored by the
    reward model at that resolution and measured by :func:`envs.judges.judge` against its expert
    rendering when the entry has one. Adds to ``results[policy]`` a ``judges`` section
    (``{"mean", "n", "per_condition", "per_image"}``) and to ``results`` a ``benchmark`` section
    with ``agent_vs_default_dE_ratio``: the agent's mean ΔE2000 over the images with a capture
    error divided by the default parameters' (``None`` without experts or such images).

    Args:
        results: the dictionary of :func:`evaluate_policies`, updated in place.
        entries: one dataset entry per row of ``units`` (``.id``, ``.dng``, ``.expert_c`` and,
            where known, ``.scene`` and ``.condition``).
        units: ``{policy: (N, P)}`` unit-box parameters.
        reward: the reward model (``envs.rewards.RewardModel``).
        device: torch device for rendering and scoring.
        max_side: bound on the judged resolution (``None``: the RAW's full size).
        thumb_side: longer side of the renders returned for the before/after grid.
        progress: show a tqdm bar.
        workers: threads that compute the judges while the next renderings are made (default:
            the CPU count, at most 4). The judges are NumPy, SciPy and colour-science code that
            releases the GIL, one image per thread, so the numbers do not depend on it; 0 judges
            in the calling thread.

    Returns:
        ``{policy: [thumbnail (3, h, w), ...], "expert": [... or None]}`` for the grid.
    """
    import torch.nn.functional as F
    from tqdm import tqdm

    import isp
    from envs import judges
    from isp import fivek

    names = [p for p in POLICIES if p in units]
    rows: dict[str, list[dict]] = {p: [] for p in names}
    thumbs: dict[str, list] = {p: [] for p in (*names, "expert")}

    def small(img: torch.Tensor) -> np.ndarray:
        h, w = img.shape[-2:]
        s = min(1.0, thumb_side / max(h, w))
        if s < 1.0:
            img = F.interpolate(img[None], size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")[0]
        return img.clamp(0, 1).cpu().numpy()

    workers = min(4, os.cpu_count() or 1) if workers is None else int(workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") if workers > 0 else None
    # (row, judges future) in submission order, bounded so that only a few renderings wait in memory
    pending: deque[tuple[dict, Future]] = deque()
    try:
        for i, e in enumerate(tqdm(entries, desc="judging at full resolution", disable=not progress, leave=False)):
            raw = fivek.cached_preview(e.dng, max_side)
            expert = judges.load_expert_srgb(e.expert_c) if getattr(e, "expert_c", None) else None
            thumbs["expert"].append(None if expert is None else small(torch.as_tensor(expert.transpose(2, 0, 1).copy(), dtype=torch.float32)))
            for p in names:
                params = isp.unit_to_params(torch.as_tensor(units[p][i : i + 1], dtype=torch.float32))[0]
                img = isp.render(raw, params, device=device)
                if expert is not None and expert.shape[:2] != tuple(img.shape[-2:]):
                    # aligned (turned, resized) once per RAW, to its first policy's rendering: every
                    # policy renders the same size, so the others' judges reuse it
                    expert = judges.align_to(expert, img)
                with torch.no_grad():
                    score = float(reward(img[None].to(device)).score[0])
                row = {"id": e.id, "scene": getattr(e, "scene", None) or e.id, "condition": getattr(e, "condition", None) or "all",
                       "full_res_score": score, "height": int(img.shape[-2]), "width": int(img.shape[-1]),
                       "params": isp.params_to_dict(params)}
                rows[p].append(row)
                thumbs[p].append(small(img))
                if pool is None:
                    row.update(judges.judge(img, expert))
                    continue
                pending.append((row, pool.submit(judges.judge, img.detach().cpu(), expert)))
                while len(pending) > 2 * workers:
                    done_row, fut = pending.popleft()
                    done_row.update(fut.result())
        while pending:
            done_row, fut = pending.popleft()
            done_row.update(fut.result())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    for p in names:
        summary = judges.summarize(rows[p])
        summary["per_image"] = rows[p]
        results[p]["judges"] = summary
    results["benchmark"] = {
        "judge_max_side": max_side,
        "n_images": len(entries),
        "capture_error_images": sum(r["condition"] not in CORRECT_CONDITIONS for r in rows.get("default", [])),
        "agent_vs_default_dE_ratio": _de_ratio(rows.get("agent"), rows.get("default")),
        "gradient_ascent_vs_default_dE_ratio": _de_ratio(rows.get("gradient_ascent"), rows.get("default")),
    }
    return thumbs


def _de_ratio(policy_rows, default_rows) -> float | None:
    """Mean ΔE2000 of a policy over the capture-error images / the default's on the same images."""
    if not policy_rows or not default_rows:
        return None
    pairs = [(a.get("delta_e2000"), d.get("delta_e2000")) for a, d in zip(policy_rows, default_rows)
             if d["condition"] not in CORRECT_CONDITIONS]
    pairs = [(a, d) for a, d in pairs if a is not None and d is not None]
    if not pairs:
        return None
    den = float(np.mean([d for _, d in pairs]))
    return float(np.mean([a for a, _ in pairs]) / den) if den > 0 else None


def format_judges(results: dict) -> str:
    """A plain-text table of the judges per policy (overall and per capture condition)."""
    from envs.judges import JUDGES

    names = [p for p in POLICIES if "judges" in results.get(p, {})]
    if not names:
        return "(no judges)"
    cols = ("score", "full_res_score", *JUDGES)
    short = {"score": "reward", "full_res_score": "reward_full", "delta_e2000": "dE2000", "psnr": "PSNR", "ssim": "SSIM",
             "cast_vs_expert": "cast_vs_exp", "clipped_fraction": "clipped", "colour_cast": "grey_cast"}
    lines = [f"{'policy':<16}{'condition':<12}" + "".join(f"{short[c]:>12}" for c in cols)]
    conditions = sorted(results[names[0]]["judges"].get("per_condition", {}))
    for p in names:
        j = results[p]["judges"]
        groups = [("all", {**j["mean"], "score": results[p].get("mean_score")})]
        if len(conditions) > 1:
            groups += [(c, j["per_condition"][c]["mean"]) for c in conditions]
        for cond, m in groups:
            lines.append(f"{p:<16}{cond:<12}" + "".join(f"{m[c]:>12.4f}" if m.get(c) is not None else f"{'-':>12}" for c in cols))
    b = results.get("benchmark", {})
    if b.get("agent_vs_default_dE_ratio") is not None:
        lines.append(f"agent_vs_default_dE_ratio={b['agent_vs_default_dE_ratio']:.4f} "
                     f"(mean dE2000 on {b['capture_error_images']} capture-error images, agent / default)")
    return "\n".join(lines)


def _to_hwc(img: np.ndarray) -> np.ndarray:
    return np.clip(np.transpose(img, (1, 2, 0)), 0.0, 1.0)


def grid_rows(conditions: list[str], max_rows: int = 8) -> list[int]:
    """Which images a grid shows: one per capture condition first (in order of appearance), then the rest."""
    first: dict[str, int] = {}
    for i, c in enumerate(conditions):
        first.setdefault(c, i)
    order = list(first.values()) + [i for i in range(len(conditions)) if i not in first.values()]
    return order[:max_rows]


def save_before_after_grid(path, thumbs: dict[str, list], results: dict, max_rows: int = 8) -> None:
    """PNG grid of whole held-out images, upright: default | agent | gradient ascent | expert.

    One row per image (one per capture condition first); each title gives the reward model's
    full-resolution score and, where the expert exists, the ΔE2000 to it and the clipped fraction.

    Args:
        path: output PNG (written atomically).
        thumbs: from :func:`judge_policies`.
        results: the evaluation with its ``judges`` sections.
        max_rows: most rows shown.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rl.common import atomic_write_bytes

    cols = [c for c in ("default", "agent", "gradient_ascent") if c in thumbs]
    has_expert = any(t is not None for t in thumbs.get("expert", []))
    if has_expert:
        cols.append("expert")
    rows_meta = results[cols[0]]["judges"]["per_image"]
    order = grid_rows([r["condition"] for r in rows_meta], max_rows)
    fig, axes = plt.subplots(len(order), len(cols), figsize=(3.0 * len(cols), 2.6 * len(order)), squeeze=False)
    for r, i in enumerate(order):
        for c, name in enumerate(cols):
            ax = axes[r][c]
            ax.axis("off")
            img = thumbs[name][i]
            if img is None:
                continue
            ax.imshow(_to_hwc(img))
            meta = rows_meta[i]
            if name == "expert":
                title = f"{meta['id']} expert"
            else:
                j = results[name]["judges"]["per_image"][i]
                de = f" dE {j['delta_e2000']:.1f}" if j.get("delta_e2000") is not None else ""
                title = f"{name} {j['full_res_score']:.3f}{de} clip {j['clipped_fraction']:.2f}"
            if c == 0:
                title = f"{meta['id']} [{meta['condition']}]\n" + title
            ax.set_title(title, fontsize=7)
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
