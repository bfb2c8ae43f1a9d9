"""Atomic file writes for isp: write to a temporary sibling, then rename it over the target."""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path next to ``path`` that replaces ``path`` when the block succeeds.

    Readers never see a half-written file: the block writes the temporary file, which is then
    renamed over ``path`` (``os.replace``, atomic on one file system). If the block raises, the
    temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write.
        suffix: extension of the temporary file (default ``path``'s own), for writers that pick
            the format from it or append one (``np.savez`` adds ``.npz`` unless present).

    Yields:
        The temporary path, a hidden file in the same folder, unique per process and call.

    Example:
        >>> with atomic_path(folder / "split.txt") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("a0001 train\\n")
    """
    path = Path(path)
    ext = path.suffix if suffix is None else suffix
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
