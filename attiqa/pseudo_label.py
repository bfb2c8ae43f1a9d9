"""Pseudo-labelling at scale: a teacher gives every image of a folder five attribute scores.

``python -m attiqa pseudo-label --images DIR --out labels.csv [--teacher clip --clip-model ID_OR_DIR]``
``torchrun --nproc_per_node N -m attiqa pseudo-label ...`` (one process per GPU, or CPU processes)

The sorted file list (see :mod:`attiqa.image_folder`; ImageNet's ``train/<wnid>/*.JPEG`` works
as is) is cut into shards of ``--shard-size`` images; under ``torchrun`` rank ``r`` of ``W``
labels the shards ``s`` with ``s % W == r``. Each finished shard is written atomically to the
work folder (``<out>.shards/shard-NNNNN.npz``: positions, ``(n, 5)`` scores, a readable flag),
and a rerun skips every finished shard, so an interrupted job resumes where it stopped. When all
ranks are done, rank 0 merges the shards into the labels file:

* ``.csv``: ``path`` (relative to ``--images``) and one column per attribute - the input of
  ``python -m attiqa pretrain --images DIR --labels FILE``;
* ``.npz``: ``paths`` (unicode array, relative), ``scores`` ``(N, 5)`` float32, ``attributes``.

Unreadable images are left out of the labels and listed in ``<out>.failed.txt``. Images are
decoded, resized (short edge) and centre-cropped by DataLoader workers; the teacher sees
``(B, 3, S, S)`` batches (``--size``, default 224 = CLIP's input, so CLIP's own resize is a
no-op).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from attiqa import ATTRIBUTES
from attiqa._cli import HelpFormatter

__all__ = ["shard_ranges", "shards_of_rank", "shard_path", "read_shard", "label_shards", "merge_shards",
           "write_labels_file", "read_labels_file", "build_parser", "main"]


# ---------------------------------------------------------------------------------------------
# shards


def shard_ranges(n: int, shard_size: int) -> list[range]:
    """``[range(0, s), range(s, 2s), ...]`` covering ``n`` items."""
    if shard_size < 1:
        raise ValueError(f"shard size must be positive, got {shard_size}")
    return [range(i, min(n, i + shard_size)) for i in range(0, n, shard_size)]


def shards_of_rank(n_shards: int, rank: int, world_size: int) -> list[int]:
    """The shard ids a rank labels: ``s % world_size == rank``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    return list(range(rank, n_shards, world_size))


def shard_path(work_dir, shard: int) -> Path:
    return Path(work_dir) / f"shard-{shard:05d}.npz"


def read_shard(path, expected: range | None = None) -> dict | None:
    """Loads a finished shard; ``None`` when missing, unreadable or not covering ``expected``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {"index": z["index"].astype(np.int64), "scores": z["scores"].astype(np.float32),
                    "ok": z["ok"].astype(bool)}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    n = len(data["index"])
    if data["scores"].shape != (n, len(ATTRIBUTES)) or data["ok"].shape != (n,):
        return None
    if expected is not None and not np.array_equal(data["index"], np.arange(expected.start, expected.stop)):
        return None
    return data


def _write_shard(path: Path, index: np.ndarray, scores: np.ndarray, ok: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, index=index.astype(np.int64), scores=scores.astype(np.float32), ok=ok.astype(bool))
    os.replace(tmp, path)


def _manifest(files: list[Path], root: Path, shard_size: int, size: int, teacher_desc: dict) -> dict:
    h = hashlib.sha1()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode("utf-8") + b"\n")
    return {"n_images": len(files), "file_list_sha1": h.hexdigest(), "shard_size": shard_size, "size": size,
            "teacher": teacher_desc, "attributes": list(ATTRIBUTES)}


def _check_manifest(work_dir: Path, manifest: dict) -> None:
    """Writes the work folder's manifest, or checks that an existing one describes the same job."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "manifest.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = None
        if old != manifest:
            raise ValueError(f"{work_dir} holds shards of a different job (other images, teacher, size or shard "
                             "size); delete it or pass --overwrite")
        return
    tmp = work_dir / f".manifest.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# labelling


