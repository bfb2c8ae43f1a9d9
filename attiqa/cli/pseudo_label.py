"""``python -m attiqa pseudo-label``: a teacher labels an image folder, sharded and resumable.

The method is in :mod:`attiqa.training.pseudo_label`; this module is its command line. A missing,
unreadable or invalid ``--images``, ``--prompts``, ``--clip-model`` or work folder is one line
``attiqa pseudo-label: error: <file>: <cause>`` with the shared exit code (3 missing, 4 permission
denied, 5 invalid; see :mod:`attiqa.cli.common`). An image that cannot be read is one such line
too, the other images are labelled and written, and the exit code is the first bad image's.
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch

from attiqa.attributes import ATTRIBUTES
from attiqa.cli.common import EXIT_CODES_HELP, HelpFormatter, collected, on_file, reports_errors, stage_description
from attiqa.data.labels import write_labels_file
from attiqa.training import pseudo_label as stage
from attiqa.training.pseudo_label import (_check_manifest, _manifest, label_shards, merge_shards, read_shard,
                                          shard_path, shard_ranges)
from attiqa.utils.files import atomic_write_text
from rlisp_common.exit_codes import EXIT_BAD_INPUT, EXIT_USAGE, Failures, InputError, report_error

__all__ = ["build_parser", "main"]

PROG = "attiqa pseudo-label"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m attiqa pseudo-label", description=stage_description(stage),
                                formatter_class=HelpFormatter, epilog=EXIT_CODES_HELP)
    p.add_argument("--images", required=True, help="image folder (any depth) or ImageNet root (with --split)")
    p.add_argument("--split", default=None, help="sub-folder to label, e.g. 'train' of an ImageNet root")
    p.add_argument("--out", required=True, help="labels file to write: .csv (for `attiqa pretrain --labels`) or .npz")
    p.add_argument("--work-dir", default=None, help="folder of the finished shards (default: <out>.shards)")
    p.add_argument("--teacher", default="clip", choices=("clip", "analytic"), help="who labels the images")
    p.add_argument("--clip-model", default=None,
                   help="CLIP hub id or local folder (default: openai/clip-vit-base-patch16)")
    p.add_argument("--prompts", default=None, help="prompts.json from select-prompts (default: the paper's Table 1)")
    p.add_argument("--size", type=int, default=224, help="images are resized (short edge) and centre-cropped to this")
    p.add_argument("--batch-size", type=int, default=64, help="images per teacher forward pass")
    p.add_argument("--shard-size", type=int, default=1024, help="images per shard (the unit of resuming)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="DataLoader decoding workers per process")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--amp", action="store_true", help="fp16 autocast on CUDA")
    p.add_argument("--overwrite", action="store_true", help="discard shards of an earlier, different job")
    p.add_argument("--max-shards", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p



def _teacher(args) -> tuple[torch.nn.Module, dict]:
    from attiqa.teachers import create_teacher

    if args.teacher == "analytic":
        if args.clip_model or args.prompts:
            raise InputError("--clip-model and --prompts apply to --teacher clip only", EXIT_USAGE)
        return create_teacher("analytic"), {"name": "analytic"}
    from attiqa.teachers.clip import DEFAULT_CLIP, load_prompts

    model = args.clip_model or DEFAULT_CLIP
    with on_file(args.prompts):
        prompts = load_prompts(args.prompts)
    desc = {"name": "clip", "model": str(model), "prompts": {a: list(p) for a, p in prompts.items()}}
    with on_file(model):
        return create_teacher("clip", model=model, prompts=prompts), desc


def _report_failed(failed: list[Path], size: int, failures: Failures) -> None:
    """One line per image the shards mark unreadable, with its cause (the file is read once more)."""
    from attiqa.data.image_folder import load_square

    for path in failed:
        with collected(failures, path):
            load_square(path, size)
            failures.add(path, cause="could not be read while labelling", code=EXIT_BAD_INPUT)


@reports_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch.distributed as dist

    from attiqa.utils.device import init_distributed, resolve_device, world_info

    _, _, world = world_info()
    try:
        device = resolve_device(args.device)
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"bad --device {args.device!r} ({exc})", EXIT_USAGE) from None
    # only a barrier and one small all-reduce travel between ranks: gloo serves CPU and GPU jobs
    rank = init_distributed(device, backend="gloo", timeout=timedelta(hours=12))
    code = 0
    failures = Failures(prefix=f"{PROG}: error")
    try:
        from attiqa.data.image_folder import list_images

        out = Path(args.out)
        if out.suffix.lower() not in (".csv", ".npz"):
            raise InputError(f"--out must end in .csv or .npz, got {out.name}", EXIT_USAGE)
        for name in ("size", "batch_size", "shard_size"):
            if getattr(args, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be positive", EXIT_USAGE)
        root = Path(args.images)
        with on_file(root / args.split if args.split else root):
            files = list_images(root, args.split)
        work_dir = Path(args.work_dir) if args.work_dir else out.with_name(out.name + ".shards")
        teacher, desc = _teacher(args)
        manifest = _manifest(files, root, args.shard_size, args.size, desc)
        if args.overwrite and rank == 0 and work_dir.is_dir():
            for f in work_dir.glob("shard-*.npz"):
                f.unlink()
            (work_dir / "manifest.json").unlink(missing_ok=True)
        if world > 1:
            dist.barrier()
        with on_file(work_dir):
            _check_manifest(work_dir, manifest)
        stats = label_shards(files, teacher, work_dir, shard_size=args.shard_size, batch_size=args.batch_size,
                             num_workers=args.workers, size=args.size, device=device, rank=rank, world_size=world,
                             amp=args.amp, progress=not args.no_progress, max_shards=args.max_shards)
        print(f"rank {rank}: labelled {stats['shards_done']} shards ({stats['images']} images, "
              f"{stats['images_per_second']:.1f} images/s), skipped {stats['shards_skipped']} finished shards",
              file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - one line (a bug is re-raised); the other ranks still meet below
        code = report_error(exc, prefix=f"{PROG}: error")
    if world > 1:  # every rank learns whether any failed, then all wait for all shards
        flag = torch.tensor([code], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        code = code or int(flag)
    try:
        if code == 0 and rank == 0:
            ranges = shard_ranges(len(files), args.shard_size)
            if all(read_shard(shard_path(work_dir, s), r) is not None for s, r in enumerate(ranges)):
                paths, scores, failed = merge_shards(files, work_dir, args.shard_size)
                _report_failed(failed, args.size, failures)
                if not paths:
                    raise InputError(f"none of the {len(files)} images could be read", path=root)
                write_labels_file(out, paths, scores, root)
                failed_file = out.with_name(out.name + ".failed.txt")
                if failed:
                    atomic_write_text(failed_file, "".join(f"{p.relative_to(root).as_posix()}\n" for p in failed))
                    print(f"{PROG}: {len(failed)} unreadable images skipped, listed in {failed_file}",
                          file=sys.stderr)
                else:
                    failed_file.unlink(missing_ok=True)
                print(f"wrote {out}: {len(paths)} images x {len(ATTRIBUTES)} scores ({desc['name']} teacher)")
            else:
                print(f"not all shards are finished yet; rerun the same command to continue (work folder "
                      f"{work_dir})")
    except Exception as exc:  # noqa: BLE001 - one line; a bug is re-raised
        code = report_error(exc, prefix=f"{PROG}: error")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return code or failures.code



if __name__ == "__main__":
    sys.exit(main())
