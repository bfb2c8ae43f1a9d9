"""``python -m attiqa preference``: pairwise preference accuracy against human choices.

The measure is in :mod:`attiqa.eval.preference`; this module is its command line.

Bad inputs (``rlisp_common.exit_codes``): a missing, unreadable or invalid pairs CSV or
``--checkpoint`` is one line ``attiqa preference: error: <file>: <cause>`` and exit code 3
(missing), 4 (permission denied), 5 (invalid) or 6 (checkpoint with pickled objects). An image
of the CSV that cannot be scored is one such line; the accuracy is then taken over the pairs whose
two images were scored, and the exit code is the first failure's.
"""
from __future__ import annotations

import argparse
import json
import sys

from attiqa.cli.common import EXIT_CODES_HELP, collected, on_file, reports_errors, stage_description
from attiqa.eval import preference as stage
from attiqa.eval.preference import preference_accuracy, read_pairs

__all__ = ["main"]


@reports_errors("attiqa preference")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attiqa preference", description=stage_description(stage),
                                epilog=EXIT_CODES_HELP)
    p.add_argument("pairs", help="CSV with image_a, image_b, choice")
    p.add_argument("--checkpoint", default=None, help="quality checkpoint (default: the starter model)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    from attiqa.api import create_metric
    from attiqa.cli.score import starter_notice
    from rlisp_common.exit_codes import Failures, InputError

    with on_file(args.pairs):
        pairs = read_pairs(args.pairs)
    with on_file(args.checkpoint):
        metric = create_metric(args.checkpoint, device=args.device)
    if metric.is_starter:
        starter_notice(metric)
    failures = Failures(prefix="attiqa preference: error")
    scores = {}
    for path in sorted({q for a, b, _ in pairs for q in (a, b)}):  # a bad image is one line, the others are scored
        with collected(failures, path):
            scores[path] = metric.score_paths([path])[0]["mos"]
    pairs = [(a, b, w) for a, b, w in pairs if a in scores and b in scores]
    if not pairs:
        raise InputError("no pair has two images that could be scored", failures.code, path=args.pairs)
    result = preference_accuracy(pairs, scores)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"preference accuracy {result['accuracy']:.4f} on {result['n_pairs']} pairs "
              f"({result['agree']} agree, {result['ties']} ties)")
    return failures.code


if __name__ == "__main__":
    sys.exit(main())
