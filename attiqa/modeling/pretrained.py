"""Hub-style ATTIQA checkpoints: a folder of ``config.json`` + ``model.safetensors``.

The layout the Hugging Face Hub shares models in::

    my-attiqa/
        config.json          # what rebuilds and describes the model (below)
        model.safetensors    # the weights: flat tensors, no pickle, nothing that can execute

``config.json`` holds ``format`` (``"attiqa-pretrained"``), ``format_version``, and the same
metadata as a ``.pt`` checkpoint (:mod:`attiqa.modeling.checkpoint`): ``kind``
(``"quality"`` or ``"pretrained"``), ``architecture``, ``attributes``, ``normalization``,
``score_range``, ``lower_better``, ``starter``, ``description``, plus ``provenance`` (who wrote
the folder, when, from which checkpoint, with which torch, and the SHA-256 of the weights file,
checked on load).

:func:`attiqa.modeling.checkpoint.load_any` reads either format: a ``.pt`` file, a local folder, or a Hub id
(``owner/name`` or ``owner/name@revision``) fetched with ``huggingface_hub.snapshot_download``
(only ``config.json`` and ``model.safetensors`` are downloaded).

Example:
    >>> save_pretrained("my-attiqa", state_dict, meta)          # doctest: +SKIP
    >>> ckpt = load_pretrained("my-attiqa")                      # {"state_dict", "meta"}
    >>> local = resolve_source("someone/attiqa-koniq")           # a Hub id, downloaded
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import torch

from attiqa.utils.files import read_json
from rlisp_common.files import sha256_file

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "FORMAT", "REQUIRED_META", "save_pretrained", "load_pretrained", "is_hub_id",
           "is_pretrained_folder", "resolve_source"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "attiqa-pretrained"
VERSION = 1
#: Metadata every checkpoint carries, in either format.
REQUIRED_META = ("kind", "architecture", "attributes", "normalization", "starter", "description")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


def is_pretrained_folder(path) -> bool:
    """True when ``path`` is a folder holding ``config.json``."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG_NAME).is_file()


def is_hub_id(source) -> bool:
    """``owner/name`` or ``owner/name@revision`` that is not a local path."""
    s = str(source)
    return not Path(s).exists() and bool(_HUB_ID.match(s)) and not s.endswith((".pt", ".pth", ".safetensors"))


def save_pretrained(folder, state_dict: dict, meta: dict, provenance: dict | None = None) -> Path:
    """Writes ``folder/config.json`` and ``folder/model.safetensors`` (each file atomically).

    Args:
        folder: output folder (created).
        state_dict: ``{name: tensor}``.
        meta: checkpoint metadata (:data:`REQUIRED_META` at least);
            must be JSON-serialisable.
        provenance: extra provenance entries (e.g. ``{"source": "koniq.pt"}``).

    Returns:
        The folder.

    Raises:
        ValueError: ``meta`` lacks a required key or holds values JSON cannot store.
    """
    from safetensors.torch import save as st_save

    from attiqa.utils.files import atomic_write, atomic_write_text

    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {missing}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    blob = st_save(tensors, metadata={"format": "pt", "attiqa_format": FORMAT})
    with atomic_write(folder / WEIGHTS_NAME) as tmp:
        tmp.write_bytes(blob)
    prov = {"written_by": "attiqa.modeling.pretrained.save_pretrained",
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "weights_sha256": hashlib.sha256(blob).hexdigest()}
    prov.update(meta.get("provenance") or {})
    prov.update(provenance or {})
    config = {"format": FORMAT, "format_version": VERSION, **{k: v for k, v in meta.items() if k != "provenance"},
              "provenance": prov}
    try:
        text = json.dumps(config, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint metadata is not JSON-serialisable ({exc})") from None
    atomic_write_text(folder / CONFIG_NAME, text + "\n")
    return folder


def resolve_source(source) -> Path:
    """A local path for ``source``: a file or folder as given, a Hub id downloaded.

    Raises:
        FileNotFoundError: neither an existing path nor a Hub id.
        ValueError: the Hub download failed (offline, no such repository, ...).
    """
    p = Path(source)
    if p.exists():
        return p
    if not is_hub_id(source):
        raise FileNotFoundError(f"ATTIQA checkpoint not found: {source} (a .pt file, a folder with {CONFIG_NAME}, "
                                "or a Hugging Face Hub id owner/name)")
    repo_id, _, revision = str(source).partition("@")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id=repo_id, revision=revision or None, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
    except Exception as exc:  # noqa: BLE001 - offline, missing repo, auth...: one clear message
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"cannot fetch ATTIQA checkpoint {source!r} from the Hugging Face Hub ({first})") from None
    return Path(local)


def load_pretrained(folder) -> dict:
    """Reads a ``config.json`` + ``model.safetensors`` folder.

    Returns:
        ``{"state_dict": {name: tensor}, "meta": {...}}`` (``meta`` = ``config.json`` without its
        format markers), the same shape as :func:`attiqa.modeling.checkpoint.load_checkpoint`.

    Raises:
        FileNotFoundError: missing folder or file.
        ValueError: not an ATTIQA folder, newer format, unreadable or tampered weights.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    config = read_json(cfg_path, what=f"{CONFIG_NAME} of an ATTIQA checkpoint folder")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{folder}: not an ATTIQA checkpoint folder ({CONFIG_NAME} has no format '{FORMAT}')")
    if int(config.get("format_version", 0)) > VERSION:
        raise ValueError(f"{folder}: format version {config.get('format_version')} is newer than this code ({VERSION})")
    if not w_path.is_file():
        raise FileNotFoundError(f"ATTIQA checkpoint folder without {WEIGHTS_NAME}: {folder}")
    want = (config.get("provenance") or {}).get("weights_sha256")
    if want and sha256_file(w_path) != want:
        raise ValueError(f"{w_path}: the weights' SHA-256 differs from the one in {CONFIG_NAME} (changed or truncated file)")
    try:
        state = load_file(str(w_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{w_path}: not a readable safetensors file ({exc})") from None
    meta = {k: v for k, v in config.items() if k not in ("format", "format_version")}
    return {"state_dict": state, "meta": meta}
