"""Pairwise preference accuracy: how often the model prefers the image people preferred.

``python -m attiqa preference pairs.csv [--checkpoint quality.pt] [--json]``

The CSV has one row per pair with the columns ``image_a``, ``image_b`` (paths, relative to
the CSV's folder unless absolute) and ``choice``: which image people preferred, written as
``a``/``b``, ``0``/``1`` (0 = image_a) or the preferred image's path. The accuracy is the share
of pairs where the model's MOS is higher for the preferred image; a tie counts one half.
This is the paper's application to images from generative models.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Mapping

__all__ = ["read_pairs", "preference_accuracy"]


def read_pairs(csv_path) -> list[tuple[Path, Path, int]]:
    """Reads the pairs CSV.

    Returns:
        ``[(image_a, image_b, winner)]`` with ``winner`` 0 when people preferred ``image_a``, 1 for ``image_b``.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"pairs CSV not found: {csv_path}")
    base = csv_path.parent
    out = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"image_a", "image_b", "choice"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{csv_path}: missing columns {sorted(missing)} (need image_a, image_b, choice)")
        for line, row in enumerate(reader, 2):
            a, b, c = row["image_a"].strip(), row["image_b"].strip(), row["choice"].strip()
            pa = Path(a) if Path(a).is_absolute() else base / a
            pb = Path(b) if Path(b).is_absolute() else base / b
            if c.lower() in ("a", "0") or c == a:
                winner = 0
            elif c.lower() in ("b", "1") or c == b:
                winner = 1
            else:
                raise ValueError(f"{csv_path}:{line}: choice {c!r} is neither a/b, 0/1 nor one of the two paths")
            out.append((pa, pb, winner))
    if not out:
        raise ValueError(f"{csv_path}: no pairs")
    return out


def preference_accuracy(pairs, scores: Mapping[Path, float] | Callable[[list[Path]], list[float]]) -> dict:
    """Share of pairs where the higher score belongs to the preferred image.

    Args:
        pairs: output of :func:`read_pairs` (or a CSV path).
        scores: a mapping from image path to score, or a function scoring a list of paths.

    Returns:
        ``{"accuracy": float in [0, 1], "n_pairs": int, "agree": int, "ties": int}``.
    """
    if isinstance(pairs, (str, Path)):
        pairs = read_pairs(pairs)
    if callable(scores):
        unique = sorted({p for a, b, _ in pairs for p in (a, b)})
        scores = dict(zip(unique, scores(unique)))
    agree = ties = 0
    for a, b, winner in pairs:
        sa, sb = float(scores[a]), float(scores[b])
        if sa == sb:
            ties += 1
        elif (sa > sb) == (winner == 0):
            agree += 1
    n = len(pairs)
    return {"accuracy": (agree + 0.5 * ties) / n, "n_pairs": n, "agree": agree, "ties": ties}


