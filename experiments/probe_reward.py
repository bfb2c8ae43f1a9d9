"""Reward probe: does a reward rank renderings of the held-out RAWs the way the judges do?

    python experiments/probe_reward.py                                  # the starter on the embedded default
    python experiments/probe_reward.py --attiqa-checkpoint my.pt --out probe.json
    python experiments/probe_reward.py --data /data/fivek --candidates 32 --ga-steps 60

An agent can only be as good as the optimum of its reward, so this checks a reward before any
agent is trained on it, in about two minutes on one CPU core. For every held-out RAW it renders
the environment's view (the main job's ``env`` settings from ``rl/hyperparams/sac.yml``: the whole
image at the view's scale, plus the 1:1 detail window where the env scores one) with
``--candidates`` parameter sets: the default (neutral) parameters, the oracle correction where
the dataset records the capture's error (the embedded sample set's ``conditions.csv``:
``isp.sample_data.correction``), and random perturbations around both. Each rendering is scored
by the reward and measured against the expert rendering by mean CIEDE2000 (the view put upright
and the expert resized to it). Reported per image and on average:

* ``srocc``: Spearman correlation between the reward and −ΔE2000 over the candidates (1: the
  reward orders the renderings exactly as the judge does);
* ``oracle_margin``: the oracle's normalised reward minus the default's (> 0 on a capture with an
  error: the reward prefers the fix);
* gradient ascent through the reward (:func:`rl.evaluate.gradient_ascent`, the env's penalties)
  from the default parameters: ``ga_vs_default_dE_ratio`` (mean ΔE2000 over the capture-error
  views, as in ``bench_agent.py``'s ratio but at the view's scale) and the ΔE2000 of the correct
  captures before and after (a reward whose optimum is right leaves them alone).

With ``--baselines`` it also measures where classical auto-exposure and grey-balance land
(:func:`statistics_baseline`: the exposure, then the white-balance temperature, that bring the
view's log mean luminance and log R/B to the average of the *training* experts): a no-reference
prior made of global tone and colour statistics. A reward that does no better than this has not
learned more about a scene than its histogram.

With the main job's ``env.auto_denoise`` / ``env.auto_exposure`` the candidates and the baselines
stay absolute unit-box parameters (``default`` is the camera's own rendering, the oracle its
recorded correction), rendered through the offsets from each RAW's base (``TuningCore.offset``);
gradient ascent starts from the base, as the agent does.

The JSON (``--out``, written atomically) holds every number; the last line printed is
``probe: srocc=... oracle_margin=... ga_vs_default_dE_ratio=...``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

__all__ = ["view_delta_e", "candidate_params", "probe", "scene_statistics", "statistics_baseline", "baselines", "main"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--reward", default="attiqa", help="reward registry name")
    p.add_argument("--attiqa-checkpoint", default=None, help="ATTIQA checkpoint (default: the starter model)")
    p.add_argument("--data", default=None, help="dataset root or RAW folder with experts (default: the embedded sample set)")
    p.add_argument("--candidates", type=int, default=24, help="renderings scored per held-out RAW (>= 3)")
    p.add_argument("--ga-steps", type=int, default=60, help="gradient-ascent iterations (0 = skip)")
    p.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of the main job's settings, e.g. env.param_penalty=4")
    p.add_argument("--ga-params", default=None, metavar="NAME,NAME",
                   help="gradient ascent moves only these ISP parameters (e.g. exposure,wb_temperature; default: all)")
    p.add_argument("--baselines", action="store_true",
                   help="also judge classical auto-exposure / grey balance to the training experts' statistics")
    p.add_argument("--seed", type=int, default=0, help="seed of the random candidates")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--out", default=None, help="JSON file for the results")
    return p.parse_args(argv)


def view_delta_e(img, orientation: int, expert: np.ndarray) -> float:
    """Mean CIEDE2000 of a rendered view against its expert rendering.

    Args:
        img: ``(3, H, W)`` sRGB view as the ISP renders it (not yet upright).
        orientation: the RAW's LibRaw flip (``isp.RawImage.orientation``).
        expert: ``(h, w, 3)`` upright expert sRGB in ``[0, 1]``; resized to the upright view
            (a whole-image view does not keep the aspect ratio, so neither does this).

    The view of a sideways RAW comes out sideways; the RAW's orientation puts it upright.
    """
    import torch

    import isp
    from envs import judges

    from skimage.transform import resize

    up = isp.apply_orientation(torch.as_tensor(np.asarray(img, dtype=np.float32)), int(orientation))
    ours = up.clamp(0, 1).permute(1, 2, 0).numpy()
    # Resized, never turned: the view of a portrait mosaic is resampled to the landscape view
    # shape before it is put upright, so its aspect need not match the expert's
    # (``envs.judges.align_to`` would turn the expert).
    ref = resize(np.asarray(expert, dtype=np.float64), ours.shape[:2], order=1, anti_aliasing=True, preserve_range=True)
    return judges.mean_delta_e2000(ours, np.clip(ref, 0.0, 1.0))


def candidate_params(n: int, num_params: int, oracle: np.ndarray | None, rng: np.random.Generator,
                     sd: float = 0.35, share: float = 0.4) -> np.ndarray:
    """``(n, P)`` unit-box parameter sets: the default, the oracle (when known), then perturbations.

    Each perturbation moves a random ``share`` of the parameters by Gaussian steps of ``sd`` (unit
    box, clipped to it), around the default and, alternately, around the oracle.
    """
    zero = np.zeros(num_params, np.float32)
    out = [zero] + ([oracle.astype(np.float32)] if oracle is not None else [])
    centres = [zero, oracle] if oracle is not None else [zero]
    j = 0
    while len(out) < n:
        step = rng.normal(0.0, sd, num_params) * (rng.random(num_params) < share)
        out.append(np.clip(centres[j % len(centres)] + step, -1.0, 1.0).astype(np.float32))
        j += 1
    return np.stack(out[:n])


def _oracle_unit(entry) -> np.ndarray | None:
    """The recorded correction of a sample-set capture (its ``conditions.csv`` row, which
    ``isp.fivek`` attaches as ``entry.meta``) in the unit box; ``None`` where none is recorded."""
    import isp
    from isp import sample_data

    row = getattr(entry, "meta", None) or {}
    if not row.get("ev_error"):
        return None
    physical = isp.params_from_dict(sample_data.correction(row))[None]
    return isp.params_to_unit(physical)[0].numpy()


def probe(core, experts: list[np.ndarray], *, n_candidates: int = 24, ga_steps: int = 60,
          penalties: dict | None = None, seed: int = 0, progress: bool = True,
          ga_free: list[int] | None = None) -> dict:
    """The probe on every view of ``core.images`` (see the module docstring).

    Args:
        core: an ``envs.core.TuningCore`` on the held-out views (one per RAW, its ``sources`` set;
            a source without a ``condition`` has no oracle and counts as a capture error).
        experts: per view, its upright expert sRGB ``(h, w, 3)``.
        n_candidates: renderings per view (default, oracle, perturbations).
        ga_steps: gradient-ascent iterations (0: skip).
        penalties: the potential's weights (``envs.config.Penalties.kwargs()``).
        seed: seed of the perturbations.
        ga_free: parameter indices gradient ascent may move (``None``: all).

    Returns:
        ``{"mean_srocc", "mean_oracle_margin", "per_image": [...], "gradient_ascent": {...} | None}``.
    """
    from scipy.stats import spearmanr
    from tqdm.auto import tqdm

    from rl.evaluate import CORRECT_CONDITIONS

    rng = np.random.default_rng(seed)
    images = core.images
    rows = []
    for k in tqdm(range(len(images)), desc="probe: candidates", disable=not progress, leave=False):
        entry = images.sources[k] if images.sources else None
        oracle = _oracle_unit(entry)
        cand = candidate_params(max(int(n_candidates), 3), core.num_params, oracle, rng)
        res = core.evaluate([k] * len(cand), core.offset([k] * len(cand), cand), keep_images=True)
        de = np.array([view_delta_e(im, images.raws[k].orientation, experts[k]) for im in res.images])
        row = {"id": images.ids[k], "condition": getattr(entry, "condition", None),
               "srocc": float(spearmanr(res.normalized, -de).statistic),
               "default_dE": float(de[0]), "default_reward": float(res.normalized[0])}
        if oracle is not None:
            row.update(oracle_dE=float(de[1]), oracle_reward=float(res.normalized[1]),
                       oracle_margin=float(res.normalized[1] - res.normalized[0]))
        row["best_by_reward_dE"] = float(de[int(np.argmax(res.normalized))])
        rows.append(row)
    finite = [r["srocc"] for r in rows if np.isfinite(r["srocc"])]
    margins = [r["oracle_margin"] for r in rows if "oracle_margin" in r and r["condition"] not in CORRECT_CONDITIONS]
    out = {"mean_srocc": float(np.mean(finite)) if finite else None,
           "mean_oracle_margin": float(np.mean(margins)) if margins else None,
           "per_image": rows, "gradient_ascent": None}
    if ga_steps > 0:
        from rl.evaluate import gradient_ascent

        idx = list(range(len(images)))
        t0 = time.perf_counter()
        unit = gradient_ascent(core, idx, steps=int(ga_steps), free=ga_free, **(penalties or {}))
        seconds = time.perf_counter() - t0
        ga = core.evaluate(idx, unit, keep_images=True)
        for k, r in enumerate(rows):
            r["ga_dE"] = view_delta_e(ga.images[k], images.raws[k].orientation, experts[k])
            r["ga_reward"] = float(ga.normalized[k])
        ratio, correct_default, correct_ga = _against_default(rows, "ga_dE")
        out["gradient_ascent"] = {
            "steps": int(ga_steps), "seconds": seconds, "free": None if ga_free is None else list(ga_free),
            "ga_vs_default_dE_ratio": ratio, "correct_default_dE": correct_default, "correct_ga_dE": correct_ga,
        }
    return out


def _against_default(rows: list[dict], key: str) -> tuple[float | None, float | None, float | None]:
    """``(mean rows[key] / mean default_dE over the capture-error rows, mean default_dE and mean
    rows[key] over the correct captures)``; ``None`` where a group is empty (or its default is 0)."""
    from rl.evaluate import CORRECT_CONDITIONS

    error = [r for r in rows if r["condition"] not in CORRECT_CONDITIONS]
    correct = [r for r in rows if r["condition"] in CORRECT_CONDITIONS]
    mean = lambda rs, k: float(np.mean([r[k] for r in rs])) if rs else None  # noqa: E731
    den = mean(error, "default_dE")
    return (mean(error, key) / den if den else None), mean(correct, "default_dE"), mean(correct, key)


def scene_statistics(img) -> np.ndarray:
    """``[log mean linear luminance, log(R/B) of the mean linear colour]`` of an sRGB image.

    Args:
        img: ``(3, H, W)`` (as the ISP renders) or ``(H, W, 3)`` sRGB in ``[0, 1]``.
    """
    import torch

    from attiqa.utils.color import LUMA_WEIGHTS, srgb_to_linear

    x = torch.as_tensor(np.asarray(img, dtype=np.float64))
    if x.shape[0] != 3:
        x = x.permute(2, 0, 1)
    mean = srgb_to_linear(x).flatten(1).mean(dim=1).numpy() + 1e-6
    return np.array([np.log(float(np.dot(LUMA_WEIGHTS, mean))), np.log(mean[0] / mean[2])])


def statistics_baseline(core, k: int, target: np.ndarray, steps: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """Classical auto-exposure, then grey balance, of view ``k`` towards ``target`` statistics.

    Searches ``steps`` exposures over the unit box (white balance at the default) for the view
    whose log mean luminance is nearest ``target[0]``, then, at that exposure, ``steps``
    white-balance temperatures for the log R/B nearest ``target[1]``; every other parameter stays
    at its default. Returns the unit-box parameters ``(auto-exposure, auto-exposure + balance)``.
    """
    import isp

    grid = np.linspace(-1.0, 1.0, int(steps), dtype=np.float32)
    i_exp, i_wb = isp.PARAM_NAMES.index("exposure"), isp.PARAM_NAMES.index("wb_temperature")

    def nearest(unit: np.ndarray, j: int) -> np.ndarray:
        res = core.evaluate([k] * len(unit), core.offset([k] * len(unit), unit), keep_images=True)
        return unit[int(np.argmin([abs(scene_statistics(im)[j] - target[j]) for im in res.images]))]

    sweep = np.zeros((len(grid), core.num_params), np.float32)
    sweep[:, i_exp] = grid
    ae = nearest(sweep, 0)
    sweep = np.repeat(ae[None], len(grid), axis=0)
    sweep[:, i_wb] = grid
    return ae, nearest(sweep, 1)


def baselines(core, experts: list[np.ndarray], target: np.ndarray, conditions: list, steps: int = 21) -> dict:
    """:func:`statistics_baseline` on every view of ``core``, judged like :func:`probe`'s gradient ascent.

    Returns ``{"target", "per_image": [{"ae_dE", "ae_awb_dE", ...}], "ae_vs_default_dE_ratio",
    "ae_awb_vs_default_dE_ratio", "correct_default_dE", "correct_ae_dE", "correct_ae_awb_dE"}``
    (ratios over the capture-error views, as ``ga_vs_default_dE_ratio``).
    """
    images = core.images
    rows = []
    for k in range(len(images)):
        ae, awb = statistics_baseline(core, k, target, steps)
        res = core.evaluate([k] * 3, core.offset([k] * 3, np.stack([np.zeros_like(ae), ae, awb])), keep_images=True)
        de = [view_delta_e(im, images.raws[k].orientation, experts[k]) for im in res.images]
        rows.append({"id": images.ids[k], "condition": conditions[k], "default_dE": de[0], "ae_dE": de[1],
                     "ae_awb_dE": de[2], "ae_unit": ae.tolist(), "ae_awb_unit": awb.tolist()})
    out = {"target": [float(v) for v in target], "per_image": rows}
    for key in ("ae", "ae_awb"):
        ratio, out["correct_default_dE"], out[f"correct_{key}_dE"] = _against_default(rows, f"{key}_dE")
        out[f"{key}_vs_default_dE_ratio"] = ratio
    return out


def _expert_statistics(root) -> np.ndarray:
    """Mean :func:`scene_statistics` of the training split's expert renderings (a prior from training data only)."""
    from envs import judges
    from isp import datasets

    stats = [scene_statistics(judges.load_expert_srgb(e.expert_c))
             for e in datasets.load_split(root)["train"] if getattr(e, "expert_c", None)]
    if not stats:
        raise ValueError("no training RAW with an expert rendering to take the statistics from")
    return np.mean(stats, axis=0)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from envs import judges
    from envs.config import EnvConfig
    from envs.core import TuningCore, load_image_set
    from envs.rewards import create_reward
    from isp import sample_data
    from rl.common import dump_json, load_hyperparams, merge_config, parse_overrides
    from rlisp_common.exit_codes import describe

    ga_free = None
    if args.ga_params:
        import isp

        names = [n.strip() for n in args.ga_params.split(",") if n.strip()]
        unknown = [n for n in names if n not in isp.PARAM_NAMES]
        if unknown:
            print(f"error: --ga-params: unknown parameter(s) {', '.join(unknown)}; choose from {', '.join(isp.PARAM_NAMES)}",
                  file=sys.stderr)
            return 2
        ga_free = [isp.PARAM_NAMES.index(n) for n in names]
    torch.set_num_threads(max(1, int(args.threads)))
    torch.manual_seed(args.seed)
    config = merge_config(load_hyperparams("sac", args.reward), parse_overrides(args.hyperparams))
    env_config = EnvConfig.from_dict(config["env"])
    root = Path(args.data) if args.data else sample_data.ensure_sample_set()
    try:
        images = load_image_set(root, "test", **{**env_config.image_kwargs(), "crop_mode": "whole", "flip": False})
    except (OSError, ValueError) as exc:
        code, line = describe(exc, root)
        print(f"error: {root}: {line}", file=sys.stderr)
        return code
    experts, keep = [], []
    for k, e in enumerate(images.sources):
        if not getattr(e, "expert_c", None):
            print(f"[probe] skipped {e.dng}: no expert rendering to judge against", file=sys.stderr)
            continue
        try:
            experts.append(judges.load_expert_srgb(e.expert_c))
            keep.append(k)
        except (OSError, ValueError) as exc:
            print(f"error: {e.expert_c}: {describe(exc, e.expert_c)[1]}", file=sys.stderr)
    if not keep:
        print(f"error: {root}: no held-out RAW with a readable expert rendering", file=sys.stderr)
        return 3
    if len(keep) < len(images):
        pick = lambda xs: None if xs is None else [xs[k] for k in keep]  # noqa: E731
        images = dataclasses.replace(images, raws=pick(images.raws), ids=pick(images.ids), flips=pick(images.flips),
                                     sources=pick(images.sources), details=pick(images.details))
    reward = create_reward(args.reward, args.attiqa_checkpoint, "cpu")
    core = TuningCore(images, reward, **env_config.core_kwargs(), device="cpu")
    t0 = time.perf_counter()
    result = probe(core, experts, n_candidates=args.candidates, ga_steps=args.ga_steps,
                   penalties=env_config.penalties.kwargs(), seed=args.seed, ga_free=ga_free)
    result.update(reward=reward.description, checkpoint=getattr(reward, "checkpoint", None), data=str(root),
                  seconds=time.perf_counter() - t0, env=env_config.to_dict())
    if args.baselines:
        try:
            target = _expert_statistics(root)
        except (OSError, ValueError) as exc:
            print(f"error: {root}: {describe(exc, root)[1]}", file=sys.stderr)
            return 3
        result["baselines"] = baselines(core, experts, target,
                                        [getattr(e, "condition", None) for e in images.sources])
    for r in result["per_image"]:
        print(f"{r['id']:<12}{r['condition'] or '-':<10} srocc {r['srocc']:+.2f}  dE default {r['default_dE']:5.2f}"
              + (f"  oracle {r['oracle_dE']:5.2f} (margin {r['oracle_margin']:+.3f})" if "oracle_dE" in r else "")
              + (f"  GA {r['ga_dE']:5.2f}" if "ga_dE" in r else ""))
    if args.out:
        dump_json(args.out, result)
    ga = result["gradient_ascent"] or {}
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    if args.baselines:
        b = result["baselines"]
        print(f"baselines (training experts' statistics): auto-exposure ratio {fmt(b['ae_vs_default_dE_ratio'])}, "
              f"+ grey balance {fmt(b['ae_awb_vs_default_dE_ratio'])}; correct dE {fmt(b['correct_default_dE'])} -> "
              f"{fmt(b['correct_ae_dE'])} / {fmt(b['correct_ae_awb_dE'])}")
    print(f"probe: srocc={fmt(result['mean_srocc'])} oracle_margin={fmt(result['mean_oracle_margin'])} "
          f"ga_vs_default_dE_ratio={fmt(ga.get('ga_vs_default_dE_ratio'))} correct_dE {fmt(ga.get('correct_default_dE'))}"
          f" -> {fmt(ga.get('correct_ga_dE'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
