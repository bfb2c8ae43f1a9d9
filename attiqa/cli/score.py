"""``python -m attiqa score PATH... [--json] [--checkpoint CKPT]``: MOS and attributes of images.

Files are scored as given, folders are searched recursively for images. Without
``--checkpoint`` the starter model is used (built on first use, a few minutes on a CPU); a
line on stderr says so, since it is not the paper's weights.

Each image is scored whole (``QualityMetric.score_paths``). Images whose longer side exceeds
``--max-side`` (default 2048) are first downscaled to it, which bounds time and memory on huge
files: scored at full size an 8000 x 8000 PNG needed 68.7 s and 16.3 GB; now 8-bit files are
box-reduced by an integer factor while decoding and then resized, 17 s and 1.4 GB peak on a
2-core machine (most of it the PNG decode); images whose shorter side is below
``--min-side`` (default 32 px) are refused. An input that cannot be scored (missing, permission
denied, not an image, truncated, too small) is one line ``attiqa score: error: <file>: <cause>``
and the other inputs are still scored. Exit status (``rlisp_common.exit_codes``): 0 all scored,
else the first failure's code (3 missing, 4 permission denied, 5 unreadable/invalid/too small,
6 refused checkpoint with pickled objects).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attiqa.cli.common import EXIT_CODES_HELP, collected, on_file, reports_errors

__all__ = ["main", "starter_notice"]


def starter_notice(metric) -> None:
    """Tells on stderr that the starter model is in use."""
    print(f"attiqa: using the STARTER model ({metric.checkpoint_path}): "
          f"{metric.description or 'starter model, not the paper' + chr(39) + 's weights'}. "
          "Pass --checkpoint for a model fine-tuned on a MOS dataset.", file=sys.stderr)


@reports_errors("attiqa score")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attiqa score", description=__doc__.split("\n\n")[0],
                                epilog=EXIT_CODES_HELP)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--checkpoint", default=None, help="quality checkpoint (default: the starter model)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per image: path, mos and the five attribute names")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help="downscale images whose longer side is larger (0: score at full size)")
    p.add_argument("--min-side", type=int, default=DEFAULT_MIN_SIDE, help="refuse images whose shorter side is smaller")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = p.parse_args(argv)

    from attiqa.api import create_metric, expand_image_paths
    from rlisp_common.exit_codes import Failures

    failures = Failures(prefix="attiqa score: error")
    paths = []
    for item in args.paths:  # a bad input is reported, the others are still scored
        try:
            paths += [p for p in expand_image_paths([item]) if p not in paths]
        except Exception as exc:  # noqa: BLE001 - classified by describe()
            if Path(item).is_dir():
                failures.add(item, cause="a folder with no image files", code=5)
            elif Path(item).exists() and not Path(item).is_file():
                failures.add(item, cause="not a regular file (a FIFO, device or socket)", code=5)
            else:
                failures.add(item, exc)
    with on_file(args.checkpoint):  # a bad checkpoint ends the command: one line (reports_errors)
        metric = create_metric(args.checkpoint, device=args.device)
    if metric.is_starter:
        starter_notice(metric)
    lo, hi = metric.score_range
    if not args.json:
        print(f"# MOS range [{lo:g}, {hi:g}], higher is better; attributes: {', '.join(metric.attribute_names)}")
    from tqdm.auto import tqdm

    bar = tqdm(paths, desc="scoring", unit="img", disable=len(paths) < 10 or not sys.stderr.isatty(), leave=False)
    for path in bar:
        row = None
        with collected(failures, path):  # one line per bad image, the others are scored
            check_image_size(path, args.min_side)
            row = metric.score_paths([path], max_side=args.max_side or None)[0]
        if row is None:
            continue
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            attrs = "  ".join(f"{a}={row[a]:+.3f}" for a in metric.attribute_names)
            print(f"{row['path']}\tmos={row['mos']:.4f}  {attrs}", flush=True)
    return failures.code


DEFAULT_MAX_SIDE = 2048
DEFAULT_MIN_SIDE = 32


def check_image_size(path, min_side: int = DEFAULT_MIN_SIDE) -> None:
    """Refuses an image whose shorter side is below ``min_side`` px (read from its header only)."""
    from PIL import Image, UnidentifiedImageError

    from rlisp_common.exit_codes import InputError

    try:
        with Image.open(path) as im:
            w, h = im.size
    except UnidentifiedImageError:
        return  # not for Pillow (e.g. a TIFF only tifffile reads): load_image decides
    if min(w, h) < min_side:
        raise InputError(f"{w}x{h} px, below the minimum side of {min_side} px (--min-side)", path=path)


if __name__ == "__main__":
    sys.exit(main())
