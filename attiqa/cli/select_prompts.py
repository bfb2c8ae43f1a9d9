"""``python -m attiqa select-prompts``: rank antonym prompt pairs and pick one per attribute.

The method is in :mod:`attiqa.teachers.prompts`; this module is its command line. A missing,
unreadable or invalid ``--adjectives``, ``--images``, ``--spaq`` or ``--clip-model`` (or an
``--out-dir`` that cannot be written) is one line ``attiqa select-prompts: error: <file>: <cause>``
with the shared exit code (3 missing, 4 permission denied, 5 invalid, 6 a Python tag in the
adjectives YAML; see :mod:`attiqa.cli.common`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from attiqa.attributes import ATTRIBUTES
from attiqa.cli.common import EXIT_CODES_HELP, HelpFormatter, on_file, reports_errors, stage_description
from attiqa.teachers import prompts as stage
from attiqa.teachers.prompts import (ADJECTIVES_FILE, DEFAULT_TEMPLATE, default_fixed_images, load_adjectives,
                                     load_fixed_images, select_prompts, write_outputs)
from rlisp_common.exit_codes import EXIT_MISSING, EXIT_USAGE, InputError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from attiqa.teachers.clip import DEFAULT_CLIP

    p = argparse.ArgumentParser(prog="python -m attiqa select-prompts", description=stage_description(stage),
                                formatter_class=HelpFormatter, epilog=EXIT_CODES_HELP)
    p.add_argument("--clip-model", default=DEFAULT_CLIP, help="CLIP hub id or local folder (save_pretrained)")
    p.add_argument("--out-dir", required=True, help="folder for ranking.csv, ranking.md and prompts.json")
    p.add_argument("--adjectives", default=None,
                   help=f"YAML/JSON of candidate adjectives per attribute (default: {ADJECTIVES_FILE.name}, packaged)")
    p.add_argument("--template", default=DEFAULT_TEMPLATE, help="prompt template, '{}' is the adjective")
    p.add_argument("--images", default=None,
                   help="folder of fixed photographs for proxy task 1 (default: six photographs shipped with "
                        "scikit-image and scikit-learn)")
    p.add_argument("--n-images", type=int, default=None, help="use at most this many images of --images")
    p.add_argument("--image-size", type=int, default=256, help="side of the fixed photographs (resize + centre crop)")
    p.add_argument("--levels", type=int, default=6, help="number of distortion levels from 0 to 1 (proxy task 1)")
    p.add_argument("--spaq", default=None,
                   help="SPAQ root (Annotations/MOS and Image attribute scores.xlsx + TestImage/) for proxy task 2")
    p.add_argument("--spaq-limit", type=int, default=None,
                   help="use a random subset of this many SPAQ images (seeded by --seed)")
    p.add_argument("--spaq-size", type=int, default=224, help="side of the SPAQ images given to CLIP")
    p.add_argument("--batch-size", type=int, default=32, help="images per CLIP forward pass")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for SPAQ images")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--top", type=int, default=10, help="pairs per attribute listed in ranking.md")
    p.add_argument("--seed", type=int, default=0, help="seed of the random distortions and the SPAQ subset")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p



@reports_errors("attiqa select-prompts")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from attiqa.teachers.clip import CLIPTeacher

    if args.levels < 2:
        raise InputError("--levels must be at least 2", EXIT_USAGE)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    with on_file(args.adjectives):
        adjectives = load_adjectives(args.adjectives)
    if args.images:
        with on_file(args.images):
            fixed = load_fixed_images(args.images, args.n_images, args.image_size)
    else:
        fixed = default_fixed_images(args.image_size)
        if args.n_images:
            fixed = fixed[:args.n_images]
    human_paths = human_scores = None
    if args.spaq:
        from attiqa.data.spaq import load_spaq_annotations

        with on_file(args.spaq):
            table = load_spaq_annotations(args.spaq)
        root = Path(args.spaq) if Path(args.spaq).is_dir() else Path(args.spaq).parent.parent
        paths = [root / "TestImage" / n for n in table["image"]]
        keep = np.array([p.is_file() for p in paths])
        if not keep.any():
            raise InputError(f"none of the {len(paths)} SPAQ images is there", EXIT_MISSING, path=root / "TestImage")
        if not keep.all():
            print(f"select-prompts: {int((~keep).sum())} of {len(paths)} SPAQ images are missing; using the "
                  f"{int(keep.sum())} present", file=sys.stderr)
        idx = np.flatnonzero(keep)
        if args.spaq_limit and args.spaq_limit < len(idx):
            idx = np.sort(np.random.default_rng(args.seed).choice(idx, args.spaq_limit, replace=False))
        human_paths = [paths[i] for i in idx]
        human_scores = table["attributes"][idx]
    with on_file(args.clip_model):
        teacher = CLIPTeacher(args.clip_model, device=device)
    ranking = select_prompts(teacher, adjectives, fixed, template=args.template,
                             levels=np.linspace(0, 1, args.levels), human_paths=human_paths,
                             human_scores=human_scores, image_size=args.spaq_size, batch_size=args.batch_size,
                             num_workers=args.workers, seed=args.seed, progress=not args.no_progress)
    provenance = {"clip_model": str(args.clip_model), "template": args.template,
                  "fixed_images": len(fixed), "levels": args.levels,
                  "spaq_images": 0 if human_paths is None else len(human_paths)}
    with on_file(args.out_dir):
        files = write_outputs(ranking, args.out_dir, args.top, provenance)
    width = max(map(len, ATTRIBUTES))
    for a in ATTRIBUTES:
        best = ranking.rows(a)[0]
        h = "" if best["srocc_human"] is None else f", human {best['srocc_human']:+.3f}"
        print(f"{a:<{width}}  {best['positive']!r} / {best['negative']!r}  (distortion "
              f"{best['srocc_distortion']:+.3f}{h}, joint {best['joint']:+.3f})")
    print(f"wrote {files['csv']}, {files['markdown']} and {files['prompts']}")
    return 0



if __name__ == "__main__":
    sys.exit(main())
