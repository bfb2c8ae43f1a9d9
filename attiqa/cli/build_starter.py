"""``python -m attiqa build-starter``: build (or report on) the offline starter model.

The recipe is in :mod:`attiqa.training.starter`; this module is its command line. A missing,
unreadable or invalid ``--out`` given to ``--report`` is one line ``attiqa build-starter: error:
<file>: <cause>`` with the shared exit code (3 missing, 4 permission denied, 5 invalid, 6 pickled
objects; see :mod:`attiqa.cli.common`), Ctrl-C during a build exit code 130.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from attiqa.cli.common import EXIT_CODES_HELP, on_file, reports_errors, stage_description
from attiqa.training.starter import build as stage
from attiqa.training.starter.build import build_starter, fixed_threads, isa_pinned, run_pinned_child
from attiqa.training.starter.config import HOLDOUT_PHOTOS, StarterConfig, starter_path
from attiqa.training.starter.photos import starter_photos
from attiqa.training.starter.report import format_report, holdout_report
from rlisp_common.exit_codes import InputError

__all__ = ["main"]


@reports_errors("attiqa build-starter")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attiqa build-starter", description=stage_description(stage),
                                epilog=EXIT_CODES_HELP)
    p.add_argument("--out", default=None, help=f"output checkpoint (default: {starter_path()})")
    p.add_argument("--force", action="store_true", help="rebuild even when the file exists")
    p.add_argument("--tiny", action="store_true", help="the seconds-long test configuration (random weights)")
    p.add_argument("--small", action="store_true",
                   help="the recipe cut to about 30 CPU-seconds (StarterConfig.small(), for tests)")
    p.add_argument("--rank-steps", type=int, default=None, help="override the ranking-pretraining steps")
    p.add_argument("--joint-steps", type=int, default=None, help="override the attributes + MOS steps")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads of the build (default: the recipe's fixed count, so that every "
                        "machine builds the same weights)")
    p.add_argument("--unpinned", action="store_true",
                   help="build with this machine's own instruction sets (AVX-512, AMX) instead of in a child "
                        "process pinned to AVX2 (faster on some machines, but other machines build other weights)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")
    p.add_argument("--report", action="store_true", help="print the stored hold-out report of an existing file")
    p.add_argument("--report-crops", type=int, default=None,
                   help="with --report: recompute the hold-out report with this many crops per held-out photo")
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else starter_path()
    if args.report:
        from attiqa.api import load_quality_model

        with on_file(out):
            model, meta = load_quality_model(out)
        if "holdout_report" not in meta:
            raise InputError("not a starter checkpoint (it holds no hold-out report)", path=out)
        report = meta["holdout_report"]
        if args.report_crops:
            cfg = meta.get("starter_config", {})
            holdout = starter_photos(tuple(cfg.get("holdout", HOLDOUT_PHOTOS)), int(cfg.get("photo_max_side", 400)))
            with fixed_threads(args.threads or int(cfg.get("threads", 2))):
                report = holdout_report(model, holdout, int(cfg.get("crop", 160)),
                                        tuple(cfg.get("report_magnitudes", report["magnitudes"])),
                                        n_crops=args.report_crops)
        print(format_report(report))
        cpu = meta.get("build_cpu_seconds")
        print(f"\nbuilt in {meta.get('build_seconds', float('nan')):.0f} s wall"
              + (f", {cpu:.0f} s CPU on {meta.get('torch_threads')} threads" if cpu is not None else "")
              + f"; {meta['description']}")
        return 0
    if out.exists() and not out.is_file():
        raise InputError("not a regular file (a folder?): --out names the checkpoint file to write", path=out)
    if out.is_file() and not args.force:
        print(f"{out} exists (use --force to rebuild)")
        return 0
    if not args.unpinned and not isa_pinned():
        # the libraries read the pins when they load: a child process, so that every x86-64
        # machine builds the same weights (attiqa.training.starter.build)
        return run_pinned_child(list(sys.argv[1:] if argv is None else argv))
    config = StarterConfig.tiny() if args.tiny else StarterConfig.small() if args.small else StarterConfig()
    if args.rank_steps is not None:
        config = replace(config, rank_steps=args.rank_steps)
    if args.joint_steps is not None:
        config = replace(config, joint_steps=args.joint_steps)
    if args.threads:
        config = replace(config, threads=args.threads)
    build_starter(out, config, progress=not args.quiet)
    if not args.quiet:
        print(f"built the starter model (not the paper's weights): {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
