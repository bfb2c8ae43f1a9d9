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

import argparse
import copy
import csv
import io
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy import stats

from attiqa.finetune import (FinetuneConfig, add_config_arguments, build_quality_model, config_from_args,
                             finetune, load_attiqa_model, predict)

__all__ = ["correlations", "random_splits", "split_protocol", "cross_dataset", "ResultsTable", "main",
           "GOOD_BAD_PROMPTS", "pretrain_variant"]

GOOD_BAD_PROMPTS: dict[str, tuple[str, str]] = {
    a: ("Good image", "Bad image") for a in ("sharpness", "contrast", "brightness", "colorfulness", "noisiness")}
"""The single-prompt ablation: the same "Good image"/"Bad image" pair for every attribute."""


def correlations(pred, target) -> dict[str, float]:
    """SROCC, PLCC and KRCC between predictions and ground truth (scipy).

    Args:
        pred: ``(N,)`` predictions.
        target: ``(N,)`` ground-truth MOS.

    Returns:
        ``{"srocc": ..., "plcc": ..., "krcc": ...}`` floats in ``[-1, 1]`` (NaN when undefined).
    """
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 1:
        raise ValueError(f"pred and target must be equal-length vectors, got {pred.shape} and {target.shape}")
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(target) == 0:
        return {"srocc": float("nan"), "plcc": float("nan"), "krcc": float("nan")}
    return {"srocc": float(stats.spearmanr(pred, target)[0]),
            "plcc": float(stats.pearsonr(pred, target)[0]),
            "krcc": float(stats.kendalltau(pred, target)[0])}