class _ShardBatches(torch.utils.data.Sampler):
    """Batches of dataset positions that never straddle two shards (so shards finish in order)."""

    def __init__(self, shard_lengths: list[int], batch_size: int):
        self.shard_lengths, self.batch_size = shard_lengths, batch_size

    def __iter__(self):
        start = 0
        for n in self.shard_lengths:
            for i in range(0, n, self.batch_size):
                yield list(range(start + i, start + min(n, i + self.batch_size)))
            start += n

    def __len__(self):
        return sum((n + self.batch_size - 1) // self.batch_size for n in self.shard_lengths)


def label_shards(files: list[Path], teacher: torch.nn.Module, work_dir, *, shard_size: int = 1024,
                 batch_size: int = 64, num_workers: int = 4, size: int = 224, device="cpu", rank: int = 0,
                 world_size: int = 1, amp: bool = False, progress: bool = True, max_shards: int | None = None) -> dict:
    """Labels this rank's unfinished shards and writes each one atomically.

    Args:
        files: every image of the job, in the job's fixed order.
        teacher: ``(B, 3, S, S)`` in ``[0, 1]`` -> ``(B, 5)``.
        work_dir: folder of the shard files.
        shard_size: images per shard.
        batch_size: images per teacher forward pass.
        num_workers: DataLoader decoding workers.
        size: side of the square crops given to the teacher.
        device: where the teacher runs.
        rank, world_size: this process and the number of processes.
        amp: fp16 autocast (CUDA only).
        progress: tqdm bar.
        max_shards: stop after this many newly labelled shards (to test resuming).

    Returns:
        ``{"shards_done", "shards_skipped", "images", "failed", "seconds", "images_per_second"}``
        for this rank.
    """
    from tqdm.auto import tqdm

    from attiqa.image_folder import ImageFolderDataset, to_unit_float

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    ranges = shard_ranges(len(files), shard_size)
    mine = shards_of_rank(len(ranges), rank, world_size)
    finished = {s for s in mine if read_shard(shard_path(work_dir, s), ranges[s]) is not None}
    todo = [s for s in mine if s not in finished]
    if max_shards is not None:
        todo = todo[:max_shards]
    skipped = len(finished)
    stats = {"shards_done": 0, "shards_skipped": skipped, "images": 0, "failed": 0, "seconds": 0.0,
             "images_per_second": float("nan")}
    if not todo:
        return stats
    indices = [i for s in todo for i in ranges[s]]
    device = torch.device(device)
    dataset = ImageFolderDataset(files, size, indices, uint8=True)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=_ShardBatches([len(ranges[s]) for s in todo],
                                                                               batch_size),
                                         num_workers=num_workers, pin_memory=device.type == "cuda",
                                         prefetch_factor=4 if num_workers > 0 else None,
                                         persistent_workers=False)
    teacher = teacher.to(device).eval()
    use_amp = bool(amp) and device.type == "cuda"
    bar = tqdm(total=len(indices), desc=f"pseudo-label (rank {rank}/{world_size})" if world_size > 1 else
               "pseudo-label", unit="img", disable=not progress, dynamic_ncols=True)
    pending = {"index": [], "scores": [], "ok": []}
    shard_iter = iter(todo)
    current = next(shard_iter)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for images, index, ok in loader:
            images = to_unit_float(images.to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                scores = teacher(images)
            scores = scores.float().cpu().numpy()
            if not np.isfinite(scores[ok.numpy()]).all():
                raise ValueError(f"the teacher returned NaN/inf scores in shard {current}")
            pending["index"].append(index.numpy())
            pending["scores"].append(scores)
            pending["ok"].append(ok.numpy())
            bar.update(len(index))
            n_have = sum(len(i) for i in pending["index"])
            if n_have == len(ranges[current]):
                idx, sc, okk = (np.concatenate(pending[k]) for k in ("index", "scores", "ok"))
                _write_shard(shard_path(work_dir, current), idx, sc, okk)
                stats["shards_done"] += 1
                stats["images"] += len(idx)
                stats["failed"] += int((~okk).sum())
                pending = {"index": [], "scores": [], "ok": []}
                current = next(shard_iter, None)
    bar.close()
    stats["seconds"] = time.perf_counter() - t0
    if stats["seconds"] > 0:
        stats["images_per_second"] = stats["images"] / stats["seconds"]
    return stats


def merge_shards(files: list[Path], work_dir, shard_size: int) -> tuple[list[Path], np.ndarray, list[Path]]:
    """Collects every shard: ``(paths, scores (N, 5) float32, failed paths)``.

    Raises:
        FileNotFoundError: a shard is missing or damaged (that rank did not finish).
    """
    ranges = shard_ranges(len(files), shard_size)
    paths, scores, failed = [], [], []
    for s, r in enumerate(ranges):
        data = read_shard(shard_path(work_dir, s), r)
        if data is None:
            raise FileNotFoundError(f"shard {s} ({shard_path(work_dir, s)}) is missing or damaged; rerun the same "
                                    "command to finish it")
        for i, sc, ok in zip(data["index"], data["scores"], data["ok"]):
            if ok:
                paths.append(files[i])
                scores.append(sc)
            else:
                failed.append(files[i])
    return paths, np.asarray(scores, dtype=np.float32).reshape(-1, len(ATTRIBUTES)), failed


def write_labels_file(path, paths: list[Path], scores: np.ndarray, root) -> Path:
    """Writes the labels as ``.csv`` (path + five columns) or ``.npz``, atomically."""
    path = Path(path)
    root = Path(root)
    if path.suffix.lower() == ".npz":
        path.parent.mkdir(parents=True, exist_ok=True)
        rel = np.array([Path(p).relative_to(root).as_posix() for p in paths], dtype=str)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, paths=rel, scores=np.asarray(scores, dtype=np.float32),
                     attributes=np.array(ATTRIBUTES, dtype=str))
        os.replace(tmp, path)
        return path
    if path.suffix.lower() != ".csv":
        raise ValueError(f"labels file must end in .csv or .npz, got {path.name}")
    from attiqa.pretrain import write_labels

    return write_labels(path, paths, torch.as_tensor(scores), root=root)


