"""Evaluation protocols and the paper-style results table.

``python -m attiqa evaluate --pretrained ATTIQA=pre.pt --dataset koniq10k=/data/koniq \\
    --dataset clive=/data/clive --protocol split data-efficient linear-probe cross --out-dir results/``

Protocols (each a column group of the table, each cell the median over the splits):

* ``split``: 10 random 80/20 train/test splits of a dataset; fine-tune on 80 %, test on 20 %
  (five 320 crops averaged); the median SROCC / PLCC / KRCC over the splits.
* ``data-efficient``: the same splits, but only 10 % / 20 % of the *whole* dataset (drawn from
  each split's training part) is used for training; the test part is unchanged.
* ``linear-probe``: the split protocol with the backbone and attribute heads frozen and a
  single linear MOS layer.
* ``cross``: fine-tune on all of dataset A, test on all of dataset B (``--cross A:B``).

Ablations (rows): ``--ablation good-bad-prompt`` / ``l2-loss`` pretrain variants on
``--pretrain-images`` first (the paper's single "Good image"/"Bad image" prompt teacher and the
L2 instead of the margin-ranking loss), next to a baseline pretrained the same way.

Metrics: SROCC (``scipy.stats.spearmanr``), PLCC (``scipy.stats.pearsonr``, on the raw
predictions, no logistic fit) and KRCC (``scipy.stats.kendalltau``, tau-b).
"""
from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from attiqa.data.splits import random_splits
from attiqa.eval.correlations import correlations, median_correlations
from attiqa.training.finetune import FinetuneConfig, finetune, predict
from attiqa.utils.files import atomic_write_text

__all__ = ["split_protocol", "cross_dataset", "ResultsTable"]


def split_protocol(make_model: Callable, dataset, config: FinetuneConfig | None = None, *, n_splits: int = 10,
                   train_fraction: float = 0.8, data_fraction: float | None = None, seed: int = 0,
                   device="cpu", progress: bool = False) -> dict:
    """Fine-tunes a fresh model per random split and reports the median correlations.

    Args:
        make_model: ``make_model(score_range, config) -> QualityModel``, a fresh model each call.
        dataset: an :class:`attiqa.data.datasets.IQADataset`.
        config: fine-tuning settings (``linear_probe=True`` for linear probing).
        n_splits: number of random splits (10 in the paper).
        train_fraction: training share of each split (0.8).
        data_fraction: when given, train on only this share of the whole dataset (data-efficient).
        seed: seed of the splits.

    Returns:
        ``{"srocc", "plcc", "krcc"}`` medians, ``"n_splits"`` and the per-split ``"splits"``.
    """
    config = config or FinetuneConfig()
    results = []
    rng = np.random.default_rng(seed + 1)
    for k, (tr, te) in enumerate(random_splits(len(dataset), n_splits, train_fraction, seed)):
        if data_fraction is not None:
            n = min(len(tr), max(2, int(round(data_fraction * len(dataset)))))
            tr = np.sort(rng.choice(tr, n, replace=False))
        model = make_model(dataset.score_range, replace(config, seed=config.seed + k))
        finetune(model, dataset.subset(tr), replace(config, seed=config.seed + k), device=device, progress=progress)
        pred = predict(model, dataset.subset(te), resize=config.resize, crop=config.crop, device=device)
        results.append(correlations(pred, dataset.mos[te]) | {"n_train": int(len(tr)), "n_test": int(len(te))})
    return median_correlations(results)


def cross_dataset(make_model: Callable, train_set, test_set, config: FinetuneConfig | None = None, *,
                  device="cpu", progress: bool = False) -> dict:
    """Fine-tunes on all of ``train_set`` and tests on all of ``test_set`` (SROCC is scale-free)."""
    config = config or FinetuneConfig()
    model = make_model(train_set.score_range, config)
    finetune(model, train_set, config, device=device, progress=progress)
    pred = predict(model, test_set, resize=config.resize, crop=config.crop, device=device)
    return correlations(pred, test_set.mos) | {"n_splits": 1}


class ResultsTable:
    """Rows of results (model x protocol x dataset) written as CSV and Markdown."""

    FIELDS = ("model", "protocol", "train", "test", "srocc", "plcc", "krcc", "n_splits")

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, model: str, protocol: str, train: str, test: str, result: dict) -> None:
        self.rows.append({"model": model, "protocol": protocol, "train": train, "test": test,
                          **{k: result[k] for k in ("srocc", "plcc", "krcc", "n_splits")}})

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.FIELDS, lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
        return buf.getvalue()

    def to_markdown(self) -> str:
        """One row per model; one column per (protocol, train -> test); cells ``SROCC / PLCC``."""
        cols, models = [], []
        for r in self.rows:
            c = (r["protocol"], r["train"], r["test"])
            if c not in cols:
                cols.append(c)
            if r["model"] not in models:
                models.append(r["model"])
        names = [p if tr == te else f"{p} {tr}→{te}" for p, tr, te in cols]
        names = [f"{n} ({tr})" if tr == te else n for n, (p, tr, te) in zip(names, cols)]
        lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(cols)]
        for m in models:
            cells = []
            for c in cols:
                hit = [r for r in self.rows if r["model"] == m and (r["protocol"], r["train"], r["test"]) == c]
                cells.append(f"{hit[0]['srocc']:.3f} / {hit[0]['plcc']:.3f}" if hit else "–")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Cells: median SROCC / PLCC over the splits (cross-dataset: one run).")
        return "\n".join(lines) + "\n"

    def write(self, out_dir) -> tuple[Path, Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = (out_dir / "results.csv", out_dir / "results.md")
        for path, text in zip(paths, (self.to_csv(), self.to_markdown())):
            atomic_write_text(path, text)
        return paths