def random_splits(n: int, n_splits: int = 10, train_fraction: float = 0.8,
                  seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` random train/test index splits of ``range(n)`` (both parts non-empty, sorted)."""
    if n < 2:
        raise ValueError(f"need at least 2 images to split, got {n}")
    rng = np.random.default_rng(seed)
    n_train = int(round(train_fraction * n))
    n_train = min(max(n_train, 1), n - 1)
    out = []
    for _ in range(n_splits):
        perm = rng.permutation(n)
        out.append((np.sort(perm[:n_train]), np.sort(perm[n_train:])))
    return out


def _median(results: list[dict]) -> dict:
    keys = ("srocc", "plcc", "krcc")
    med = {}
    for k in keys:
        vals = np.asarray([r[k] for r in results], dtype=np.float64)
        med[k] = float(np.median(vals[np.isfinite(vals)])) if np.isfinite(vals).any() else float("nan")
    med["n_splits"] = len(results)
    med["splits"] = results
    return med


def split_protocol(make_model: Callable, dataset, config: FinetuneConfig | None = None, *, n_splits: int = 10,
                   train_fraction: float = 0.8, data_fraction: float | None = None, seed: int = 0,
                   device="cpu", progress: bool = False) -> dict:
    """Fine-tunes a fresh model per random split and reports the median correlations.

    Args:
        make_model: ``make_model(score_range, config) -> QualityModel``, a fresh model each call.
        dataset: an :class:`attiqa.datasets.IQADataset`.
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
    return _median(results)


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
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        return paths


class _LabelledImages(torch.utils.data.Dataset):
    """Images with teacher labels for ranking pretraining: random ``crop`` crops of each image."""

    def __init__(self, images: list[torch.Tensor], labels: torch.Tensor, crop: int, seed: int = 0):
        self.images, self.labels, self.crop = images, labels, crop
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i]
        _, h, w = img.shape
        c = min(self.crop, h, w)
        y = int(torch.randint(0, h - c + 1, (1,), generator=self.gen))
        x = int(torch.randint(0, w - c + 1, (1,), generator=self.gen))
        return img[:, y:y + c, x:x + c], self.labels[i]


def pretrain_variant(image_dir, out_path, *, variant: str = "baseline", teacher: str = "analytic",
                     clip_model: str | None = None, backbone: str = "efficientnet_lite0", pretrained: bool = True,
                     steps: int = 500, batch_size: int = 16, lr: float = 1e-4, resize: int = 256, crop: int = 224,
                     device="cpu", progress: bool = True, seed: int = 0) -> Path:
    """Pretrains one row of the ablation table on the images of ``image_dir``.

    Variants: ``baseline`` (the method: attribute teacher, margin-ranking loss m = 0.1),
    ``good-bad-prompt`` (one "Good image"/"Bad image" prompt pair for all five heads; with the
    analytic teacher, the mean of its five scores stands in for that single score) and
    ``l2-loss`` (L2 regression on the teacher scores instead of the ranking loss).
    """
    from attiqa.checkpoint import save_checkpoint
    from attiqa.models import build_model
    from attiqa.pretrain import pretrained_meta, train_ranking
    from attiqa.teachers import create_teacher
    from attiqa.transforms import IMAGE_EXTENSIONS, load_image, resize_short_edge

    if variant not in ("baseline", "good-bad-prompt", "l2-loss"):
        raise ValueError(f"unknown ablation variant {variant!r}")
    files = sorted(p for p in Path(image_dir).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(files) < 2:
        raise FileNotFoundError(f"need at least 2 images under {image_dir} for pretraining")
    images = [resize_short_edge(load_image(p), resize) for p in files]
    kw = {}
    if teacher == "clip":
        if clip_model:
            kw["model"] = clip_model
        if variant == "good-bad-prompt":
            kw["prompts"] = dict(GOOD_BAD_PROMPTS)
    t = create_teacher(teacher, **kw).eval()
    with torch.no_grad():
        labels = torch.cat([t(img[None]) for img in images]).float()
    if variant == "good-bad-prompt" and teacher != "clip":
        labels = labels.mean(dim=1, keepdim=True).expand(-1, labels.shape[1]).contiguous()
    model = build_model(backbone, pretrained=pretrained)
    train_ranking(model, _LabelledImages(images, labels, crop, seed), steps=steps, batch_size=batch_size, lr=lr,
                  loss="l2" if variant == "l2-loss" else "margin", device=str(device), progress=progress, seed=seed)
    meta = pretrained_meta(model, f"ablation '{variant}' pretrained on {image_dir} with the {teacher} teacher",
                           {"ablation": variant, "pretrain_steps": steps})
    save_checkpoint(out_path, model.state_dict(), meta)
    return Path(out_path)


_KNOWN = {"koniq10k", "koniq", "spaq", "clive", "livec", "livechallenge", "flive", "ava", "agiqa3k", "agiqa"}


def _parse_named(spec: str) -> tuple[str, str]:
    if "=" in spec:
        name, value = spec.split("=", 1)
        return name, value
    return Path(spec).stem, spec


def main(argv: list[str] | None = None) -> int:
    from attiqa.datasets import load_dataset, load_csv

    p = argparse.ArgumentParser(prog="python -m attiqa evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--pretrained", action="append", default=[], metavar="NAME=CKPT",
                   help="a pretrained (or quality) checkpoint to evaluate as one table row; repeatable")
    p.add_argument("--dataset", action="append", required=True, metavar="NAME=ROOT",
                   help="dataset: koniq10k, spaq, clive, flive, ava or agiqa3k with its root, or NAME=FILE.csv "
                        "for a generic CSV (path, mos); repeatable")
    p.add_argument("--protocol", nargs="+", default=["split"],
                   choices=("split", "data-efficient", "linear-probe", "cross"), help="protocols to run")
    p.add_argument("--cross", action="append", default=[], metavar="TRAIN:TEST",
                   help="cross-dataset pair by dataset name (default: every ordered pair)")
    p.add_argument("--n-splits", type=int, default=10, help="random splits per dataset")
    p.add_argument("--train-share", type=float, default=0.8, help="training share of each split")
    p.add_argument("--data-fractions", type=float, nargs="+", default=[0.1, 0.2],
                   help="training shares of the whole dataset for the data-efficient protocol")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the random splits")
    p.add_argument("--ablation", nargs="*", default=[], choices=("good-bad-prompt", "l2-loss"),
                   help="pretrain these ablation variants (and a baseline) on --pretrain-images first")
    p.add_argument("--pretrain-images", help="image folder for the ablation pretraining")
    p.add_argument("--teacher", default="analytic", choices=("analytic", "clip"), help="teacher for the ablations")
    p.add_argument("--clip-model", default=None, help="CLIP hub id or folder for --teacher clip")
    p.add_argument("--backbone", default="efficientnet_lite0", help="backbone for the ablation pretraining")
    p.add_argument("--no-imagenet", action="store_true", help="ablation backbones start from random weights")
    p.add_argument("--pretrain-steps", type=int, default=500, help="ranking steps per ablation variant")
    p.add_argument("--pretrain-crop", type=int, default=224, help="crop side of the ablation pretraining")
    p.add_argument("--out-dir", default="attiqa_results", help="where results.csv and results.md go")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--progress", action="store_true", help="show per-run progress bars")
    add_config_arguments(p)
    args = p.parse_args(argv)
    config = config_from_args(args)

    try:
        datasets = {}
        for spec in args.dataset:
            name, root = _parse_named(spec) if "=" in spec else ("csv", spec)
            if name.lower().replace("-", "").replace("_", "") in _KNOWN and name != "csv":
                ds = load_dataset(name, root)
                datasets[ds.name] = ds
            else:  # a generic CSV, named NAME (or after its folder for csv=PATH)
                ds = load_csv(root)
                datasets[name if name != "csv" else Path(root).resolve().parent.name] = ds
        models = dict(_parse_named(s) for s in args.pretrained)
        if args.ablation:
            if not args.pretrain_images:
                raise ValueError("--ablation needs --pretrain-images")
            out_dir = Path(args.out_dir) / "ablation_checkpoints"
            for variant in ["baseline", *args.ablation]:
                path = out_dir / f"{variant}.pt"
                if not path.is_file():
                    print(f"pretraining ablation variant {variant} ...", file=sys.stderr)
                    pretrain_variant(args.pretrain_images, path, variant=variant, teacher=args.teacher,
                                     clip_model=args.clip_model, backbone=args.backbone,
                                     pretrained=not args.no_imagenet, steps=args.pretrain_steps,
                                     crop=args.pretrain_crop, resize=max(args.pretrain_crop, 256),
                                     device=str(args.device), seed=args.split_seed)
                models[{"baseline": "ATTIQA (pretrained here)", "good-bad-prompt": "single good/bad prompt",
                        "l2-loss": "L2 pretraining loss"}[variant]] = str(path)
        if not models:
            raise ValueError("give at least one --pretrained NAME=CKPT or --ablation")
        loaded = {name: load_attiqa_model(path)[0] for name, path in models.items()}
    except (FileNotFoundError, ValueError) as exc:
        print(f"attiqa evaluate: error: {exc}", file=sys.stderr)
        return 1

    table = ResultsTable()
    kw = dict(n_splits=args.n_splits, train_fraction=args.train_share, seed=args.split_seed, device=args.device,
              progress=args.progress)
    from tqdm.auto import tqdm
    jobs = []
    for mname in loaded:
        for dname in datasets:
            if "split" in args.protocol:
                jobs.append((mname, "split", dname, dname, {}))
            if "linear-probe" in args.protocol:
                jobs.append((mname, "linear-probe", dname, dname, {"linear": True}))
            if "data-efficient" in args.protocol:
                for f in args.data_fractions:
                    jobs.append((mname, f"data-efficient {f:.0%}", dname, dname, {"fraction": f}))
        if "cross" in args.protocol:
            pairs = [tuple(c.split(":", 1)) for c in args.cross] or \
                [(a, b) for a in datasets for b in datasets if a != b]
            for a, b in pairs:
                if a not in datasets or b not in datasets:
                    print(f"attiqa evaluate: error: --cross {a}:{b} names a dataset not given", file=sys.stderr)
                    return 1
                jobs.append((mname, "cross", a, b, {"cross": True}))
    for mname, proto, tr, te, opt in tqdm(jobs, desc="evaluate"):
        def make(score_range, cfg, _m=loaded[mname]):
            return build_quality_model(copy.deepcopy(_m), score_range, cfg)
        cfg = replace(config, linear_probe=config.linear_probe or opt.get("linear", False))
        if opt.get("cross"):
            res = cross_dataset(make, datasets[tr], datasets[te], cfg, device=args.device, progress=args.progress)
        else:
            res = split_protocol(make, datasets[tr], cfg, data_fraction=opt.get("fraction"), **kw)
        table.add(mname, proto, tr, te, res)
    csv_path, md_path = table.write(args.out_dir)
    print(table.to_markdown())
    print(f"wrote {csv_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
