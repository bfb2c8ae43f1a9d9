"""Where attiqa's generated files live and how they are written.

* :func:`cache_root`: ``$RLISP_CACHE`` or ``~/.cache/rl-isp`` (the starter model goes to
  ``<cache>/attiqa/``).
* :func:`atomic_write`: every file a command writes is written to a temporary file in the
  same folder and moved into place with ``os.replace``, so a reader never sees half a file;
  :func:`atomic_write_text` and :func:`atomic_torch_save` are the two common cases.
* :func:`read_json`: a JSON file read with one clear error for a missing or malformed file.
* :func:`file_lock`: an inter-process lock (``filelock.FileLock``) for one-time builds that
  several processes may start at once.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["cache_root", "atomic_write", "atomic_write_text", "atomic_torch_save", "file_lock", "load_tensor_file",
           "read_json"]


def cache_root() -> Path:
    """``$RLISP_CACHE`` or ``~/.cache/rl-isp``."""
    return Path(os.environ.get("RLISP_CACHE") or Path.home() / ".cache" / "rl-isp")


@contextlib.contextmanager
def atomic_write(path, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; on success it replaces ``path`` atomically.

    Args:
        path: the final file (its folder is created).
        suffix: suffix of the temporary file (default: ``".tmp"`` + ``path``'s own suffix, so
            writers that pick the format from the suffix, e.g. ``openpyxl``, keep working).

    Example:
        >>> with atomic_write("out/table.csv") as tmp:   # doctest: +SKIP
        ...     tmp.write_text("a,b\\n")

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix if suffix is None else suffix,
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Writes ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def atomic_torch_save(obj, path) -> Path:
    """``torch.save`` of ``obj`` to ``path`` atomically, flushed to disk before the rename."""
    import torch

    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def load_tensor_file(path, map_location="cpu", what: str = "tensor file"):
    """``torch.load(path, weights_only=True)``; any failure is an
    :class:`~rlisp_common.exit_codes.InputError` of ``path`` with its own exit code: 4 permission
    denied, 6 pickled objects (refused, nothing of them ran), 5 anything else torch trips over
    (corrupt, truncated, not a torch file). ``what`` names the file in the message."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated, pickled code, permission: one message, its own code
        from rlisp_common.exit_codes import EXIT_BAD_INPUT, InputError, describe

        code, cause = describe(exc, path)
        if code <= 1 or code == EXIT_BAD_INPUT:  # whatever torch.load tripped over in foreign bytes
            code, cause = EXIT_BAD_INPUT, f"corrupt or not a torch file ({cause})"
        raise InputError(f"not a readable {what}: {cause}", code, path=path) from None


def read_json(path, what: str = "JSON file"):
    """The parsed JSON of ``path``.

    Raises:
        FileNotFoundError: ``{what} not found: {path}`` (also for a folder).
        ValueError: ``{path}: not a valid {what} (...)``: malformed JSON or not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a valid {what} ({exc})") from None


def file_lock(path, timeout: float = -1):
    """An inter-process lock on ``path`` (a ``filelock.FileLock``; use it as a context manager).

    Args:
        path: the lock file (created; its folder too).
        timeout: seconds to wait; ``-1`` waits for ever.
    """
    from filelock import FileLock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), timeout=timeout)
