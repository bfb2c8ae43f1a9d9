"""``python -m attiqa pretrain``: attribute-aware ranking pretraining (single process or ``torchrun``).

The method is in :mod:`attiqa.training.pretrain`; this module is its command line. A missing,
unreadable or invalid ``--images``, ``--labels`` or ``--weights`` (or an image that cannot be read
during training) is one line ``attiqa pretrain: error: <file>: <cause>`` with the shared exit code
(3 missing, 4 permission denied, 5 invalid, 6 pickled objects; see :mod:`attiqa.cli.common`);
Ctrl-C is exit code 130 (``--resume`` continues from the last ``OUT_DIR/last.pt``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from attiqa.attributes import ATTRIBUTES
from attiqa.cli.common import EXIT_CODES_HELP, on_file, reports_errors, stage_description
from attiqa.data.labels import write_labels
from attiqa.modeling.checkpoint import pretrained_meta
from attiqa.training import pretrain as stage
from attiqa.training.losses import LOSSES
from attiqa.training.pretrain import LabelledImages
from attiqa.utils.files import atomic_write_text
from rlisp_common.exit_codes import EXIT_BAD_INPUT, EXIT_MISSING, InputError

__all__ = ["build_parser", "main"]


def _label_on_the_fly(files, teacher_name: str, clip_model: str | None, resize: int, device, progress: bool):
    from tqdm.auto import tqdm

    from attiqa.teachers import create_teacher
    from attiqa.data.transforms import load_image, resize_short_edge

    kw = {"model": clip_model} if (teacher_name == "clip" and clip_model) else {}
    teacher = create_teacher(teacher_name, **kw).to(device).eval()
    out = []
    with torch.no_grad():
        for p in tqdm(files, desc=f"labelling ({teacher_name})", disable=not progress):
            out.append(teacher(resize_short_edge(load_image(p), resize)[None].to(device)).float().cpu())
    return torch.cat(out)



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m attiqa pretrain", description=stage_description(stage),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EXIT_CODES_HELP)
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



@reports_errors("attiqa pretrain")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch.distributed as dist

    from attiqa.utils.device import init_distributed, resolve_device, world_info

    world = world_info()[2]
    device = resolve_device(args.device)
    rank = init_distributed(device)
    out = Path(args.out_dir)
    try:
        from attiqa.modeling.checkpoint import save_checkpoint
        from attiqa.modeling.heads import build_model

        root = Path(args.images)
        if not root.is_dir():
            raise InputError("image folder not found" if not root.exists() else "not a folder",
                             EXIT_MISSING if not root.exists() else EXIT_BAD_INPUT, path=root)
        if args.labels:
            from attiqa.data.labels import read_labels_file

            with on_file(args.labels):
                files, scores = read_labels_file(args.labels, root=root)  # CSV or npz
                labels = torch.as_tensor(np.asarray(scores, dtype=np.float32))
                if labels.ndim != 2 or labels.shape[1] != len(ATTRIBUTES) or not torch.isfinite(labels).all():
                    raise ValueError(f"expected finite scores of shape (N, {len(ATTRIBUTES)}), got {tuple(labels.shape)}")
                absent = [p for p in files if not p.is_file()]
                if absent:
                    raise FileNotFoundError(f"{len(absent)} of its images are missing, e.g. {absent[0]}")
        else:
            from attiqa.data.image_folder import list_images

            with on_file(root):
                files = list_images(root)
                if len(files) < 2:
                    raise FileNotFoundError(f"need at least 2 images, found {len(files)}")
            labels = _label_on_the_fly(files, args.teacher, args.clip_model, args.resize, device,
                                       not args.no_progress and rank == 0)
            if rank == 0:
                write_labels(out / "labels.csv", files, labels, root=root)
        out.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in vars(args).items() if k != "stop_after"}
        config["world_size"] = world
        if rank == 0:
            atomic_write_text(out / "config.json", json.dumps(config, indent=2))
        torch.manual_seed(args.seed)
        model = build_model(args.backbone, pretrained=not args.no_imagenet, head_hidden=args.head_hidden,
                            weights=args.weights)
        data = LabelledImages(files, labels, args.resize, args.crop)
        desc = f"ATTIQA {args.backbone} ranking-pretrained on {root} ({'labels ' + args.labels if args.labels else args.teacher + ' teacher'}, {args.loss} loss)"
        info = stage.train_ranking(model, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                   loss=args.loss, margin=args.margin, device=device, amp=args.amp,
                                   log_dir=out / "tb", checkpoint_path=out / "last.pt", resume=args.resume,
                                   progress=not args.no_progress, num_workers=args.workers, seed=args.seed,
                                   checkpoint_every=args.checkpoint_every, description=desc,
                                   stop_after=args.stop_after)
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
    finally:
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    return 0



if __name__ == "__main__":
    sys.exit(main())
