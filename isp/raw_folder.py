"""Any folder of camera RAW files as a dataset: listing, a stable split, expert pairing.

A RAW folder is listed recursively; every file whose extension (case-insensitive) is one LibRaw
reads (:data:`RAW_EXTENSIONS`) is a candidate, in the order of its path relative to the root.
Each candidate is decoded once with :func:`isp.read_raw`; a file that fails (truncated, a JPEG
named ``.nef``, empty, unreadable, a folder named ``x.dng``) is reported by name with the
decoder's reason, once per process, and skipped.

The split is a seeded hash of each file's relative path: a file is in ``test`` when
``sha1(f"{seed}:{relative path}")`` falls in the lowest :data:`TEST_FRACTION` of its range. A
file's subset therefore never changes when other files are added or removed (except in a folder
so small that one subset would be empty: then the file whose hash is nearest moves over).

Expert renderings (optional) live in a second folder and pair with a RAW by file stem: first the
same relative path with the stem (``expert/day1/IMG_1.tif`` for ``raws/day1/IMG_1.CR2``), else a
file anywhere in the expert folder with that stem when exactly one has it. Expert files are
``.tif``/``.tiff``/``.png``/``.jpg``/``.jpeg``; their colour space is decided per file by
:func:`expert_colour_space` (an embedded ICC profile's name when it names sRGB or ProPhoto/ROMM,
else 16-bit samples mean ProPhoto RGB, the MIT-Adobe-5K convention, and 8-bit samples mean sRGB).

Example:
    >>> split = load_split("/data/my_raws", expert_dir="/data/my_edits")  # doctest: +SKIP
    >>> split["test"][0].dng, split["test"][0].expert_c  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from .fivek import FiveKEntry
from .raw import RawError, read_raw

__all__ = [
    "RAW_EXTENSIONS",
    "EXPERT_EXTENSIONS",
    "TEST_FRACTION",
    "Split",
    "list_raw_files",
    "hash_subset",
    "pair_experts",
    "expert_colour_space",
    "load_split",
]

#: File extensions (lower case) of the RAW formats LibRaw decodes.
RAW_EXTENSIONS = frozenset({
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".rwl", ".raw",
    ".pef", ".ptx", ".raf", ".srw", ".3fr", ".fff", ".iiq", ".mos", ".mef", ".mrw", ".erf", ".kdc", ".dcr",
    ".x3f", ".gpr", ".bay", ".cap",
})
#: File extensions (lower case) of expert renderings.
EXPERT_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
#: Share of the files in the ``test`` subset (in expectation).
TEST_FRACTION = 0.25

_REPORTED: set[str] = set()


class Split(dict):
    """``{"train": [...], "test": [...]}`` plus the files that were skipped.

    Attributes:
        skipped: ``(path, reason)`` of every unreadable RAW file, in listing order.
    """

    def __init__(self, train, test, skipped=()):
        super().__init__(train=list(train), test=list(test))
        self.skipped: list[tuple[Path, str]] = list(skipped)


def list_raw_files(root: str | os.PathLike) -> list[Path]:
    """Every path under ``root`` with a RAW extension (files and anything else so named), sorted
    by relative path; hidden files and folders (name starting with ``.``) are left out.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"RAW folder {str(root)!r} does not exist or is not a folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames + [d for d in dirnames if Path(d).suffix.lower() in RAW_EXTENSIONS]:
            if not name.startswith(".") and Path(name).suffix.lower() in RAW_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _hash_value(relative_path: str, seed: int) -> float:
    digest = hashlib.sha1(f"{int(seed)}:{relative_path}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_subset(relative_path: str, seed: int = 0, test_fraction: float = TEST_FRACTION) -> str:
    """``"test"`` or ``"train"`` for a file, from a seeded SHA-1 of its relative path (POSIX form)."""
    return "test" if _hash_value(relative_path, seed) < test_fraction else "train"


def _entry_id(rel: str) -> str:
    """A file's id: its relative path with folder separators as ``__`` (ids contain no ``/``)."""
    return rel.replace("/", "__")


def pair_experts(raws: list[Path], root: Path, expert_dir: str | os.PathLike) -> dict[Path, Path]:
    """Expert rendering of each RAW (see the module docstring); RAWs without one are left out.

    Raises:
        FileNotFoundError: ``expert_dir`` is not a folder.
    """
    expert_dir = Path(expert_dir).expanduser()
    if not expert_dir.is_dir():
        raise FileNotFoundError(f"expert folder {str(expert_dir)!r} does not exist or is not a folder")
    by_rel: dict[str, Path] = {}
    by_stem: dict[str, list[Path]] = {}
    rank = {e: i for i, e in enumerate(EXPERT_EXTENSIONS)}
    files = sorted((p for p in expert_dir.rglob("*") if p.is_file() and p.suffix.lower() in rank),
                   key=lambda p: (p.relative_to(expert_dir).with_suffix("").as_posix().lower(), rank[p.suffix.lower()]))
    for p in files:
        by_rel.setdefault(p.relative_to(expert_dir).with_suffix("").as_posix().lower(), p)
        by_stem.setdefault(p.stem.lower(), []).append(p)
    out = {}
    for raw in raws:
        rel = raw.relative_to(root).with_suffix("").as_posix().lower()
        hit = by_rel.get(rel)
        if hit is None and len(by_stem.get(raw.stem.lower(), [])) == 1:
            hit = by_stem[raw.stem.lower()][0]
        if hit is not None:
            out[raw] = hit
    return out


def expert_colour_space(path: str | os.PathLike) -> str:
    """``"prophoto"`` or ``"srgb"``: an embedded ICC profile naming either decides; otherwise
    16-bit samples mean ProPhoto RGB (MIT-Adobe-5K's exports) and 8-bit samples sRGB."""
    from PIL import Image, ImageCms

    path = Path(path)
    icc, bits16 = None, False
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            bits16 = page.dtype is not None and np.dtype(page.dtype).itemsize >= 2
            if 34675 in page.tags:
                icc = bytes(page.tags[34675].value)
    else:
        with Image.open(path) as im:
            icc = im.info.get("icc_profile")
            bits16 = im.mode in ("I;16", "I;16B", "I", "RGB;16") or "16" in im.mode
    if icc:
        import io

        try:
            name = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).lower()
        except Exception:  # an unreadable profile: fall back to the bit depth
            name = ""
        if "prophoto" in name or "romm" in name:
            return "prophoto"
        if "srgb" in name:
            return "srgb"
    return "prophoto" if bits16 else "srgb"


