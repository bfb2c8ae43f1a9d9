"""Loaders for the IQA datasets of the paper, each in its official layout.

Every loader returns an :class:`IQADataset`: the image paths, the MOS values and the
dataset's MOS scale, with an optional transform (see :mod:`attiqa.data.transforms`).

======================  =====================================================================  ==========
name                    layout under ``root``                                                  MOS scale
======================  =====================================================================  ==========
``koniq10k``            ``koniq10k_scores_and_distributions.csv`` (``image_name``, ``MOS``),    1 - 5
                        images in ``1024x768/``
``spaq``                see :mod:`attiqa.data.spaq` (``Annotations/MOS and Image attribute           0 - 100
                        scores.xlsx``, images in ``TestImage/``)
``clive``               ``Data/AllImages_release.mat``, ``Data/AllMOS_release.mat``, images    0 - 100
                        in ``Images/`` (the 7 training images in ``Images/trainingImages/``
                        are left out unless ``include_training=True``)
``flive``               ``labels_image.csv`` (``name``/``name_image``, ``mos``/``mos_image``),   0 - 100
                        image names relative to ``root`` or ``root/database``
``ava``                 ``AVA.txt`` (index, image id, vote counts for scores 1..10, tags,       1 - 10
                        challenge id), images ``images/<id>.jpg``; MOS = mean vote
``agiqa3k``             ``data.csv`` (``name``, ``mos_quality``, ``mos_align``), images in      0 - 5
                        ``root``, ``root/AGIQA-3K`` or ``root/images``
``csv``                 any CSV with ``path`` and ``mos`` columns (paths relative to the CSV)   from data
======================  =====================================================================  ==========

A missing annotation file or image raises ``FileNotFoundError`` with one clear message.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from attiqa.data.transforms import load_image

__all__ = ["IQADataset", "DATASETS", "load_dataset", "load_koniq10k", "load_spaq", "load_clive",
           "load_flive", "load_ava", "load_agiqa3k", "load_csv"]


@dataclass
class IQADataset(torch.utils.data.Dataset):
    """Images with mean opinion scores.

    Attributes:
        name: dataset name (``"koniq10k"``, ...).
        paths: image files, in the annotation file's order.
        mos: ``(N,)`` float64 mean opinion scores (higher = better).
        score_range: the MOS scale ``(lo, hi)`` of the dataset.
        transform: applied to each ``(3, H, W)`` image in ``[0, 1]``; ``None`` keeps it as loaded.
    """

    name: str
    paths: list[Path]
    mos: np.ndarray
    score_range: tuple[float, float]
    transform: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self):
        self.mos = np.asarray(self.mos, dtype=np.float64)
        if len(self.paths) != len(self.mos):
            raise ValueError(f"{self.name}: {len(self.paths)} images but {len(self.mos)} MOS values")
        if not np.all(np.isfinite(self.mos)):
            raise ValueError(f"{self.name}: MOS values contain NaN or inf")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(image, mos)``: the transformed image and a float32 scalar tensor."""
        img = load_image(self.paths[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, torch.tensor(self.mos[index], dtype=torch.float32)

    def subset(self, indices) -> "IQADataset":
        """A dataset with the given indices (same transform and scale)."""
        idx = np.asarray(indices, dtype=np.int64)
        return replace(self, paths=[self.paths[i] for i in idx], mos=self.mos[idx])

    def with_transform(self, transform) -> "IQADataset":
        """A copy that applies ``transform``."""
        return replace(self, transform=transform)


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path} (is the dataset root right?)")
    return path


def _check_images(name: str, paths: list[Path], skip_missing: bool) -> np.ndarray:
    exists = np.array([p.is_file() for p in paths], dtype=bool)
    if not exists.all() and not skip_missing:
        missing = [p for p, e in zip(paths, exists) if not e]
        raise FileNotFoundError(f"{name}: {len(missing)} of {len(paths)} images are missing, "
                                f"first: {missing[0]} (pass skip_missing=True to drop them)")
    return exists


def _finish(name, paths, mos, score_range, skip_missing) -> IQADataset:
    if not paths:
        raise ValueError(f"{name}: the annotation file lists no images")
    keep = _check_images(name, paths, skip_missing)
    mos = np.asarray(mos, dtype=np.float64)
    return IQADataset(name, [p for p, k in zip(paths, keep) if k], mos[keep], score_range)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                for row in csv.DictReader(f)]


