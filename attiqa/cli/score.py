"""``python -m attiqa score PATH... [--json] [--checkpoint CKPT]``: MOS and attributes of images.

Files are scored as given, folders are searched recursively for images. Without
``--checkpoint`` the starter model is used (built on first use, a few minutes on a CPU); a
line on stderr says so, since it is not the paper's weights.
"""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main", "starter_notice"]


def starter_notice(metric) -> None:
    """Tells on stderr that the starter model is in use."""
    print(f"attiqa: using the STARTER model ({metric.checkpoint_path}): "
          f"{metric.description or 'starter model, not the paper' + chr(39) + 's weights'}. "
          "Pass --checkpoint for a model fine-tuned on a MOS dataset.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attiqa score", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--checkpoint", default=None, help="quality checkpoint (default: the starter model)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per image: path, mos and the five attribute names")
    p.add_argument("--max-side", type=int, default=None, help="downscale images whose longer side is larger")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = p.parse_args(argv)

    from attiqa.api import create_metric, expand_image_paths

    try:
        paths = expand_image_paths(args.paths)
        metric = create_metric(args.checkpoint, device=args.device)
    except (FileNotFoundError, ValueError) as exc:
        print(f"attiqa score: error: {exc}", file=sys.stderr)
        return 1
    if metric.is_starter:
        starter_notice(metric)
    failed = 0
    lo, hi = metric.score_range
    if not args.json:
        print(f"# MOS range [{lo:g}, {hi:g}], higher is better; attributes: {', '.join(metric.attribute_names)}")
    from tqdm.auto import tqdm

    bar = tqdm(paths, desc="scoring", unit="img", disable=len(paths) < 10 or not sys.stderr.isatty(), leave=False)
    for path in bar:
        try:
            row = metric.score_paths([path], max_side=args.max_side)[0]
        except (FileNotFoundError, ValueError) as exc:
            print(f"attiqa score: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            attrs = "  ".join(f"{a}={row[a]:+.3f}" for a in metric.attribute_names)
            print(f"{row['path']}\tmos={row['mos']:.4f}  {attrs}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
