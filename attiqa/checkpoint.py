"""ATTIQA checkpoint files: weights plus the metadata that rebuilds and describes the model.

A checkpoint is a ``torch.save`` of a plain dict ``{"format": "attiqa-checkpoint", "version": 1,
"state_dict": {name: tensor}, "meta": {...}}`` that contains only tensors and JSON-like values,
so it loads with ``torch.load(..., weights_only=True)`` and nothing in it can execute code.
``meta`` holds at least ``kind`` (``"pretrained"`` or ``"quality"``), ``architecture`` (the
model's config), ``attributes``, ``normalization``, ``starter`` and ``description``.
Training-state checkpoints (optimizer, step, RNG) use the same container with extra keys.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "atomic_torch_save"]

FORMAT = "attiqa-checkpoint"
VERSION = 1
REQUIRED_META = ("kind", "architecture", "attributes", "normalization", "starter", "description")


def atomic_torch_save(obj, path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(path, state_dict: dict, meta: dict, **extra) -> Path:
    """Saves weights and metadata atomically.

    Args:
        path: output file.
        state_dict: ``{name: tensor}`` (moved to CPU).
        meta: JSON-like metadata; must contain the keys of :data:`REQUIRED_META`.
        **extra: further JSON-like or tensor entries (e.g. ``optimizer``, ``step``).

    Raises:
        ValueError: ``meta`` lacks a required key.
    """
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {missing}")
    state = {k: v.detach().cpu() for k, v in state_dict.items()}
    return atomic_torch_save({"format": FORMAT, "version": VERSION, "state_dict": state, "meta": dict(meta),
                              **extra}, path)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Loads a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Returns:
        The stored dict: ``state_dict``, ``meta`` and any extra entries.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a readable ATTIQA checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ATTIQA checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated, pickled code, ...: one message
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if reason.startswith("Weights only load failed"):
            reason = "it holds objects other than tensors and plain data, refused by weights_only=True"
        raise ValueError(f"{path}: not a readable ATTIQA checkpoint ({reason})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path}: not an ATTIQA checkpoint (no '{FORMAT}' marker; a plain state dict or another "
                         "project's file?)")
    if obj.get("version", 0) > VERSION:
        raise ValueError(f"{path}: checkpoint format version {obj.get('version')} is newer than this code ({VERSION})")
    if not isinstance(obj.get("state_dict"), dict) or not isinstance(obj.get("meta"), dict):
        raise ValueError(f"{path}: ATTIQA checkpoint without weights or metadata")
    return obj
