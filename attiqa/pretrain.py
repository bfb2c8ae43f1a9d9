"""Attribute-aware pretraining: the backbone and five heads learn the teacher's rankings.

``python -m attiqa pretrain --images DIR [--labels labels.csv | --teacher analytic] --out-dir RUN``

Every step draws a batch, and every pair of images in it is a ranking example for each of the
five attributes (margin-ranking loss, m = 0.1, :mod:`attiqa.losses`; ``--loss l2`` is the
regression ablation). Mixed precision on CUDA, DistributedDataParallel under ``torchrun``
(NCCL on GPUs, gloo on CPUs), TensorBoard logs, and a training-state checkpoint with the
configuration embedded that ``--resume`` continues exactly (same batches, same weights as an
uninterrupted run).

Outputs in ``--out-dir``: ``config.json``, ``last.pt`` (training state), ``pretrained.pt``
(``kind="pretrained"``, the input of ``python -m attiqa finetune``), ``tb/`` (TensorBoard).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attiqa import ATTRIBUTES
from attiqa.losses import LOSSES, pretraining_loss

__all__ = ["train_ranking", "StepSampler", "LabelledImages", "read_labels", "write_labels", "pretrained_meta",
           "main"]


# ---------------------------------------------------------------------------------------------
# data


def read_labels(path, root=None) -> tuple[list[Path], torch.Tensor]:
    """Reads a labels file: CSV with a ``path`` column and one column per attribute.

    Relative paths are taken relative to ``root`` (default: the labels file's folder).

    Returns:
        ``(paths, labels (N, 5) float32)``.

    Raises:
        FileNotFoundError / ValueError: missing file, missing columns, non-finite scores.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    root = Path(root) if root is not None else path.parent
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in ("path", *ATTRIBUTES) if c not in cols]
        if missing:
            raise ValueError(f"{path}: labels file lacks the columns {missing} (needs path + {list(ATTRIBUTES)})")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path}: labels file has no rows")
    try:
        labels = torch.tensor([[float(r[a]) for a in ATTRIBUTES] for r in rows], dtype=torch.float32)
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric attribute score ({exc})") from None
    if not torch.isfinite(labels).all():
        raise ValueError(f"{path}: NaN or infinite attribute scores")
    paths = [Path(r["path"]) if Path(r["path"]).is_absolute() else root / r["path"] for r in rows]
    return paths, labels


def write_labels(path, paths, labels: torch.Tensor, root=None) -> Path:
    """Writes a labels CSV atomically (paths relative to ``root`` when given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", *ATTRIBUTES])
        for p, row in zip(paths, labels.tolist()):
            p = Path(p)
            rel = p.relative_to(root) if root is not None and p.is_relative_to(root) else p
            w.writerow([rel.as_posix(), *(f"{v:.6f}" for v in row)])
    os.replace(tmp, path)
    return path


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
        from attiqa.transforms import load_image, resize_short_edge

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


def pretrained_meta(model: nn.Module, description: str, extra: dict | None = None) -> dict:
    """``meta`` of a ``kind="pretrained"`` checkpoint for ``model`` (an :class:`attiqa.models.ATTIQAModel`)."""
    meta = {"kind": "pretrained", "architecture": dict(model.config), "attributes": list(ATTRIBUTES),
            "normalization": {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()},
            "starter": False, "description": description}
    meta.update(extra or {})
    return meta


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train_ranking(model: nn.Module, dataset, *, steps: int, batch_size: int, lr: float, loss: str = "margin",
                  margin: float = 0.1, device="cpu", amp: bool | None = None, log_dir=None, checkpoint_path=None,
                  resume: bool = False, progress: bool = True, num_workers: int = 0, seed: int = 0,
                  checkpoint_every: int = 500, weight_decay: float = 1e-4, warmup_fraction: float = 0.05,
                  description: str = "ATTIQA ranking pretraining", stop_after: int | None = None,
                  freeze_bn: bool | None = None) -> dict:
    """Trains ``model``'s backbone and heads to rank pairs as the teacher labels do.

    Args:
        model: an :class:`attiqa.models.ATTIQAModel` (parameters with ``requires_grad=False`` stay frozen).
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

    from attiqa.checkpoint import load_checkpoint, save_checkpoint

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
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, warmup))
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


