"""Agent benchmark: the main job's configuration over several seeds, measured by the judges.

    python experiments/bench_agent.py                          # 3 seeds on the embedded default
    python experiments/bench_agent.py --seeds 0 1 2 3 4 --data /data/fivek --attiqa-checkpoint koniq.pt
    python experiments/bench_agent.py --out runs/bench --train-args --total-timesteps 4096

Each seed runs ``rl/train_agent.py --reward attiqa --seed S --run-dir OUT/seed_S`` (plus
``--data``, ``--attiqa-checkpoint`` and any ``--train-args``) as its own process, exactly the main
job; a seed whose run folder already holds an ``eval.json`` is not trained again, so an
interrupted benchmark continues where it stopped. It then prints, per policy (default parameters,
agent, random search, gradient ascent), the mean ± standard deviation over seeds of each judge
(:mod:`envs.judges`) on the whole held-out images, overall and per capture condition, writes them
to ``OUT/bench.json`` and ``OUT/bench.html`` (the same table, with links to each seed's
``report.html``, written by the main job), and ends with the line

    agent_vs_default_dE_ratio=<mean over seeds of agent ΔE2000 / default ΔE2000 on the capture-error images>
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (one run each)")
    p.add_argument("--reward", default="attiqa", help="reward registry name")
    p.add_argument("--data", default=None, help="dataset root or RAW folder (default: the embedded sample set)")
    p.add_argument("--attiqa-checkpoint", default=None, help="ATTIQA checkpoint (default: the starter model)")
    p.add_argument("--out", default="runs/bench_agent", help="folder for the per-seed run folders and bench.json")
    p.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                   help="further arguments passed to rl/train_agent.py as they are (must come last)")
    return p.parse_args(argv)


def aggregate(evals: list[dict]) -> dict:
    """Mean and standard deviation over seeds of every judge, per policy, overall and per condition.

    Args:
        evals: one ``eval.json`` dictionary per seed.

    Returns:
        ``{"policies": {policy: {"all": {judge: {"mean", "sd", "n"}}, "per_condition": {condition: {...}}}},
        "agent_vs_default_dE_ratio": {"mean", "sd", "per_seed"}}``.
    """
    import numpy as np

    from envs.judges import JUDGES
    from rl.evaluate import POLICIES

    keys = ("score", "full_res_score", *JUDGES)

    def stats(values):
        vals = [float(v) for v in values if v is not None]
        if not vals:
            return None
        return {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, "n": len(vals)}

    out: dict = {"policies": {}}
    for p in POLICIES:
        runs = [e[p] for e in evals if "judges" in e.get(p, {})]
        if not runs:
            continue
        overall = {k: stats([r.get("mean_score") if k == "score" else r["judges"]["mean"].get(k) for r in runs]) for k in keys}
        per_condition = {
            cond: {k: stats([r["judges"]["per_condition"].get(cond, {}).get("mean", {}).get(k) for r in runs]) for k in keys[1:]}
            for cond in sorted({c for r in runs for c in r["judges"].get("per_condition", {})})
        }
        out["policies"][p] = {"all": overall, "per_condition": per_condition}
    ratios = [e.get("benchmark", {}).get("agent_vs_default_dE_ratio") for e in evals]
    out["agent_vs_default_dE_ratio"] = {**(stats(ratios) or {"mean": None, "sd": None, "n": 0}), "per_seed": ratios}
    ga = [e.get("benchmark", {}).get("gradient_ascent_vs_default_dE_ratio") for e in evals]
    out["gradient_ascent_vs_default_dE_ratio"] = {**(stats(ga) or {"mean": None, "sd": None, "n": 0}), "per_seed": ga}
    gains = [e.get("amortisation", {}).get("score_gain_ratio") for e in evals]
    out["score_gain_ratio"] = {**(stats(gains) or {"mean": None, "sd": None, "n": 0}), "per_seed": gains}
    return out


def format_table(agg: dict) -> str:
    """Plain-text table: one line per policy and condition, ``mean±sd`` per judge."""
    from envs.judges import JUDGES

    keys = ("score", "full_res_score", *JUDGES)
    short = {"score": "reward", "full_res_score": "reward_full", "delta_e2000": "dE2000", "psnr": "PSNR", "ssim": "SSIM",
             "cast_vs_expert": "cast_vs_exp", "clipped_fraction": "clipped", "colour_cast": "grey_cast"}
    lines = [f"{'policy':<16}{'condition':<12}" + "".join(f"{short[k]:>16}" for k in keys)]
    for p, groups in agg["policies"].items():
        per_condition = groups["per_condition"] if len(groups["per_condition"]) > 1 else {}
        for cond, vals in [("all", groups["all"]), *per_condition.items()]:
            cells = [f"{vals[k]['mean']:.3f}±{vals[k]['sd']:.3f}" if vals.get(k) else "-" for k in keys]
            lines.append(f"{p:<16}{cond:<12}" + "".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from rl.common import dump_json

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    evals = []
    for seed in args.seeds:
        run_dir = out / f"seed_{seed}"
        if not (run_dir / "eval.json").is_file():
            cmd = [sys.executable, str(REPO / "rl" / "train_agent.py"), "--reward", args.reward, "--seed", str(seed), "--run-dir", str(run_dir)]
            if (run_dir / "config.yaml").is_file():
                cmd.append("--resume")  # a seed stopped before its evaluation continues
            if args.data:
                cmd += ["--data", args.data]
            if args.attiqa_checkpoint:
                cmd += ["--attiqa-checkpoint", args.attiqa_checkpoint]
            cmd += list(args.train_args)
            print("bench:", " ".join(cmd), flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=REPO)
            if proc.returncode != 0:
                print(f"error: seed {seed} failed (exit {proc.returncode}); see {run_dir}", file=sys.stderr)
                return proc.returncode
            print(f"bench: seed {seed} done in {time.perf_counter() - t0:.0f} s", flush=True)
        else:
            print(f"bench: seed {seed}: reusing {run_dir / 'eval.json'}")
            if not (run_dir / "report.html").is_file():  # runs from before the report existed
                from rl.report import write_report

                write_report(run_dir)
        evals.append(json.loads((run_dir / "eval.json").read_text()))
    agg = aggregate(evals)
    agg["seeds"] = list(args.seeds)
    agg["runs"] = [str(out / f"seed_{s}") for s in args.seeds]
    dump_json(out / "bench.json", agg)
    from rl.report import write_bench_report

    print(f"wrote {write_bench_report(out, agg)} (links to each seed's report.html)")
    print(f"judges over {len(evals)} seeds (mean±sd over seeds; whole held-out images):")
    print(format_table(agg))
    r = agg["score_gain_ratio"]
    if r["mean"] is not None:
        print(f"amortisation score_gain_ratio={r['mean']:.3f}±{r['sd']:.3f}")
    g = agg["gradient_ascent_vs_default_dE_ratio"]
    if g["mean"] is not None:
        print(f"gradient_ascent_vs_default_dE_ratio={g['mean']:.4f}")
    ratio = agg["agent_vs_default_dE_ratio"]["mean"]
    print(f"wrote {out / 'bench.json'}")
    print(f"agent_vs_default_dE_ratio={'nan' if ratio is None else f'{ratio:.4f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