_VERDICTS: dict[tuple[str, int, int], str | None] = {}


def _check(path: Path) -> str | None:
    """Why ``path`` cannot be used (the decoder's message), or None when it decodes.

    Each file is decoded once per process (the verdict is kept by path, size and mtime), so the
    train and test splits of one run do not decode the same files twice.
    """
    try:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _VERDICTS:
        return _VERDICTS[key]
    verdict = _check_uncached(path)
    if key is not None:
        _VERDICTS[key] = verdict
    return verdict


def _check_uncached(path: Path) -> str | None:
    if path.is_dir():
        return f"{path}: is a folder, not a RAW file"
    if path.is_file() and not os.access(path, os.R_OK):
        return f"{path}: permission denied"
    try:
        read_raw(path)
    except RawError as exc:
        return str(exc)
    except OSError as exc:  # permission denied and other I/O failures before LibRaw sees the file
        return f"{path}: cannot be read ({exc.strerror or exc})"
    return None


def load_split(root: str | os.PathLike, split: str = "auto", seed: int = 0, expert_dir: str | os.PathLike | None = None,
               *, validate: bool = True, quiet: bool = False) -> Split:
    """Split a folder of RAW files into ``train`` and ``test``.

    Args:
        root: the folder (searched recursively).
        split: ``"auto"`` (the seeded hash split); no other split is defined for a RAW folder.
        seed: seed of the hash.
        expert_dir: optional folder of expert renderings, paired by stem.
        validate: decode every file once and skip (and report) those that fail.
        quiet: do not print the skipped files (they are in ``Split.skipped`` either way).

    Returns:
        A :class:`Split`; each entry has ``id`` (the relative path, ``/`` as ``__``), ``name`` (the
        stem), ``dng`` (the RAW file, whatever its format), ``expert_c`` (or None), ``scene`` (= id),
        ``condition`` ``"as_shot"`` and ``meta`` (``relative_path``, ``format``, ``expert_space``).

    Raises:
        FileNotFoundError: ``root`` or ``expert_dir`` is not a folder, or it holds no RAW file.
        ValueError: an unknown ``split`` or fewer than two usable files.
    """
    if split != "auto":
        raise ValueError(f"split {split!r}: a plain RAW folder has only the 'auto' (hashed) split")
    root = Path(root).expanduser()
    files = list_raw_files(root)
    if not files:
        raise FileNotFoundError(f"no RAW files ({', '.join(sorted(RAW_EXTENSIONS))}) under {str(root)!r}")
    skipped: list[tuple[Path, str]] = []
    usable = []
    for p in files:
        reason = _check(p) if validate else None
        if reason is None:
            usable.append(p)
        else:
            skipped.append((p, reason))
    if skipped and not quiet:
        fresh = [(p, r) for p, r in skipped if str(p) not in _REPORTED]
        for p, r in fresh:
            _REPORTED.add(str(p))
            print(f"[isp] skipped unreadable RAW file: {r}", file=sys.stderr)
    if len(usable) < 2:
        raise ValueError(f"RAW folder {str(root)!r} has {len(usable)} usable RAW file(s) of {len(files)}; "
                         "need at least 2 (one to train on, one to test)")
    experts = pair_experts(usable, root, expert_dir) if expert_dir is not None else {}
    rels = [p.relative_to(root).as_posix() for p in usable]
    subset = {rel: hash_subset(rel, seed) for rel in rels}
    # A small folder can hash entirely to one side: then the file nearest the threshold moves
    # over (the only case in which a file's subset depends on the others).
    for side, pick in (("test", min), ("train", max)):
        if side not in subset.values():
            subset[pick(rels, key=lambda r: _hash_value(r, seed))] = side
    subsets: dict[str, list[FiveKEntry]] = {"train": [], "test": []}
    for p, rel in zip(usable, rels):
        exp = experts.get(p)
        meta = {"relative_path": rel, "format": p.suffix.lower().lstrip("."),
                "expert_space": expert_colour_space(exp) if exp is not None else ""}
        subsets[subset[rel]].append(FiveKEntry(id=_entry_id(rel), name=p.stem, dng=p, expert_c=exp, meta=meta))
    return Split(subsets["train"], subsets["test"], skipped)
