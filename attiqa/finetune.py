"""Fine-tuning the MOS head (and, by default, the whole network) on an IQA dataset.

``python -m attiqa finetune --pretrained PRETRAINED.pt --dataset koniq10k=/data/koniq --out quality.pt``

The pretrained ATTIQA model (backbone + five attribute heads, from ``attiqa pretrain``) gets a
MOS regression MLP on its concatenated head features (:class:`attiqa.quality.QualityModel`).
Training images: short edge 340, random 320 crop, random flip; the loss is the L2 (or L1)
distance on the MOS mapped to ``[0, 1]`` with the dataset's scale. ``--linear-probe`` freezes
everything but a single linear MOS layer. Training state is saved every ``--save-every`` steps
next to the output (``<out>.state``) and ``--resume`` continues from it.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attiqa import ATTRIBUTES
from attiqa.quality import QualityModel
from attiqa.transforms import TestTransform, TrainTransform

__all__ = ["FinetuneConfig", "resolve_device", "load_attiqa_model", "build_quality_model", "finetune",
           "predict", "quality_checkpoint_meta", "save_quality_checkpoint", "main"]


@dataclass
class FinetuneConfig:
    """Fine-tuning hyper-parameters (paper protocol by default).

    Attributes:
        steps: optimisation steps; ``None`` uses ``epochs`` passes over the training set.
        epochs: passes over the training set when ``steps`` is ``None``.
        batch_size: images per step.
        lr: learning rate of the pretrained backbone and heads.
        head_lr: learning rate of the new MOS head.
        weight_decay: AdamW weight decay.
        loss: ``"l2"`` or ``"l1"`` on the MOS mapped to ``[0, 1]``.
        resize: short edge before cropping (340).
        crop: crop side (320).
        linear_probe: freeze backbone and attribute heads, MOS head = one linear layer.
        head_hidden: hidden width of the MOS MLP (ignored with ``linear_probe``).
        dropout: dropout of the MOS MLP.
        num_workers: DataLoader workers.
        seed: seed for crops, order and initialisation.
    """

    steps: int | None = None
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-5
    head_lr: float = 2e-4
    weight_decay: float = 1e-4
    loss: str = "l2"
    resize: int = 340
    crop: int = 320
    linear_probe: bool = False
    head_hidden: int = 512
    dropout: float = 0.1
    num_workers: int = 0
    seed: int = 0


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when present else CPU; anything else as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_attiqa_model(path) -> tuple[nn.Module, dict]:
    """Loads the ATTIQA model (backbone + attribute heads) of a pretrained or quality checkpoint.

    Returns:
        ``(model, meta)``; every weight of the model must be in the checkpoint.

    Raises:
        FileNotFoundError / ValueError: missing file, not an ATTIQA checkpoint, architecture mismatch.
    """
    from attiqa.checkpoint import load_checkpoint
    from attiqa.models import build_model

    ckpt = load_checkpoint(path)
    meta, state = ckpt["meta"], ckpt["state_dict"]
    arch = meta.get("architecture")
    if meta.get("kind") == "quality":
        model = QualityModel.from_config(arch)
        _load_strict(model, state, path)
        return model.attiqa, meta
    if not isinstance(arch, dict):
        raise ValueError(f"{path}: the checkpoint has no architecture configuration")
    arch = dict(arch)
    arch["pretrained"] = False
    model = build_model(**arch)
    _load_strict(model, state, path)
    return model, meta


def _load_strict(model: nn.Module, state: dict, path) -> None:
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()
        raise ValueError(f"{path}: weights do not fit the architecture stored in the checkpoint "
                         f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the architecture stored in the checkpoint "
                         f"({len(missing)} missing, e.g. {missing[:2]}; {len(unexpected)} unexpected, "
                         f"e.g. {unexpected[:2]})")


def build_quality_model(attiqa: nn.Module, score_range: tuple[float, float],
                        config: FinetuneConfig | None = None) -> QualityModel:
    """Wraps a pretrained ATTIQA model with a fresh MOS head for ``score_range``."""
    config = config or FinetuneConfig()
    hidden = 0 if config.linear_probe else config.head_hidden
    torch.manual_seed(config.seed)
    return QualityModel(attiqa, head_hidden=hidden, dropout=config.dropout, score_range=score_range)


class _Transformed(torch.utils.data.Dataset):
    def __init__(self, dataset, transform, seed: int):
        self.dataset, self.transform, self.seed = dataset.with_transform(None), transform, seed
        self.epoch = 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        img, mos = self.dataset[i]
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
        return self.transform(img, generator=g), mos


def _atomic_torch_save(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def finetune(model: QualityModel, dataset, config: FinetuneConfig | None = None, *, device="cpu",
             progress: bool = True, state_path: str | Path | None = None, resume: bool = False,
             save_every: int = 200) -> dict:
    """Fine-tunes ``model`` on ``dataset`` (an :class:`attiqa.datasets.IQADataset`).

    Args:
        model: quality model whose ``score_range`` is the dataset's MOS scale.
        dataset: images with MOS; its own transform is ignored (the training crops are applied here).
        config: hyper-parameters.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``.
        progress: show a tqdm bar.
        state_path: where to keep the resumable training state (``None``: not kept).
        resume: continue from ``state_path`` when it exists.
        save_every: steps between training-state saves.

    Returns:
        ``{"steps": int, "final_loss": float, "losses": list[float]}``.
    """
    from tqdm.auto import tqdm

    config = config or FinetuneConfig()
    device = resolve_device(device)
    model.to(device)
    if config.loss not in ("l1", "l2"):
        raise ValueError(f"loss must be 'l1' or 'l2', not {config.loss!r}")
    if len(dataset) == 0:
        raise ValueError("the training set is empty")
    data = _Transformed(dataset, TrainTransform(config.resize, config.crop), config.seed)
    bs = min(config.batch_size, len(data))
    steps = config.steps if config.steps is not None else config.epochs * max(1, len(data) // bs)
    if config.linear_probe:
        model.attiqa.requires_grad_(False)
    groups = [{"params": list(model.mos_head.parameters()), "lr": config.head_lr}]
    if not config.linear_probe:
        groups.append({"params": [p for p in model.attiqa.parameters() if p.requires_grad], "lr": config.lr})
    opt = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(1, steps))))
    step, losses = 0, []
    if resume and state_path is not None and Path(state_path).is_file():
        st = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        step, losses = int(st["step"]), [float(x) for x in st["losses"]]
    loss_fn = F.mse_loss if config.loss == "l2" else F.l1_loss
    bar = tqdm(total=steps, initial=step, desc="finetune", disable=not progress, leave=False)
    epoch = step // max(1, len(data) // bs)
    while step < steps:
        data.epoch = epoch
        g = torch.Generator().manual_seed(config.seed * 1000003 + epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=bs, shuffle=True, drop_last=True, generator=g,
                                             num_workers=config.num_workers)
        model.train()
        if config.linear_probe:
            model.attiqa.eval()
        for images, mos in loader:
            images, mos = images.to(device), mos.to(device)
            unit = model.forward_unit(images).mos
            loss = loss_fn(unit, model.to_unit(mos).clamp(0, 1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if state_path is not None and (step % save_every == 0 or step == steps):
                _atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                    "scheduler": sched.state_dict(), "step": step, "losses": losses},
                                   Path(state_path))
            if step >= steps:
                break
        epoch += 1
    bar.close()
    model.eval()
    return {"steps": step, "final_loss": float(np.mean(losses[-10:])) if losses else float("nan"),
            "losses": losses}


@torch.no_grad()
def predict(model: QualityModel, dataset, *, resize: int = 340, crop: int = 320, five_crop: bool = True,
            batch_size: int = 8, device="cpu", progress: bool = False) -> np.ndarray:
    """Predicted MOS for every image of ``dataset``.

    With ``five_crop`` each image is resized (short edge ``resize``) and the model's MOS on its
    five ``crop`` crops (corners + centre) is averaged; otherwise the whole resized image is scored.

    Returns:
        ``(N,)`` float64 predictions in the model's ``score_range``.
    """
    from tqdm.auto import tqdm

    device = resolve_device(device)
    model.to(device).eval()
    tf = TestTransform(resize, crop)
    out = []
    base = dataset.with_transform(None)
    for i in tqdm(range(len(base)), desc="predict", disable=not progress, leave=False):
        img, _ = base[i]
        if five_crop:
            crops = tf(img).to(device)
            mos = torch.cat([model(crops[j:j + batch_size]).mos for j in range(0, len(crops), batch_size)])
            out.append(float(mos.mean()))
        else:
            from attiqa.transforms import resize_short_edge
            out.append(float(model(resize_short_edge(img, resize)[None].to(device)).mos[0]))
    return np.asarray(out, dtype=np.float64)


def quality_checkpoint_meta(model: QualityModel, *, starter: bool = False, description: str = "",
                            extra: dict | None = None) -> dict:
    """The ``meta`` of a quality checkpoint (architecture, normalisation, range, ...)."""
    arch = model.config
    norm = arch["attiqa"].get("normalization")
    if norm is None:
        mean = getattr(model.attiqa, "mean", None)
        std = getattr(model.attiqa, "std", None)
        if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor):
            norm = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    meta = {"kind": "quality", "architecture": arch, "attributes": list(ATTRIBUTES),
            "normalization": norm, "starter": bool(starter), "description": description,
            "score_range": list(model.score_range), "lower_better": False}
    meta.update(extra or {})
    return meta


def save_quality_checkpoint(path, model: QualityModel, **meta_kwargs) -> Path:
    """Saves a quality checkpoint atomically (``attiqa.checkpoint.save_checkpoint``)."""
    from attiqa.checkpoint import save_checkpoint

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(path, state, quality_checkpoint_meta(model, **meta_kwargs))
    return Path(path)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one ``--flag`` per :class:`FinetuneConfig` field."""
    helps = {"steps": "optimisation steps (default: --epochs passes)", "epochs": "passes over the training set",
             "batch_size": "images per step", "lr": "learning rate of backbone and attribute heads",
             "head_lr": "learning rate of the MOS head", "weight_decay": "AdamW weight decay",
             "loss": "l2 or l1 on the MOS mapped to [0, 1]", "resize": "short edge before cropping",
             "crop": "crop side", "linear_probe": "freeze the backbone; the MOS head is one linear layer",
             "head_hidden": "hidden width of the MOS MLP", "dropout": "dropout of the MOS MLP",
             "num_workers": "DataLoader workers", "seed": "random seed"}
    for f in fields(FinetuneConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=helps[f.name])
        elif f.name == "steps":
            parser.add_argument(flag, type=int, default=None, help=helps[f.name])
        elif f.name == "loss":
            parser.add_argument(flag, choices=("l2", "l1"), default=default, help=helps[f.name])
        else:
            parser.add_argument(flag, type=type(default), default=default, help=f"{helps[f.name]} (default {default})")


