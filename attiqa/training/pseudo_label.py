"""Pseudo-labelling at scale: a teacher gives every image of a folder five attribute scores.

``python -m attiqa pseudo-label --images DIR --out labels.csv [--teacher clip --clip-model ID_OR_DIR]``
``torchrun --nproc_per_node N -m attiqa pseudo-label ...`` (one process per GPU, or CPU processes)

The sorted file list (see :mod:`attiqa.data.image_folder`; ImageNet's ``train/<wnid>/*.JPEG`` works
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

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from attiqa.attributes import ATTRIBUTES
from attiqa.utils.files import atomic_write, atomic_write_text

__all__ = ["shard_ranges", "shards_of_rank", "shard_path", "read_shard", "label_shards", "merge_shards"]


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
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, index=index.astype(np.int64), scores=scores.astype(np.float32), ok=ok.astype(bool))


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
    atomic_write_text(path, json.dumps(manifest, indent=2))


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

    from attiqa.data.image_folder import ImageFolderDataset, to_unit_float

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


# ---------------------------------------------------------------------------------------------
# CLI