def _label_on_the_fly(files, teacher_name: str, clip_model: str | None, resize: int, device, progress: bool):
    from tqdm.auto import tqdm

    from attiqa.teachers import create_teacher
    from attiqa.transforms import load_image, resize_short_edge

    kw = {"model": clip_model} if (teacher_name == "clip" and clip_model) else {}
    teacher = create_teacher(teacher_name, **kw).to(device).eval()
    out = []
    with torch.no_grad():
        for p in tqdm(files, desc=f"labelling ({teacher_name})", disable=not progress):
            out.append(teacher(resize_short_edge(load_image(p), resize)[None].to(device)).float().cpu())
    return torch.cat(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m attiqa pretrain", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", required=True, help="image folder (any depth) or the root the labels file refers to")
    p.add_argument("--labels", default=None,
                   help="labels file from `python -m attiqa pseudo-label` (.csv: path + five attribute columns, or .npz); "
                        "without it the --teacher labels the images first")
    p.add_argument("--teacher", default="analytic", choices=("analytic", "clip"),
                   help="teacher used when no --labels file is given")
    p.add_argument("--clip-model", default=None, help="CLIP hub id or local folder for --teacher clip")
    p.add_argument("--out-dir", required=True, help="run folder (config.json, last.pt, pretrained.pt, tb/)")
    p.add_argument("--backbone", default="efficientnet_lite0", choices=("efficientnet_lite0", "resnet50"))
    p.add_argument("--weights", default=None, help="ImageNet state-dict file for the backbone (resnet50: torchvision "
                                                   "format); default: the packaged EfficientNet-Lite0 weights")
    p.add_argument("--no-imagenet", action="store_true", help="start the backbone from random weights")
    p.add_argument("--head-hidden", type=int, default=256, help="hidden width of each attribute head")
    p.add_argument("--steps", type=int, default=20000, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=64, help="images per step and process")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (warm-up, cosine decay)")
    p.add_argument("--loss", default="margin", choices=LOSSES, help="margin ranking (method) or l2 (ablation)")
    p.add_argument("--margin", type=float, default=0.1, help="ranking margin m")
    p.add_argument("--resize", type=int, default=256, help="short edge before the random crop")
    p.add_argument("--crop", type=int, default=224, help="crop side")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers per process")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--amp", default=None, action=argparse.BooleanOptionalAction,
                   help="mixed precision (default: on with CUDA)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between training-state checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    p.add_argument("--seed", type=int, default=0, help="seed of the head initialisation and the batch order")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch.distributed as dist

    from attiqa.distributed import init_distributed, resolve_device, world_info

    world = world_info()[2]
    device = resolve_device(args.device)
    rank = init_distributed(device)
    out = Path(args.out_dir)
    try:
        from attiqa.checkpoint import save_checkpoint
        from attiqa.models import build_model

        root = Path(args.images)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {root}")
        if args.labels:
            from attiqa.pseudo_label import read_labels_file

            files, scores = read_labels_file(args.labels, root=root)  # CSV or npz
            labels = torch.as_tensor(np.asarray(scores, dtype=np.float32))
            if labels.ndim != 2 or labels.shape[1] != len(ATTRIBUTES) or not torch.isfinite(labels).all():
                raise ValueError(f"{args.labels}: expected finite scores of shape (N, {len(ATTRIBUTES)}), "
                                 f"got {tuple(labels.shape)}")
            absent = [p for p in files if not p.is_file()]
            if absent:
                raise FileNotFoundError(f"{len(absent)} images of {args.labels} are missing, e.g. {absent[0]}")
        else:
            from attiqa.image_folder import list_images

            files = list_images(root)
            if len(files) < 2:
                raise FileNotFoundError(f"need at least 2 images under {root}, found {len(files)}")
            labels = _label_on_the_fly(files, args.teacher, args.clip_model, args.resize, device,
                                       not args.no_progress and rank == 0)
            if rank == 0:
                write_labels(out / "labels.csv", files, labels, root=root)
        out.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in vars(args).items() if k != "stop_after"}
        config["world_size"] = world
        if rank == 0:
            tmp = out / ".config.json.tmp"
            tmp.write_text(json.dumps(config, indent=2))
            os.replace(tmp, out / "config.json")
        torch.manual_seed(args.seed)
        model = build_model(args.backbone, pretrained=not args.no_imagenet, head_hidden=args.head_hidden,
                            weights=args.weights)
        data = LabelledImages(files, labels, args.resize, args.crop)
        desc = f"ATTIQA {args.backbone} ranking-pretrained on {root} ({'labels ' + args.labels if args.labels else args.teacher + ' teacher'}, {args.loss} loss)"
        info = train_ranking(model, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr, loss=args.loss,
                             margin=args.margin, device=device, amp=args.amp, log_dir=out / "tb",
                             checkpoint_path=out / "last.pt", resume=args.resume,
                             progress=not args.no_progress, num_workers=args.workers, seed=args.seed,
                             checkpoint_every=args.checkpoint_every, description=desc, stop_after=args.stop_after)
        if rank == 0 and info["steps"] >= args.steps:
            save_checkpoint(out / "pretrained.pt", model.state_dict(),
                            pretrained_meta(model, desc, {"pretrain_config": config,
                                                          "pretrain_info": {k: v for k, v in info.items()
                                                                            if not isinstance(v, dict)}}))
            print(f"pretrained {info['steps']} steps in {info['seconds']:.0f} s "
                  f"({info['images_per_second']:.1f} images/s); final loss {info['final_loss']:.4f}; "
                  f"wrote {out / 'pretrained.pt'}")
        elif rank == 0:
            print(f"stopped at step {info['steps']} of {args.steps}; continue with --resume")
    except (FileNotFoundError, ValueError) as exc:
        print(f"attiqa pretrain: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