def _column(rows, path, *names) -> str:
    header = rows[0].keys() if rows else []
    for n in names:
        if n in header:
            return n
    raise ValueError(f"{path}: expected one of the columns {names}, found {list(header)}")


def load_koniq10k(root, skip_missing: bool = False) -> IQADataset:
    """KonIQ-10k: ``koniq10k_scores_and_distributions.csv`` + ``1024x768/`` (MOS 1-5)."""
    root = Path(root)
    ann = _need(root / "koniq10k_scores_and_distributions.csv", "KonIQ-10k annotation file")
    rows = _read_csv(ann)
    name_col, mos_col = _column(rows, ann, "image_name"), _column(rows, ann, "MOS")
    img_dir = root / "1024x768"
    paths = [img_dir / r[name_col] for r in rows]
    return _finish("koniq10k", paths, [float(r[mos_col]) for r in rows], (1.0, 5.0), skip_missing)


def load_spaq(root, skip_missing: bool = False) -> IQADataset:
    """SPAQ: MOS from the annotation spreadsheet read by :mod:`attiqa.data.spaq` (MOS 0-100)."""
    from attiqa.data import spaq

    root = Path(root)
    table = spaq.load_spaq_annotations(root)
    img_dir = root / "TestImage"
    paths = [Path(p) if Path(p).is_absolute() else img_dir / p for p in table["image"]]
    return _finish("spaq", paths, table["mos"], (0.0, 100.0), skip_missing)


def load_clive(root, include_training: bool = False, skip_missing: bool = False) -> IQADataset:
    """LIVE In the Wild Image Quality Challenge (CLIVE), MOS 0-100.

    ``Data/AllImages_release.mat`` holds the 1,169 file names, ``Data/AllMOS_release.mat`` the
    MOS in the same order; the first seven entries are the training images kept in
    ``Images/trainingImages/``, which the usual protocol leaves out (1,162 images).
    """
    from scipy.io import loadmat

    root = Path(root)
    names_mat = loadmat(_need(root / "Data" / "AllImages_release.mat", "CLIVE image list"))
    mos_mat = loadmat(_need(root / "Data" / "AllMOS_release.mat", "CLIVE MOS file"))
    names = [str(np.asarray(n).reshape(-1)[0]) for n in np.asarray(names_mat["AllImages_release"]).reshape(-1)]
    mos = np.asarray(mos_mat["AllMOS_release"], dtype=np.float64).reshape(-1)
    if len(names) != len(mos):
        raise ValueError(f"CLIVE: {len(names)} names but {len(mos)} MOS values")
    start = 0 if include_training else min(7, len(names))
    paths = []
    for n in names[start:]:
        p = root / "Images" / n
        if not p.is_file() and (root / "Images" / "trainingImages" / n).is_file():
            p = root / "Images" / "trainingImages" / n
        paths.append(p)
    return _finish("clive", paths, mos[start:], (0.0, 100.0), skip_missing)


def load_flive(root, skip_missing: bool = False) -> IQADataset:
    """FLIVE (PaQ-2-PiQ): ``labels_image.csv`` with the image name and its MOS (0-100)."""
    root = Path(root)
    ann = _need(root / "labels_image.csv", "FLIVE annotation file")
    rows = _read_csv(ann)
    name_col = _column(rows, ann, "name", "name_image", "image_name")
    mos_col = _column(rows, ann, "mos", "mos_image", "MOS")
    base = root / "database" if (root / "database").is_dir() else root
    paths = [base / r[name_col] for r in rows]
    return _finish("flive", paths, [float(r[mos_col]) for r in rows], (0.0, 100.0), skip_missing)


