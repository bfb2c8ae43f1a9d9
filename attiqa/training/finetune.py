"""Fine-tuning the MOS head (and, by default, the whole network) on an IQA dataset.

``python -m attiqa finetune --pretrained PRETRAINED.pt --dataset koniq10k=/data/koniq --out quality.pt``

The pretrained ATTIQA model (backbone + five attribute heads, from ``attiqa pretrain``) gets a
MOS regression MLP on its concatenated head features (:class:`attiqa.modeling.quality.QualityModel`).
Training images: short edge 340, random 320 crop, random flip; the loss is the L2 (or L1)
distance on the MOS mapped to ``[0, 1]`` with the dataset's scale. ``--linear-probe`` freezes
everything but a single linear MOS layer. Training state is saved every ``--save-every`` steps
next to the output (``<out>.state``) and ``--resume`` continues from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attiqa.data.transforms import TestTransform, TrainTransform
from attiqa.modeling.quality import QualityModel
from attiqa.utils.device import resolve_device
from attiqa.utils.files import atomic_torch_save, load_tensor_file

__all__ = ["FinetuneConfig", "build_quality_model", "finetune", "predict"]


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


def finetune(model: QualityModel, dataset, config: FinetuneConfig | None = None, *, device="cpu",
             progress: bool = True, state_path: str | Path | None = None, resume: bool = False,
             save_every: int = 200) -> dict:
    """Fine-tunes ``model`` on ``dataset`` (an :class:`attiqa.data.datasets.IQADataset`).

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
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))  # lr · ½(1 + cos(π·step/steps))
    step, losses = 0, []
    if resume and state_path is not None and Path(state_path).is_file():
        st = load_tensor_file(state_path, device, what="fine-tuning state")
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
                atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
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
            from attiqa.data.transforms import resize_short_edge
            out.append(float(model(resize_short_edge(img, resize)[None].to(device)).mos[0]))
    return np.asarray(out, dtype=np.float64)


