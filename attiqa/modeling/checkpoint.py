"""ATTIQA checkpoint files: weights plus the metadata that rebuilds and describes the model.

A checkpoint is a ``torch.save`` of a plain dict ``{"format": "attiqa-checkpoint", "version": 1,
"state_dict": {name: tensor}, "meta": {...}}`` that contains only tensors and JSON-like values,
so it loads with ``torch.load(..., weights_only=True)`` and nothing in it can execute code.
``meta`` holds at least ``kind`` (``"pretrained"`` or ``"quality"``), ``architecture`` (the
model's config), ``attributes``, ``normalization``, ``starter`` and ``description``.
Training-state checkpoints (optimizer, step, RNG) use the same container with extra keys.

Besides the container, this module builds the ``meta`` of the two kinds
(:func:`pretrained_meta`, :func:`quality_checkpoint_meta`), saves a quality model
(:func:`save_quality_checkpoint`) and loads weights with every key checked
(:func:`load_state_strict`, :func:`load_attiqa_model`). :func:`load_any` reads this format and
the Hub-style folder of :mod:`attiqa.modeling.pretrained` (``config.json`` + ``model.safetensors``,
no pickle), local or by Hub id.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from attiqa.attributes import ATTRIBUTES
from attiqa.modeling.pretrained import REQUIRED_META, load_pretrained, resolve_source
from attiqa.modeling.quality import QualityModel
from attiqa.utils.files import atomic_torch_save, load_tensor_file

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "load_any", "load_state_strict", "load_attiqa_model",
           "pretrained_meta", "quality_checkpoint_meta", "save_quality_checkpoint", "weights_fingerprint"]

FORMAT = "attiqa-checkpoint"
VERSION = 1


def weights_fingerprint(state_dict: dict) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes, in name order (hex).

    Two checkpoints with equal fingerprints hold bitwise-equal weights, whatever the file's
    container or metadata; the starter records its own (``meta["weights_sha256"]``) so that
    builds on two machines can be compared without moving the files.
    """
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes, any dtype (bfloat16 too)
    return h.hexdigest()


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
    obj = load_tensor_file(path, map_location, what="ATTIQA checkpoint")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path}: not an ATTIQA checkpoint (no '{FORMAT}' marker; a plain state dict or another "
                         "project's file?)")
    if obj.get("version", 0) > VERSION:
        raise ValueError(f"{path}: checkpoint format version {obj.get('version')} is newer than this code ({VERSION})")
    if not isinstance(obj.get("state_dict"), dict) or not isinstance(obj.get("meta"), dict):
        raise ValueError(f"{path}: ATTIQA checkpoint without weights or metadata")
    return obj


def load_any(source) -> dict:
    """Loads a checkpoint in either format: a ``.pt`` file, a pretrained folder, or a Hub id.

    Returns:
        ``{"state_dict", "meta", ...}`` and ``"path"``: the local file or folder read.

    Raises:
        FileNotFoundError / ValueError: see :func:`resolve_source`, :func:`load_pretrained` and
            :func:`attiqa.modeling.checkpoint.load_checkpoint`.
    """
    path = resolve_source(source)
    if path.is_dir():
        out = load_pretrained(path)
    else:
        out = load_checkpoint(path)
    out["path"] = path
    return out


def load_attiqa_model(path) -> tuple[nn.Module, dict]:
    """Loads the ATTIQA model (backbone + attribute heads) of a pretrained or quality checkpoint.

    Args:
        path: a ``.pt`` file, a ``config.json`` + ``model.safetensors`` folder, or a Hub id (:func:`load_any`).

    Returns:
        ``(model, meta)``; every weight of the model must be in the checkpoint.

    Raises:
        FileNotFoundError / ValueError: missing file, not an ATTIQA checkpoint, architecture mismatch.
    """
    from attiqa.modeling.heads import build_model

    ckpt = load_any(path)
    meta, state = ckpt["meta"], ckpt["state_dict"]
    arch = meta.get("architecture")
    if meta.get("kind") == "quality":
        model = QualityModel.from_config(arch)
        load_state_strict(model, state, path)
        return model.attiqa, meta
    if not isinstance(arch, dict):
        raise ValueError(f"{path}: the checkpoint has no architecture configuration")
    arch = dict(arch)
    arch["pretrained"] = False
    model = build_model(**arch)
    load_state_strict(model, state, path)
    return model, meta


def load_state_strict(model: nn.Module, state: dict, path) -> None:
    """Loads ``state`` into ``model``; every weight must fit, none may be missing or left over.

    Raises:
        ValueError: shape mismatches, missing or unexpected keys (``path`` names the file).
    """
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()
        raise ValueError(f"{path}: weights do not fit the architecture stored in the checkpoint "
                         f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the architecture stored in the checkpoint "
                         f"({len(missing)} missing, e.g. {missing[:2]}; {len(unexpected)} unexpected, "
                         f"e.g. {unexpected[:2]})")


def quality_checkpoint_meta(model: QualityModel, *, starter: bool = False, description: str = "",
                            extra: dict | None = None) -> dict:
    """The ``meta`` of a quality checkpoint (architecture, normalisation, range, ...)."""
    arch = model.config
    norm = arch["attiqa"].get("normalization")
    if norm is None:
        mean = getattr(model.attiqa, "mean", None)
        std = getattr(model.attiqa, "std", None)
        if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor):
            norm = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    meta = {"kind": "quality", "architecture": arch, "attributes": list(ATTRIBUTES),
            "normalization": norm, "starter": bool(starter), "description": description,
            "score_range": list(model.score_range), "lower_better": bool(model.lower_better)}
    meta.update(extra or {})
    return meta


def save_quality_checkpoint(path, model: QualityModel, **meta_kwargs) -> Path:
    """Saves a quality checkpoint atomically (:func:`save_checkpoint`)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(path, state, quality_checkpoint_meta(model, **meta_kwargs))
    return Path(path)


def pretrained_meta(model: nn.Module, description: str, extra: dict | None = None) -> dict:
    """``meta`` of a ``kind="pretrained"`` checkpoint for ``model`` (an :class:`attiqa.modeling.heads.ATTIQAModel`)."""
    meta = {"kind": "pretrained", "architecture": dict(model.config), "attributes": list(ATTRIBUTES),
            "normalization": {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()},
            "starter": False, "description": description}
    meta.update(extra or {})
    return meta