def load_ava(root, skip_missing: bool = False) -> IQADataset:
    """AVA: ``AVA.txt`` vote counts for scores 1..10, MOS = mean vote (1-10), ``images/<id>.jpg``."""
    root = Path(root)
    ann = _need(root / "AVA.txt", "AVA annotation file")
    paths, mos = [], []
    scores = np.arange(1, 11, dtype=np.float64)
    with open(ann, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 12:
                raise ValueError(f"{ann}:{line_no}: expected at least 12 columns, found {len(parts)}")
            counts = np.array([float(c) for c in parts[2:12]])
            if counts.sum() <= 0:
                continue
            paths.append(root / "images" / f"{parts[1]}.jpg")
            mos.append(float((counts * scores).sum() / counts.sum()))
    return _finish("ava", paths, mos, (1.0, 10.0), skip_missing)


def load_agiqa3k(root, target: str = "quality", skip_missing: bool = False) -> IQADataset:
    """AGIQA-3k: ``data.csv`` with ``name`` and ``mos_quality`` / ``mos_align`` (0-5)."""
    if target not in ("quality", "align"):
        raise ValueError(f"target must be 'quality' or 'align', not {target!r}")
    root = Path(root)
    ann = _need(root / "data.csv", "AGIQA-3k annotation file")
    rows = _read_csv(ann)
    name_col, mos_col = _column(rows, ann, "name"), _column(rows, ann, f"mos_{target}")
    base = next((d for d in (root / "AGIQA-3K", root / "images") if d.is_dir()), root)
    paths = [base / r[name_col] for r in rows]
    return _finish("agiqa3k", paths, [float(r[mos_col]) for r in rows], (0.0, 5.0), skip_missing)


def load_csv(path, score_range: tuple[float, float] | None = None, skip_missing: bool = False) -> IQADataset:
    """A generic CSV with ``path`` and ``mos`` columns; relative paths are from the CSV's folder.

    ``score_range`` defaults to the observed minimum and maximum MOS.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "mos.csv"
    rows = _read_csv(_need(path, "MOS CSV file"))
    p_col, m_col = _column(rows, path, "path"), _column(rows, path, "mos")
    paths = [(path.parent / r[p_col]) if not Path(r[p_col]).is_absolute() else Path(r[p_col]) for r in rows]
    mos = [float(r[m_col]) for r in rows]
    if score_range is None and mos:
        score_range = (float(min(mos)), float(max(mos)))
    return _finish("csv", paths, mos, tuple(score_range or (0.0, 1.0)), skip_missing)


DATASETS: dict[str, Callable[..., IQADataset]] = {
    "koniq10k": load_koniq10k,
    "spaq": load_spaq,
    "clive": load_clive,
    "flive": load_flive,
    "ava": load_ava,
    "agiqa3k": load_agiqa3k,
    "csv": load_csv,
}


def load_dataset(name: str, root, **kwargs) -> IQADataset:
    """Loads a dataset by name (see :data:`DATASETS`); ``root`` is its folder (or CSV file)."""
    key = name.lower().replace("-", "").replace("_", "")
    aliases = {"koniq": "koniq10k", "livec": "clive", "livechallenge": "clive", "agiqa": "agiqa3k"}
    key = aliases.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    return DATASETS[key](root, **kwargs)


def parse_dataset_spec(spec: str) -> IQADataset:
    """Parses ``NAME=ROOT`` (e.g. ``koniq10k=/data/koniq``) or a bare CSV path."""
    if "=" in spec:
        name, root = spec.split("=", 1)
        return load_dataset(name, root)
    return load_csv(spec)
