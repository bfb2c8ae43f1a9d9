"""One entry point for every dataset layout ``--data`` accepts.

* **MIT-Adobe-5K** (``raw_photos/HQa*to*/photos/aNNNN-*.dng`` + ``tiff16_c/``): :mod:`isp.fivek`,
  with its official split (a4501-a5000) when all 5,000 images are there.
* **The sample set** (the same layout plus ``conditions.csv``): :mod:`isp.fivek`, split by scene
  through the file's ``subset`` column.
* **Any folder of RAW files**: :mod:`isp.raw_folder` (hashed split, optional expert folder).

Example:
    >>> from isp import datasets
    >>> datasets.detect_layout(root)  # doctest: +SKIP
    'sample'
    >>> split = datasets.load_split(root)  # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

from . import fivek, raw_folder

__all__ = ["detect_layout", "load_split", "LAYOUTS"]

#: The layouts :func:`detect_layout` tells apart.
LAYOUTS = ("fivek", "sample", "raw_folder")


def detect_layout(root: str | os.PathLike) -> str:
    """``"sample"`` (FiveK layout with ``conditions.csv``), ``"fivek"`` (a ``raw_photos`` folder)
    or ``"raw_folder"`` (anything else).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist or is not a folder")
    if (root / "raw_photos").is_dir():
        return "sample" if (root / "conditions.csv").is_file() else "fivek"
    return "raw_folder"


def load_split(root: str | os.PathLike, split: str = "auto", seed: int = 0,
               expert_dir: str | os.PathLike | None = None) -> dict[str, list[fivek.FiveKEntry]]:
    """Train and test entries of any supported dataset folder.

    Args:
        root: an MIT-Adobe-5K root, a sample-set root or any folder of RAW files.
        split: ``"auto"`` (the layout's default split) or, for the FiveK layouts, any split
            :func:`isp.fivek.load_split` knows (``"random"``, a split-file name or path).
        seed: split seed (the ``"random"`` split, or the hash of a RAW folder).
        expert_dir: expert renderings for a RAW folder (paired by stem); the FiveK layouts have
            their own (``tiff16_c``).

    Returns:
        ``{"train": [...], "test": [...]}`` of :class:`isp.fivek.FiveKEntry` (``id``, ``name``,
        ``dng``, ``expert_c``, ``scene``, ``condition``, ``meta``); for a RAW folder an
        :class:`isp.raw_folder.Split` whose ``skipped`` lists the unreadable files.

    Raises:
        FileNotFoundError: ``root`` is not a folder or holds no RAW file.
        ValueError: too few usable files, a bad split file, or ``expert_dir`` with a FiveK root.
    """
    layout = detect_layout(root)
    if layout == "raw_folder":
        return raw_folder.load_split(root, split=split, seed=seed, expert_dir=expert_dir)
    if expert_dir is not None:
        raise ValueError(f"{str(root)!r} is in the MIT-Adobe-5K layout, whose expert renderings are in tiff16_c/; "
                         "expert_dir is for plain RAW folders")
    return fivek.load_split(root, split=split, seed=seed)
