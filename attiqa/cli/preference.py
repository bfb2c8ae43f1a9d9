"""``python -m attiqa preference``: pairwise preference accuracy against human choices.

The measure is in :mod:`attiqa.eval.preference`; this module is its command line.
"""
from __future__ import annotations

import argparse
import json
import sys

from attiqa.cli.common import stage_description
from attiqa.eval import preference as stage
from attiqa.eval.preference import preference_accuracy, read_pairs

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attiqa preference", description=stage_description(stage))
    p.add_argument("pairs", help="CSV with image_a, image_b, choice")
    p.add_argument("--checkpoint", default=None, help="quality checkpoint (default: the starter model)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    from attiqa.api import create_metric
    from attiqa.cli.score import starter_notice

    try:
        pairs = read_pairs(args.pairs)
        metric = create_metric(args.checkpoint, device=args.device)
        if metric.is_starter:
            starter_notice(metric)
        result = preference_accuracy(pairs, lambda paths: [r["mos"] for r in metric.score_paths(paths)])
    except (FileNotFoundError, ValueError) as exc:
        print(f"attiqa preference: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print(f"preference accuracy {result['accuracy']:.4f} on {result['n_pairs']} pairs "
              f"({result['agree']} agree, {result['ties']} ties)")
    return 0



if __name__ == "__main__":
    sys.exit(main())
