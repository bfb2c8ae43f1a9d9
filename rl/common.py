"""Configuration, run-folder files and builders shared by training, evaluation and inference."""
from __future__ import annotations

import copy
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

__all__ = [
    "ALGOS",
    "HYPERPARAMS_DIR",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_hyperparams",
    "load_npz",
    "parse_overrides",
    "resolve_device",
    "save_npz",
]

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"
ALGOS = ("sac", "ppo")

# Files of a run folder.
CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.txt"
AGENT_FILE = "agent.zip"
VECNORM_FILE = "vecnormalize.npz"
STATE_FILE = "state.json"
REPLAY_FILE = "replay_buffer.npz"
EVAL_FILE = "eval.json"
CURVE_FILE = "training_curve.csv"
DEMOS_FILE = "demonstrations.json"


# -- atomic files -------------------------------------------------------------------------------
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Atomic ``np.savez`` (plain arrays only, loadable without pickle)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Loads an npz written by :func:`save_npz` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# -- configuration --------------------------------------------------------------------------------
def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicated keys (a silent-override trap in YAML)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicated key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | Path) -> dict:
    """Safe YAML load that rejects duplicated keys."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_UniqueKeyLoader) or {}


def load_hyperparams(algo: str, reward: str, path: str | Path | None = None) -> dict:
    """The ``default`` entry of ``rl/hyperparams/<algo>.yml``, overridden by the entry named ``reward``.

    Args:
        algo: ``sac``, ``ppo`` or ``td3``.
        reward: reward registry name (an entry of that name, when present, overrides ``default``).
        path: another YAML file with the same structure.
    """
    path = Path(path) if path else HYPERPARAMS_DIR / f"{algo}.yml"
    if not path.is_file():
        raise FileNotFoundError(f"no hyperparameter file {path}")
    table = load_yaml(path)
    if "default" not in table:
        raise ValueError(f"{path} has no 'default' entry")
    return _merge(table["default"], table.get(reward, {}))


def parse_overrides(items: list[str] | None) -> dict:
    """``["algo_kwargs.batch_size=64", "env.crop=[96,96]"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--hyperparams expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def merge_config(base: dict, override: dict) -> dict:
    """Recursive dict merge (``override`` wins)."""
    return _merge(base, override)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else is returned unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def dump_json(path: str | Path, obj: Any) -> None:
    """Atomic, indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
