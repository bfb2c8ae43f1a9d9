"""Attribute-label files: what pseudo-labelling writes and pretraining reads.

* ``.csv``: a ``path`` column (relative to a root) and one column per attribute;
* ``.npz``: ``paths`` (unicode, relative), ``scores`` ``(N, 5)`` float32, ``attributes``.

:func:`read_labels` / :func:`write_labels` handle the CSV form with tensors;
:func:`read_labels_file` / :func:`write_labels_file` choose the form by the file's suffix.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from attiqa.attributes import ATTRIBUTES
from attiqa.utils.files import atomic_write

__all__ = ["read_labels", "write_labels", "read_labels_file", "write_labels_file"]


def read_labels(path, root=None) -> tuple[list[Path], torch.Tensor]:
    """Reads a labels file: CSV with a ``path`` column and one column per attribute.

    Relative paths are taken relative to ``root`` (default: the labels file's folder).

    Returns:
        ``(paths, labels (N, 5) float32)``.

    Raises:
        FileNotFoundError / ValueError: missing file, missing columns, non-finite scores.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    root = Path(root) if root is not None else path.parent
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in ("path", *ATTRIBUTES) if c not in cols]
        if missing:
            raise ValueError(f"{path}: labels file lacks the columns {missing} (needs path + {list(ATTRIBUTES)})")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path}: labels file has no rows")
    try:
        labels = torch.tensor([[float(r[a]) for a in ATTRIBUTES] for r in rows], dtype=torch.float32)
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric attribute score ({exc})") from None
    if not torch.isfinite(labels).all():
        raise ValueError(f"{path}: NaN or infinite attribute scores")
    paths = [Path(r["path"]) if Path(r["path"]).is_absolute() else root / r["path"] for r in rows]
    return paths, labels



def write_labels(path, paths, labels: torch.Tensor, root=None) -> Path:
    """Writes a labels CSV atomically (paths relative to ``root`` when given)."""
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", *ATTRIBUTES])
        for p, row in zip(paths, labels.tolist()):
            p = Path(p)
            rel = p.relative_to(root) if root is not None and p.is_relative_to(root) else p
            w.writerow([rel.as_posix(), *(f"{v:.6f}" for v in row)])
    return path


def write_labels_file(path, paths: list[Path], scores: np.ndarray, root) -> Path:
    """Writes the labels as ``.csv`` (path + five columns) or ``.npz``, atomically."""
    path = Path(path)
    root = Path(root)
    if path.suffix.lower() == ".npz":
        rel = np.array([Path(p).relative_to(root).as_posix() for p in paths], dtype=str)
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, paths=rel, scores=np.asarray(scores, dtype=np.float32),
                     attributes=np.array(ATTRIBUTES, dtype=str))
        return path
    if path.suffix.lower() != ".csv":
        raise ValueError(f"labels file must end in .csv or .npz, got {path.name}")
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
    paths, labels = read_labels(path, root=root)
    return paths, labels.numpy()
