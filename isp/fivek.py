"""MIT-Adobe-5K (FiveK): index a dataset root, load train/test splits, cache decoded previews.

The official layout, which the sample set (:mod:`isp.sample_data`) reproduces::

    ROOT/raw_photos/HQa1to700/photos/a0001-jmac_DSC1459.dng
    ROOT/raw_photos/HQa701to1400/photos/a0701-....dng
    ...
    ROOT/tiff16_c/a0001-jmac_DSC1459.tif      (Expert C, 16-bit ProPhoto RGB)
    ROOT/splits/test500.txt                    (written by experiments/prepare_fivek.py)

RAW files and expert exports are paired by their ``aNNNN`` id (never by directory order), and
every list this module returns is sorted by id.

Example:
    >>> from isp import fivek
    >>> entries = fivek.index(root)                        # doctest: +SKIP
    >>> split = fivek.load_split(root)                     # doctest: +SKIP
    >>> raw = fivek.cached_preview(split["train"][0].dng, max_side=512)  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "FiveKEntry",
    "ScanResult",
    "scan",
    "index",
    "load_split",
    "read_split_file",
    "write_split_file",
    "cached_preview",
    "preview_cache_path",
    "cache_root",
    "NUM_FIVEK_IMAGES",
    "OFFICIAL_TEST_IDS",
]

#: Number of images in the full MIT-Adobe-5K dataset.
NUM_FIVEK_IMAGES = 5000
#: The usual test split: the last 500 images, a4501 to a5000.
OFFICIAL_TEST_IDS = tuple(f"a{i:04d}" for i in range(4501, 5001))

_ID_RE = re.compile(r"^(a\d{4})(?:-(.*))?$", re.IGNORECASE)
_DNG_SUFFIXES = {".dng"}
_TIFF_SUFFIXES = {".tif", ".tiff"}
_SUBSETS = ("train", "test")


@dataclass(frozen=True)
class FiveKEntry:
    """One image of MIT-Adobe-5K.

    Attributes:
        id: The ``aNNNN`` id (lower case), e.g. ``"a0001"``.
        name: The RAW file's stem, e.g. ``"a0001-jmac_DSC1459"``.
        dng: Path of the camera RAW file (a DNG in MIT-Adobe-5K; any LibRaw format in a RAW folder).
        expert_c: Path of Expert C's 16-bit ProPhoto TIFF (or the folder's expert rendering), or
            ``None`` when absent.
        scene: What was photographed; captures of one scene are never split between train and
            test. Defaults to ``id`` (every photograph its own scene).
        condition: The capture condition (the sample set's ``conditions.csv``); ``"as_shot"``
            (the file as the camera recorded it) for real data.
        meta: Further per-image fields as strings (the sample set's ``conditions.csv`` row);
            ignored by equality.
    """

    id: str
    name: str
    dng: Path
    expert_c: Path | None
    scene: str = ""
    condition: str = "as_shot"
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.scene:
            object.__setattr__(self, "scene", self.id)


@dataclass
class ScanResult:
    """What :func:`scan` found under a root (problems are listed, not raised).

    Attributes:
        root: The dataset root.
        entries: Paired entries sorted by id (``expert_c`` is ``None`` where the TIFF is missing).
        orphan_tiffs: Expert TIFFs whose id has no DNG.
        bad_names: Files in the RAW or expert folders whose names do not follow ``aNNNN-*.ext``.
        duplicates: ids that occur more than once (``{id: [paths]}``); the first path by name wins.
        name_mismatches: ``(id, dng_stem, tiff_stem)`` where the id pairs but the rest differs.
    """

    root: Path
    entries: list[FiveKEntry] = field(default_factory=list)
    orphan_tiffs: list[Path] = field(default_factory=list)
    bad_names: list[Path] = field(default_factory=list)
    duplicates: dict[str, list[Path]] = field(default_factory=dict)
    name_mismatches: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def missing_expert(self) -> list[FiveKEntry]:
        """Entries that have a DNG but no Expert C TIFF."""
        return [e for e in self.entries if e.expert_c is None]


def cache_root() -> Path:
    """The project's cache folder: ``$RLISP_CACHE`` or ``~/.cache/rl-isp``."""
    env = os.environ.get("RLISP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rl-isp"


def _split_id(path: Path) -> str | None:
    m = _ID_RE.match(path.stem)
    return m.group(1).lower() if m else None


def _collect(files: list[Path], result: ScanResult) -> dict[str, Path]:
    """Maps id -> path for ``files`` (sorted by name), recording bad names and duplicates."""
    by_id: dict[str, Path] = {}
    for path in sorted(files, key=lambda p: (p.name, str(p))):
        file_id = _split_id(path)
        if file_id is None:
            result.bad_names.append(path)
            continue
        if file_id in by_id:
            result.duplicates.setdefault(file_id, [by_id[file_id]]).append(path)
            continue
        by_id[file_id] = path
    return by_id


def scan(root: str | os.PathLike) -> ScanResult:
    """Scans a root in the MIT-Adobe-5K layout and reports every anomaly instead of raising.

    Args:
        root: Dataset root holding ``raw_photos/`` (and usually ``tiff16_c/``).

    Returns:
        A :class:`ScanResult`; ``entries`` is sorted by id.

    Raises:
        FileNotFoundError: ``root`` or ``root/raw_photos`` does not exist.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"MIT-Adobe-5K root {str(root)!r} does not exist or is not a folder")
    raw_dir = root / "raw_photos"
    if not raw_dir.is_dir():
        raise FileNotFoundError(
            f"{str(root)!r} is not an MIT-Adobe-5K root: expected RAW files in "
            f"{str(raw_dir)!r}/HQa*to*/photos/aNNNN-*.dng"
        )
    result = ScanResult(root=root)
    dngs: list[Path] = []
    for group in sorted(raw_dir.glob("HQa*to*")):
        photos = group / "photos"
        if not photos.is_dir():
            continue
        for path in photos.iterdir():
            if path.is_file() and path.suffix.lower() in _DNG_SUFFIXES:
                dngs.append(path)
            elif path.is_file() and not path.name.startswith("."):
                result.bad_names.append(path)
    tiffs: list[Path] = []
    expert_dir = root / "tiff16_c"
    if expert_dir.is_dir():
        for path in expert_dir.iterdir():
            if path.is_file() and path.suffix.lower() in _TIFF_SUFFIXES:
                tiffs.append(path)
            elif path.is_file() and not path.name.startswith("."):
                result.bad_names.append(path)
    dng_by_id = _collect(dngs, result)
    tiff_by_id = _collect(tiffs, result)
    for file_id in sorted(dng_by_id):
        dng = dng_by_id[file_id]
        tiff = tiff_by_id.get(file_id)
        if tiff is not None and tiff.stem.lower() != dng.stem.lower():
            result.name_mismatches.append((file_id, dng.stem, tiff.stem))
        result.entries.append(FiveKEntry(id=file_id, name=dng.stem, dng=dng, expert_c=tiff))
    result.orphan_tiffs = [tiff_by_id[i] for i in sorted(tiff_by_id) if i not in dng_by_id]
    result.bad_names.sort()
    return result


def index(root: str | os.PathLike) -> list[FiveKEntry]:
    """Lists the images of an MIT-Adobe-5K root, RAW and Expert C paired by id.

    Args:
        root: Dataset root.

    Returns:
        Entries sorted by id.

    Raises:
        FileNotFoundError: The root is not in the MIT-Adobe-5K layout or holds no DNG.
    """
    result = scan(root)
    if not result.entries:
        raise FileNotFoundError(
            f"no RAW files named aNNNN-*.dng under {str(Path(root) / 'raw_photos')!r}/HQa*to*/photos; "
            "is this an MIT-Adobe-5K root?"
        )
    return result.entries


def read_split_file(path: str | os.PathLike) -> dict[str, list[str]]:
    """Reads a split file.

    Format: one image per line, ``<id> <subset>`` with subset ``train`` or ``test``
    (whitespace separated); a line with only an id means ``test``; ``#`` starts a comment.

    Returns:
        ``{"train": [...ids], "test": [...ids]}`` in file order (ids lower case); an id-only
        file gives an empty ``train`` list, meaning "everything else".

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: A malformed line, an unknown subset or an id listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file {str(path)!r} does not exist")
    out: dict[str, list[str]] = {"train": [], "test": []}
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2 or not re.fullmatch(r"a\d{4}", parts[0], re.IGNORECASE):
            raise ValueError(f"{path}:{lineno}: expected '<aNNNN id> [train|test]', got {line!r}")
        subset = parts[1].lower() if len(parts) == 2 else "test"
        if subset not in _SUBSETS:
            raise ValueError(f"{path}:{lineno}: unknown subset {parts[1]!r} (use train or test)")
        file_id = parts[0].lower()
        if file_id in seen:
            raise ValueError(f"{path}:{lineno}: id {file_id} is listed twice")
        seen.add(file_id)
        out[subset].append(file_id)
    return out


def write_split_file(path: str | os.PathLike, train: list[str], test: list[str], comment: str = "") -> Path:
    """Writes a split file (``<id> <subset>`` per line, sorted by id), atomically.

    Args:
        path: Destination (``root/splits/<name>.txt``).
        train: Training ids.
        test: Test ids.
        comment: Optional header text, written as ``#`` comment lines.

    Returns:
        The path written.
    """
    path = Path(path)
    overlap = set(train) & set(test)
    if overlap:
        raise ValueError(f"ids in both train and test: {sorted(overlap)[:5]}")
    lines = [f"# {c}" for c in comment.splitlines()] if comment else []
    subset_of = {i: "train" for i in train} | {i: "test" for i in test}
    lines += [f"{i} {subset_of[i]}" for i in sorted(subset_of)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _auto_test_ids(ids: list[str]) -> set[str]:
    if len(ids) >= NUM_FIVEK_IMAGES and set(OFFICIAL_TEST_IDS) <= set(ids):
        return set(OFFICIAL_TEST_IDS)
    n_test = max(1, len(ids) // 4)
    return set(ids[-n_test:])


def load_split(root: str | os.PathLike, split: str = "auto", seed: int = 0) -> dict[str, list[FiveKEntry]]:
    """Splits the images of a root into ``train`` and ``test``.

    Args:
        root: Dataset root.
        split: ``"auto"``: the ``subset`` column of ``root/conditions.csv`` when the root has one
            (the sample set, split by scene), else a4501-a5000 as test when the root has all
            5,000 images, else the last 25 % by id (at least one image); ``"random"``: a seeded
            random 25 % as test, drawn by whole scenes; any
            other name reads ``root/splits/<split>.txt`` (see :func:`read_split_file`) or, if
            ``split`` is a path to an existing file, that file.
        seed: Seed of the ``"random"`` split (the other splits are fixed).

    Returns:
        ``{"train": [...], "test": [...]}``, each sorted by id.

    Raises:
        FileNotFoundError: Not an MIT-Adobe-5K root, or the named split file does not exist.
        ValueError: The split file names ids that the root does not have, or ``conditions.csv``
            lacks an image of the root.
    """
    entries = _with_conditions(root, index(root))
    by_id = {e.id: e for e in entries}
    ids = [e.id for e in entries]
    if split == "auto" and any(e.meta.get("subset") for e in entries):
        test = {e.id for e in entries if e.meta["subset"] == "test"}
        train = set(ids) - test
    elif split == "auto":
        test = _auto_test_ids(ids)
        train = set(ids) - test
    elif split == "random":
        # whole scenes are drawn (each FiveK photo is its own scene) until a quarter of the images
        rng = random.Random(seed)
        scenes = list(dict.fromkeys(e.scene for e in entries))
        rng.shuffle(scenes)
        test, n_test = set(), max(1, len(ids) // 4)
        for sc in scenes:
            if len(test) >= n_test:
                break
            test |= {e.id for e in entries if e.scene == sc}
        train = set(ids) - test
    else:
        path = Path(split)
        if not (path.suffix == ".txt" and path.is_file()):
            path = Path(root) / "splits" / f"{split}.txt"
            if not path.is_file():
                raise FileNotFoundError(
                    f"split {split!r}: {str(path)!r} does not exist; write it with "
                    f"`python experiments/prepare_fivek.py {root}` or use split='auto'"
                )
        lists = read_split_file(path)
        unknown = [i for i in lists["train"] + lists["test"] if i not in by_id]
        if unknown:
            raise ValueError(
                f"split file {str(path)!r} lists {len(unknown)} id(s) that {str(root)!r} does not have, "
                f"e.g. {unknown[:5]}"
            )
        test = set(lists["test"])
        train = set(lists["train"]) if lists["train"] else set(ids) - test
    return {
        "train": [by_id[i] for i in sorted(train)],
        "test": [by_id[i] for i in sorted(test)],
    }


def _with_conditions(root: str | os.PathLike, entries: list[FiveKEntry]) -> list[FiveKEntry]:
    """Entries with ``scene``, ``condition`` and ``meta`` from ``root/conditions.csv`` when it exists."""
    from .sample_data import read_conditions  # local import: sample_data is heavier and optional

    rows = read_conditions(root)
    if not rows:
        return entries
    missing = [e.id for e in entries if e.id not in rows]
    if missing:
        raise ValueError(f"{Path(root) / 'conditions.csv'} has no row for {len(missing)} image(s) of the root, "
                         f"e.g. {missing[:5]}; regenerate the set or remove the file")
    return [dataclasses.replace(e, scene=rows[e.id]["scene"], condition=rows[e.id]["condition"], meta=dict(rows[e.id]))
            for e in entries]


def preview_cache_path(dng_path: str | os.PathLike, max_side: int | None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`cached_preview` keeps the preview of ``dng_path`` (keyed by path, size, mtime, max_side)."""
    dng_path = Path(dng_path).expanduser().resolve()
    st = dng_path.stat()
    key = f"{dng_path}|{st.st_size}|{st.st_mtime_ns}|{max_side}"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "previews"
    side = "full" if max_side is None else str(int(max_side))
    return folder / f"{dng_path.stem}-{side}-{digest}.npz"


def cached_preview(dng_path: str | os.PathLike, max_side: int | None, cache_dir: str | os.PathLike | None = None):
    """Decodes a RAW file once and keeps a downscaled copy as an npz in the cache.

    Args:
        dng_path: RAW file (any file :func:`isp.read_raw` opens).
        max_side: Longest side of the preview in pixels (Bayer-aware downscale,
            :meth:`isp.RawImage.preview`); ``None`` keeps the full resolution.
        cache_dir: Folder for the npz files; default ``<cache>/previews``.

    Returns:
        isp.RawImage: The preview, with ``path`` pointing at the original RAW file.

    Raises:
        isp.RawError: The RAW file is missing, not a RAW or corrupt.
    """
    import isp  # local import: isp/__init__ may import this module

    dng_path = Path(dng_path)
    if not dng_path.is_file():
        # Let read_raw produce the package's uniform error message.
        return isp.read_raw(dng_path)
    target = preview_cache_path(dng_path, max_side, cache_dir)
    raw = None
    if target.is_file():
        try:
            raw = isp.RawImage.load(target)
        except Exception:  # a damaged cache entry is rebuilt, never fatal
            raw = None
    if raw is None:
        raw = isp.read_raw(dng_path)
        if max_side is not None:
            raw = raw.preview(int(max_side))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npz")
        try:
            raw.save(tmp)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
    if any(f.name == "path" for f in dataclasses.fields(raw)) and raw.path != str(dng_path):
        raw = dataclasses.replace(raw, path=str(dng_path))
    return raw
