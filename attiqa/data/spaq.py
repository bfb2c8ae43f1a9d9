"""SPAQ annotations: MOS and the five human attribute scores of every image.

SPAQ (Fang et al., "Perceptual Quality Assessment of Smartphone Photography", CVPR 2020) ships
11,125 photographs in ``TestImage/`` and one spreadsheet,
``Annotations/MOS and Image attribute scores.xlsx``, with the columns

==================  ================================================================
column              meaning
==================  ================================================================
``Image name``      file name inside ``TestImage/`` (e.g. ``00001.jpg``)
``MOS``             mean opinion score of overall quality, 0-100
``Brightness``      human rating of the attribute, 0-100
``Colorfulness``    human rating, 0-100
``Contrast``        human rating, 0-100
``Noisiness``       human rating, 0-100
``Sharpness``       human rating, 0-100
==================  ================================================================

All five ratings are read so that higher means more of the good pole (the convention of
:data:`attiqa.ATTRIBUTES` and of every teacher); for ``Noisiness`` the raters scored how free of
noise the photo looks (higher = cleaner), which is also the direction in which it correlates
positively with the MOS. ``noisiness_higher_is_noisier=True`` flips it should a copy of the file
use the opposite convention.

A CSV export of the same sheet (same header, any of ``,``/``;``/tab) is accepted as well, so the
loader also runs where ``openpyxl`` is not installed. Reading ``.xlsx`` needs ``openpyxl``.

Example:
    >>> table = load_spaq_annotations("/data/SPAQ")             # doctest: +SKIP
    >>> table["image"][:2], table["attributes"].shape            # doctest: +SKIP
    (['00001.jpg', '00002.jpg'], (11125, 5))
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from attiqa.attributes import ATTRIBUTES
from attiqa.utils.files import atomic_write

__all__ = ["ANNOTATION_FILE", "SPAQ_COLUMNS", "find_annotation_file", "load_spaq_annotations",
           "write_spaq_miniature"]

ANNOTATION_FILE = Path("Annotations") / "MOS and Image attribute scores.xlsx"

# attribute of attiqa.ATTRIBUTES -> column header in SPAQ's sheet
SPAQ_COLUMNS: dict[str, str] = {
    "sharpness": "Sharpness",
    "contrast": "Contrast",
    "brightness": "Brightness",
    "colorfulness": "Colorfulness",
    "noisiness": "Noisiness",
}
_NAME_COLUMN = "Image name"
_MOS_COLUMN = "MOS"


def find_annotation_file(root) -> Path:
    """Locates the annotation file under a SPAQ root (or accepts the file itself).

    Looks for ``Annotations/MOS and Image attribute scores.xlsx``, then a ``.csv`` with the same
    stem next to it or in ``root``.

    Raises:
        FileNotFoundError: none of them exists.
    """
    root = Path(root)
    if root.is_file():
        return root
    stem = ANNOTATION_FILE.stem
    candidates = [root / ANNOTATION_FILE, root / ANNOTATION_FILE.with_suffix(".csv"),
                  root / f"{stem}.xlsx", root / f"{stem}.csv"]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"SPAQ annotation file not found under {root}: expected '{ANNOTATION_FILE}' "
                            "(or a CSV export with the same name)")


def _norm(header: str) -> str:
    return " ".join(str(header).replace("\ufeff", "").split()).lower()


def _read_rows_xlsx(path: Path) -> list[list]:
    try:
        import openpyxl
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ValueError(f"{path}: reading .xlsx needs the 'openpyxl' package (pip install openpyxl), "
                         "or pass a CSV export of the sheet") from exc
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile/KeyError/InvalidFileException on corrupt files
        raise ValueError(f"{path}: not a readable .xlsx spreadsheet ({type(exc).__name__}: {exc})") from None
    try:
        ws = wb.worksheets[0]
        return [list(r) for r in ws.iter_rows(values_only=True)]
    finally:
        wb.close()


def _read_rows_csv(path: Path) -> list[list]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        text = f.read()
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else "", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return [row for row in csv.reader(text.splitlines(), dialect)]


def load_spaq_annotations(root, noisiness_higher_is_noisier: bool = False) -> dict:
    """Reads SPAQ's MOS and attribute annotations.

    Args:
        root: the SPAQ folder (holding ``Annotations/``), or the ``.xlsx``/``.csv`` file itself.
        noisiness_higher_is_noisier: flip the ``Noisiness`` column (see the module docstring).

    Returns:
        ``{"image": list[str] (file names, sheet order), "mos": (N,) float64 in 0-100,
        "attributes": (N, 5) float64 in the order of :data:`attiqa.ATTRIBUTES`, higher = better pole,
        "path": Path of the file read}``.

    Raises:
        FileNotFoundError: no annotation file.
        ValueError: unreadable file, missing columns, non-numeric or non-finite values, no rows,
            duplicate image names.
    """
    path = find_annotation_file(root)
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        rows = _read_rows_xlsx(path)
    elif suffix in (".csv", ".txt", ".tsv"):
        rows = _read_rows_csv(path)
    else:
        raise ValueError(f"{path}: unsupported annotation file type {suffix!r} (expected .xlsx or .csv)")
    rows = [r for r in rows if r is not None and any(v not in (None, "") for v in r)]
    if not rows:
        raise ValueError(f"{path}: the annotation file is empty")
    header = [_norm(h) if h is not None else "" for h in rows[0]]
    wanted = {"image": _NAME_COLUMN, "mos": _MOS_COLUMN, **SPAQ_COLUMNS}
    index = {}
    for key, col in wanted.items():
        if _norm(col) not in header:
            raise ValueError(f"{path}: missing column {col!r}; found {[h for h in rows[0]]} "
                             f"(SPAQ's sheet has {[_NAME_COLUMN, _MOS_COLUMN, *SPAQ_COLUMNS.values()]})")
        index[key] = header.index(_norm(col))
    names, values = [], []
    for line, r in enumerate(rows[1:], start=2):
        r = list(r) + [None] * (len(header) - len(r))
        name = r[index["image"]]
        if name in (None, ""):
            continue
        names.append(str(name).strip())
        try:
            values.append([float(r[index[k]]) for k in ("mos", *ATTRIBUTES)])
        except (TypeError, ValueError):
            raise ValueError(f"{path}: row {line} ({name}) has a missing or non-numeric score: "
                             f"{[r[index[k]] for k in ('mos', *ATTRIBUTES)]}") from None
    if not names:
        raise ValueError(f"{path}: the annotation file lists no images")
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: NaN or infinite scores in the annotation file")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate image names in the annotation file")
    attrs = arr[:, 1:].copy()
    if noisiness_higher_is_noisier:
        k = ATTRIBUTES.index("noisiness")
        attrs[:, k] = 100.0 - attrs[:, k]
    return {"image": names, "mos": arr[:, 0], "attributes": attrs, "path": path}


def write_spaq_miniature(root, images=None, n_images: int = 8, size: tuple[int, int] = (96, 72), seed: int = 0,
                         fmt: str = "xlsx") -> Path:
    """Writes a miniature SPAQ in the official layout (for tests and smoke runs).

    Images are saved as ``TestImage/00001.jpg, ...``; the sheet's attribute scores are derived from
    the analytic teacher's measures of each image plus a little rating noise, so they carry a
    real (if synthetic) signal; the MOS is their mean.

    Args:
        root: output folder.
        images: optional ``(N, 3, H, W)`` tensor in ``[0, 1]`` to use; default: random smooth
            images with varied blur, noise, exposure, saturation and contrast.
        n_images: number of images when ``images`` is None.
        size: ``(width, height)`` of the generated images.
        seed: random seed.
        fmt: ``"xlsx"`` (the official file, needs openpyxl) or ``"csv"``.

    Returns:
        The annotation file written.
    """
    import torch
    from PIL import Image

    from attiqa.data.distortions import distort
    from attiqa.teachers import AnalyticTeacher

    root = Path(root)
    g = torch.Generator().manual_seed(seed)
    if images is None:
        w, h = size
        base = torch.rand(n_images, 3, h // 8 + 1, w // 8 + 1, generator=g)
        x = torch.nn.functional.interpolate(base, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
        x = (x + 0.25 * torch.rand(n_images, 3, h, w, generator=g)).clamp(0, 1)
        kinds = ("blur", "noise", "underexposure", "desaturation", "contrast_loss")
        out = []
        for i in range(n_images):
            level = float(torch.rand((), generator=g)) * 0.8
            out.append(distort(x[i:i + 1], kinds[i % len(kinds)], level, generator=g))
        images = torch.cat(out)
    images = images.float().clamp(0, 1)
    with torch.no_grad():
        scores = AnalyticTeacher()(images).numpy() * 100.0
    rng = np.random.default_rng(seed)
    scores = np.clip(scores + rng.normal(0.0, 2.0, scores.shape), 0.0, 100.0)
    mos = scores.mean(axis=1)
    img_dir = root / "TestImage"
    img_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for i, img in enumerate(images):
        name = f"{i + 1:05d}.jpg"
        arr = (img.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        Image.fromarray(arr).save(img_dir / name, quality=95)
        names.append(name)
    header = [_NAME_COLUMN, _MOS_COLUMN, "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"]
    order = [ATTRIBUTES.index(a) for a in ("brightness", "colorfulness", "contrast", "noisiness", "sharpness")]
    rows = [[n, round(float(m), 3), *(round(float(s[k]), 3) for k in order)] for n, m, s in zip(names, mos, scores)]
    ann_dir = root / ANNOTATION_FILE.parent
    ann_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "xlsx":
        import openpyxl

        path = root / ANNOTATION_FILE
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.append(header)
        for r in rows:
            ws.append(r)
        with atomic_write(path) as tmp:
            wb.save(tmp)
    elif fmt == "csv":
        path = root / ANNOTATION_FILE.with_suffix(".csv")
        with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    else:
        raise ValueError(f"fmt must be 'xlsx' or 'csv', not {fmt!r}")
    return path
