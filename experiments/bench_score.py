"""Scoring throughput of an ATTIQA quality model on CPU (or GPU).

    python experiments/bench_score.py [--checkpoint CKPT] [--threads 2] [--sizes 224x224 768x1024] [--batch 8]
        [--grad] [--clock wall|cpu]

Without ``--checkpoint`` it uses the starter model (built on first use). For each size it
times ``metric(images)`` under ``torch.inference_mode`` (no gradients) and, with ``--grad``,
a forward + backward to the input (what a gradient-based baseline pays). Prints a Markdown
table of images/s and writes it to ``--out`` as JSON when given.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch


def bench(metric, h: int, w: int, batch: int, repeats: int, grad: bool, device: str, clock: str = "wall") -> float:
    """Images per second of ``metric`` on random ``(batch, 3, h, w)`` inputs (median of ``repeats``).

    ``clock="cpu"`` divides by the process CPU time instead of the wall time: on a machine shared
    with other jobs this estimates what one dedicated core per thread would do (with one thread,
    images per CPU-second = images/s on one free core).
    """
    x = torch.rand(batch, 3, h, w, device=device)
    now = time.process_time if clock == "cpu" else time.perf_counter
    times = []
    for i in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = now()
        if grad:
            xi = x.clone().requires_grad_(True)
            metric.quality(xi).mos.sum().backward()
        else:
            with torch.inference_mode():
                metric.quality(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:  # the first run is a warm-up
            times.append(now() - t)
    times.sort()
    return batch / times[len(times) // 2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="quality checkpoint (default: the starter model)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--sizes", nargs="+", default=["224x224", "768x1024"], help="HxW sizes")
    p.add_argument("--batch", type=int, default=8, help="images per call")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per size (after one warm-up)")
    p.add_argument("--grad", action="store_true", help="also time forward + backward to the input")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                   help="wall: images per wall-clock second; cpu: per process CPU-second (a busy, shared machine)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from attiqa.api import create_metric

    metric = create_metric(args.checkpoint, device=args.device)
    if metric.is_starter:
        print(f"(using the starter model, not the paper's weights: {metric.checkpoint_path})", file=sys.stderr)
    rows = []
    for size in args.sizes:
        h, w = (int(v) for v in size.lower().split("x"))
        row = {"size": f"{h}x{w}", "batch": args.batch, "threads": args.threads, "device": args.device,
               "clock": args.clock,
               "images_per_s": bench(metric, h, w, args.batch, args.repeats, False, args.device, args.clock)}
        if args.grad:
            row["images_per_s_with_grad"] = bench(metric, h, w, args.batch, args.repeats, True, args.device, args.clock)
        rows.append(row)
    cpu = os.cpu_count()
    print(f"device {args.device}, os.cpu_count() = {cpu}, torch threads = {args.threads}, clock = {args.clock}")
    print("| size (HxW) | batch | threads | images/s | images/s fwd+bwd |")
    print("|---|---|---|---|---|")
    for r in rows:
        g = f"{r['images_per_s_with_grad']:.2f}" if "images_per_s_with_grad" in r else "–"
        print(f"| {r['size']} | {r['batch']} | {r['threads']} | {r['images_per_s']:.2f} | {g} |")
    if args.out:
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=2))
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