def read_labels_file(path, root=None) -> tuple[list[Path], np.ndarray]:
    """Reads a labels file written by :func:`write_labels_file`: ``(absolute paths, scores (N, 5))``.

    Relative paths are resolved against ``root`` (default: the labels file's folder).
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"labels file not found: {path}")
        with np.load(path, allow_pickle=False) as z:
            rel, scores = [str(p) for p in z["paths"]], z["scores"].astype(np.float32)
        base = Path(root) if root is not None else path.parent
        return [Path(p) if Path(p).is_absolute() else base / p for p in rel], scores
    from attiqa.pretrain import read_labels

    paths, labels = read_labels(path, root=root)
    return paths, labels.numpy()


# ---------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m attiqa pseudo-label", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
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
            raise ValueError("--clip-model and --prompts apply to --teacher clip only")
        return create_teacher("analytic"), {"name": "analytic"}
    from attiqa.clip_teacher import DEFAULT_CLIP, load_prompts

    model = args.clip_model or DEFAULT_CLIP
    prompts = load_prompts(args.prompts)
    desc = {"name": "clip", "model": str(model), "prompts": {a: list(p) for a, p in prompts.items()}}
    return create_teacher("clip", model=model, prompts=prompts), desc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch.distributed as dist

    from attiqa.distributed import init_distributed, resolve_device, world_info

    _, _, world = world_info()
    try:
        device = resolve_device(args.device)
    except (RuntimeError, ValueError) as exc:
        print(f"attiqa pseudo-label: error: bad --device {args.device!r} ({exc})", file=sys.stderr)
        return 2
    # only a barrier and one small all-reduce travel between ranks: gloo serves CPU and GPU jobs
    rank = init_distributed(device, backend="gloo", timeout=timedelta(hours=12))
    code = 0
    try:
        from attiqa.image_folder import list_images

        out = Path(args.out)
        if out.suffix.lower() not in (".csv", ".npz"):
            raise ValueError(f"--out must end in .csv or .npz, got {out.name}")
        for name in ("size", "batch_size", "shard_size"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        root = Path(args.images)
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
        _check_manifest(work_dir, manifest)
        stats = label_shards(files, teacher, work_dir, shard_size=args.shard_size, batch_size=args.batch_size,
                             num_workers=args.workers, size=args.size, device=device, rank=rank, world_size=world,
                             amp=args.amp, progress=not args.no_progress, max_shards=args.max_shards)
        print(f"rank {rank}: labelled {stats['shards_done']} shards ({stats['images']} images, "
              f"{stats['images_per_second']:.1f} images/s), skipped {stats['shards_skipped']} finished shards",
              file=sys.stderr)
    except (FileNotFoundError, ValueError) as exc:
        print(f"attiqa pseudo-label: error: {exc}", file=sys.stderr)
        code = 1
    if world > 1:  # every rank learns whether any failed, then all wait for all shards
        flag = torch.tensor([code], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        code = int(flag)
    try:
        if code == 0 and rank == 0:
            ranges = shard_ranges(len(files), args.shard_size)
            if all(read_shard(shard_path(work_dir, s), r) is not None for s, r in enumerate(ranges)):
                paths, scores, failed = merge_shards(files, work_dir, args.shard_size)
                if not paths:
                    raise ValueError(f"none of the {len(files)} images under {root} could be read")
                write_labels_file(out, paths, scores, root)
                failed_file = out.with_name(out.name + ".failed.txt")
                if failed:
                    tmp = failed_file.with_name("." + failed_file.name + ".tmp")
                    tmp.write_text("".join(f"{p.relative_to(root).as_posix()}\n" for p in failed))
                    os.replace(tmp, failed_file)
                    print(f"attiqa pseudo-label: {len(failed)} unreadable images skipped, listed in {failed_file}",
                          file=sys.stderr)
                else:
                    failed_file.unlink(missing_ok=True)
                print(f"wrote {out}: {len(paths)} images x {len(ATTRIBUTES)} scores ({desc['name']} teacher)")
            else:
                print(f"not all shards are finished yet; rerun the same command to continue (work folder "
                      f"{work_dir})")
    except (FileNotFoundError, ValueError) as exc:
        print(f"attiqa pseudo-label: error: {exc}", file=sys.stderr)
        code = 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main())
