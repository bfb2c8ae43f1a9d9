"""Attribute-aware pretraining: the backbone and five heads learn the teacher's rankings.

``python -m attiqa pretrain --images DIR [--labels labels.csv | --teacher analytic] --out-dir RUN``

Every step draws a batch, and every pair of images in it is a ranking example for each of the
five attributes (margin-ranking loss, m = 0.1, :mod:`attiqa.training.losses`; ``--loss l2`` is the
regression ablation). Mixed precision on CUDA, DistributedDataParallel under ``torchrun``
(NCCL on GPUs, gloo on CPUs), TensorBoard logs, and a training-state checkpoint with the
configuration embedded that ``--resume`` continues exactly (same batches, same weights as an
uninterrupted run).

Outputs in ``--out-dir``: ``config.json``, ``last.pt`` (training state), ``pretrained.pt``
(``kind="pretrained"``, the input of ``python -m attiqa finetune``), ``tb/`` (TensorBoard).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attiqa.attributes import ATTRIBUTES
from attiqa.modeling.checkpoint import load_checkpoint, pretrained_meta, save_checkpoint
from attiqa.training.losses import LOSSES, pretraining_loss

__all__ = ["train_ranking", "StepSampler", "LabelledImages", "warmup_cosine_schedule"]


# ---------------------------------------------------------------------------------------------
# data


class LabelledImages(torch.utils.data.Dataset):
    """Image files with teacher labels; each draw is a random crop of the resized image.

    Indexing with ``(i, draw_seed)`` (what :class:`StepSampler` yields for datasets with
    ``accepts_draw_seed``) makes the crop a function of the step, so resumed runs see the same
    crops; a plain ``i`` draws from the global generator.

    Args:
        paths: image files.
        labels: ``(N, 5)`` teacher scores.
        resize: short edge after resizing.
        crop: square crop side.
    """

    accepts_draw_seed = True

    def __init__(self, paths, labels: torch.Tensor, resize: int = 256, crop: int = 224):
        if len(paths) != len(labels):
            raise ValueError("paths and labels differ in length")
        if crop > resize:
            raise ValueError(f"crop {crop} is larger than the resized short edge {resize}")
        self.paths, self.labels, self.resize, self.crop = list(paths), labels.float(), resize, crop

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, item):
        from attiqa.data.transforms import load_image, resize_short_edge

        i, draw_seed = item if isinstance(item, tuple) else (item, None)
        g = torch.Generator().manual_seed(int(draw_seed)) if draw_seed is not None else None
        img = resize_short_edge(load_image(self.paths[i]), self.resize)
        _, h, w = img.shape
        y = int(torch.randint(0, h - self.crop + 1, (1,), generator=g))
        x = int(torch.randint(0, w - self.crop + 1, (1,), generator=g))
        out = img[:, y:y + self.crop, x:x + self.crop]
        if float(torch.rand((), generator=g)) < 0.5:
            out = out.flip(-1)
        return out.contiguous(), self.labels[i]


class StepSampler(torch.utils.data.Sampler):
    """Batch sampler whose batch at step ``t`` depends only on ``(seed, t, rank)``.

    Step ``t`` draws ``batch_size * world_size`` distinct indices (a permutation from a generator
    seeded with ``seed`` and ``t``; with replacement when the dataset is smaller) and gives this
    rank its slice, so ranks see disjoint images and a resumed run continues with the batches
    the uninterrupted run would have used.
    """

    def __init__(self, n: int, batch_size: int, steps: int, start_step: int = 0, seed: int = 0, rank: int = 0,
                 world_size: int = 1, draw_seeds: bool = False):
        self.n, self.batch_size, self.steps, self.start_step = n, batch_size, steps, start_step
        self.seed, self.rank, self.world_size, self.draw_seeds = seed, rank, world_size, draw_seeds

    def __len__(self):
        return max(0, self.steps - self.start_step)

    def batch_indices(self, step: int) -> list:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        need = self.batch_size * self.world_size
        if self.n >= need and self.n <= 1 << 22:
            idx = torch.randperm(self.n, generator=g)[:need]
        else:
            idx = torch.randint(0, self.n, (need,), generator=g)
        mine = idx[self.rank * self.batch_size:(self.rank + 1) * self.batch_size].tolist()
        if self.draw_seeds:
            base = (self.seed * 1_000_003 + step) * need + self.rank * self.batch_size
            return [(i, base + k) for k, i in enumerate(mine)]
        return mine

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            yield self.batch_indices(step)


# ---------------------------------------------------------------------------------------------
# training


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def warmup_cosine_schedule(opt: torch.optim.Optimizer, steps: int, warmup: int):
    """Linear warm-up to the peak over ``warmup`` steps, then cosine decay to 0 at ``steps``.

    The factor of the peak learning rate at step ``s`` is ``(s + 1) / warmup`` during warm-up and
    ``½(1 + cos(π (s − warmup) / (steps − warmup)))`` after it, built from
    ``torch.optim.lr_scheduler`` (``LinearLR`` then ``CosineAnnealingLR``, joined by ``SequentialLR``).
    """
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / warmup, end_factor=1.0,
                                             total_iters=max(1, warmup - 1))
    if warmup <= 1:
        warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=1.0, total_iters=1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps - warmup))
    return torch.optim.lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[warmup])


def train_ranking(model: nn.Module, dataset, *, steps: int, batch_size: int, lr: float, loss: str = "margin",
                  margin: float = 0.1, device="cpu", amp: bool | None = None, log_dir=None, checkpoint_path=None,
                  resume: bool = False, progress: bool = True, num_workers: int = 0, seed: int = 0,
                  checkpoint_every: int = 500, weight_decay: float = 1e-4, warmup_fraction: float = 0.05,
                  description: str = "ATTIQA ranking pretraining", stop_after: int | None = None,
                  freeze_bn: bool | None = None) -> dict:
    """Trains ``model``'s backbone and heads to rank pairs as the teacher labels do.

    Args:
        model: an :class:`attiqa.modeling.heads.ATTIQAModel` (parameters with ``requires_grad=False`` stay frozen).
        dataset: ``dataset[i] -> (image (3, H, W) in [0, 1], labels (5,))``.
        steps: optimisation steps (in total, including resumed ones).
        batch_size: images per step and rank; pairs are formed within the batch.
        lr: peak AdamW learning rate (linear warm-up, cosine decay).
        loss: ``"margin"`` (the method) or ``"l2"`` (ablation).
        margin: ranking margin ``m``.
        device: where to train.
        amp: mixed precision (fp16 + GradScaler); ``None`` = on for CUDA.
        log_dir: TensorBoard folder (rank 0).
        checkpoint_path: training-state file written every ``checkpoint_every`` steps and at the end.
        resume: continue from ``checkpoint_path`` when it exists.
        progress: tqdm bar (rank 0).
        num_workers: DataLoader workers.
        seed: seed of the batch order.
        stop_after: stop (after checkpointing) once this step is reached, as if interrupted; for tests.
        freeze_bn: keep BatchNorm layers in eval mode (ImageNet statistics, no running-stat
            updates). Small batches give noisy batch statistics, and the default TF momentum of
            EfficientNet (0.01) leaves the running statistics far from the trained network's after
            a short run, so ``None`` freezes them when ``batch_size * world_size < 32``.

    Under ``torch.distributed`` (initialised by the caller, e.g. the ``pretrain`` CLI under
    ``torchrun``) the model is wrapped in DistributedDataParallel, each rank gets its own slice of
    every step's draw, and buffers (BatchNorm statistics) are synchronised from rank 0 at the end.

    Returns:
        ``{"steps", "start_step", "final_loss", "mean_loss_last", "per_attribute_loss", "seconds",
        "images_per_second"}``.
    """
    from tqdm.auto import tqdm

    if loss not in LOSSES:
        raise ValueError(f"unknown pretraining loss {loss!r}; choose one of {LOSSES}")
    if len(dataset) < 2:
        raise ValueError("ranking pretraining needs at least 2 images")
    if batch_size < 2:
        raise ValueError("batch_size must be >= 2 (pairs are drawn within each batch)")
    device = torch.device(device)
    amp = (device.type == "cuda") if amp is None else bool(amp)
    rank, world = _dist_info()
    model.to(device)
    unused = getattr(model, "classifier_parameter_names", frozenset())
    for n, p in model.named_parameters():
        if n in unused:  # callers may have unfrozen the whole model (requires_grad_(True))
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warmup = max(1, int(round(warmup_fraction * steps)))
    sched = warmup_cosine_schedule(opt, steps, warmup)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    start = 0
    config = {"steps": steps, "batch_size": batch_size, "lr": lr, "loss": loss, "margin": margin, "seed": seed,
              "weight_decay": weight_decay, "warmup_fraction": warmup_fraction, "world_size": world}
    if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
        ckpt = load_checkpoint(checkpoint_path, map_location="cpu")
        if ckpt["meta"].get("architecture") != dict(model.config):
            raise ValueError(f"{checkpoint_path}: the checkpoint's architecture {ckpt['meta'].get('architecture')} "
                             f"differs from this model's {model.config}")
        saved = ckpt.get("train_config", {})
        for key in ("batch_size", "loss", "seed", "world_size"):
            if key in saved and saved[key] != config[key]:
                raise ValueError(f"{checkpoint_path}: cannot resume with {key}={config[key]!r}; the run used "
                                 f"{saved[key]!r}")
        model.load_state_dict(ckpt["state_dict"], strict=True)
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if "scaler" in ckpt and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        start = int(ckpt["step"])
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = StepSampler(len(dataset), batch_size, steps, start, seed, rank, world,
                          draw_seeds=bool(getattr(dataset, "accepts_draw_seed", False)))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                                         pin_memory=device.type == "cuda", persistent_workers=False)
    writer = None
    if log_dir is not None and rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))

    def save(step: int) -> None:
        if checkpoint_path is None:
            return
        _sync_buffers(model, world)
        if rank == 0:
            save_checkpoint(checkpoint_path, model.state_dict(), pretrained_meta(model, description),
                            optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                            scaler=scaler.state_dict() if scaler.is_enabled() else {}, step=step,
                            train_config=config)

    if freeze_bn is None:
        freeze_bn = batch_size * world < 32
    config["freeze_bn"] = bool(freeze_bn)
    model.train()
    if freeze_bn:
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.eval()
    t0 = time.perf_counter()
    losses, per_attr, step = [], torch.zeros(len(ATTRIBUTES)), start
    bar = tqdm(total=steps, initial=start, desc="pretrain", disable=not progress or rank != 0, dynamic_ncols=True)
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True).float()
        with torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16,
                            enabled=amp):
            scores = net(images).scores
        total, attr = pretraining_loss(loss, scores.float(), labels, margin)
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        step += 1
        losses.append(float(total.detach()))
        per_attr = attr.detach().float().cpu()
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if writer is not None:
            writer.add_scalar("pretrain/loss", losses[-1], step)
            writer.add_scalar("pretrain/lr", sched.get_last_lr()[0], step)
            for name, v in zip(ATTRIBUTES, per_attr.tolist()):
                writer.add_scalar(f"pretrain/loss_{name}", v, step)
        if (checkpoint_every and step % checkpoint_every == 0) or step == steps or step == stop_after:
            save(step)
        if stop_after is not None and step >= stop_after:
            break
    bar.close()
    _sync_buffers(model, world)
    seconds = time.perf_counter() - t0
    if writer is not None:
        writer.close()
    model.eval()
    done = step - start
    return {"steps": step, "start_step": start, "final_loss": losses[-1] if losses else float("nan"),
            "mean_loss_last": float(np.mean(losses[-max(1, len(losses) // 10):])) if losses else float("nan"),
            "per_attribute_loss": dict(zip(ATTRIBUTES, per_attr.tolist())), "seconds": seconds,
            "images_per_second": done * batch_size * world / seconds if seconds > 0 else float("nan")}


def _sync_buffers(model: nn.Module, world: int) -> None:
    """Copies rank 0's buffers (BatchNorm running statistics) to every rank."""
    if world <= 1:
        return
    import torch.distributed as dist

    for buf in model.buffers():
        dist.broadcast(buf.data, src=0)


# ---------------------------------------------------------------------------------------------
# CLI


