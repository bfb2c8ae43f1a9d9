"""Write the sample RAW set (packaged photographs unprocessed into camera DNGs under capture
errors) in the MIT-Adobe-5K layout.

Usage::

    python experiments/make_sample_data.py --out DIR [--n-images N] [--seed 0] [--max-side N]

Writes ``DIR/raw_photos/HQa1to700/photos/aNNNN-<scene>-<condition>.dng``, the 16-bit ProPhoto
RGB Expert C stand-ins ``DIR/tiff16_c/aNNNN-<scene>-<condition>.tif`` (the original photograph),
``DIR/conditions.csv`` and ``DIR/LICENSES.md``. See ``isp.sample_data``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output root (MIT-Adobe-5K layout)")
    p.add_argument("--n-images", type=int, default=None,
                   help="number of RAWs in capture_plan order (default: every scene under every condition, 48)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed = identical files)")
    p.add_argument("--max-side", type=int, default=1024,
                   help="longest side of the RAWs and Expert C TIFFs (default 1024; 0 = photos as shipped, upsampled 2x)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n_images is not None and args.n_images < 1:
        print("error: --n-images must be >= 1", file=sys.stderr)
        return 2
    if args.max_side and args.max_side < 16:
        print("error: --max-side must be >= 16 (or 0 for the photos as shipped)", file=sys.stderr)
        return 2
    from isp.sample_data import make_sample_set

    paths = make_sample_set(args.out, n_images=args.n_images, seed=args.seed, max_side=args.max_side or None, progress=not args.quiet)
    print(f"wrote {len(paths)} sample DNGs (+ Expert C TIFFs, LICENSES.md) under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