def config_from_args(args) -> FinetuneConfig:
    return FinetuneConfig(**{f.name: getattr(args, f.name) for f in fields(FinetuneConfig)})


def main(argv: list[str] | None = None) -> int:
    from attiqa.datasets import parse_dataset_spec

    p = argparse.ArgumentParser(prog="python -m attiqa finetune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--pretrained", required=True, help="pretrained ATTIQA checkpoint (from `attiqa pretrain`)")
    p.add_argument("--dataset", required=True,
                   help="NAME=ROOT (koniq10k, spaq, clive, flive, ava, agiqa3k, csv) or a CSV of path,mos")
    p.add_argument("--out", required=True, help="output quality checkpoint (.pt)")
    p.add_argument("--train-fraction", type=float, default=1.0,
                   help="fraction of the dataset used for training (random, --split-seed); 1 = all")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--resume", action="store_true", help="continue from <out>.state")
    p.add_argument("--save-every", type=int, default=200, help="steps between training-state saves")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_arguments(p)
    args = p.parse_args(argv)
    config = config_from_args(args)
    try:
        dataset = parse_dataset_spec(args.dataset)
        attiqa, pre_meta = load_attiqa_model(args.pretrained)
    except (FileNotFoundError, ValueError) as exc:
        print(f"attiqa finetune: error: {exc}", file=sys.stderr)
        return 1
    if not 0 < args.train_fraction <= 1:
        print("attiqa finetune: error: --train-fraction must be in (0, 1]", file=sys.stderr)
        return 1
    test_idx = np.array([], dtype=np.int64)
    if args.train_fraction < 1:
        from attiqa.evaluate import random_splits
        train_idx, test_idx = random_splits(len(dataset), 1, args.train_fraction, args.split_seed)[0]
        train = dataset.subset(train_idx)
    else:
        train = dataset
    model = build_quality_model(attiqa, dataset.score_range, config)
    out = Path(args.out)
    result = finetune(model, train, config, device=args.device, progress=not args.no_progress,
                      state_path=out.with_name(out.name + ".state"), resume=args.resume, save_every=args.save_every)
    extra = {"trained_on": dataset.name, "finetune_config": asdict(config),
             "pretrained_from": str(args.pretrained), "pretrain_meta_description": pre_meta.get("description", "")}
    if len(test_idx):
        from attiqa.evaluate import correlations
        pred = predict(model, dataset.subset(test_idx), resize=config.resize, crop=config.crop, device=args.device)
        metrics = correlations(pred, dataset.mos[test_idx])
        extra["test_metrics"] = metrics
        print("held-out: " + ", ".join(f"{k.upper()} {v:.4f}" for k, v in metrics.items()))
    save_quality_checkpoint(out, model, description=f"ATTIQA fine-tuned on {dataset.name}", extra=extra)
    print(f"saved {out} ({result['steps']} steps, final loss {result['final_loss']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
