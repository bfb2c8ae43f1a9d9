"""``python -m attiqa finetune``: fine-tune a MOS head (and the network) on an IQA dataset.

The method is in :mod:`attiqa.training.finetune`; this module is its command line. A missing,
unreadable or invalid ``--dataset`` or ``--pretrained`` (or an image of the dataset that cannot be
read during training) is one line ``attiqa finetune: error: <file>: <cause>`` with the shared
exit code (3 missing, 4 permission denied, 5 invalid, 6 checkpoint with pickled objects; see
:mod:`attiqa.cli.common`); Ctrl-C is exit code 130 (``--resume`` continues from the last ``<out>.state``).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from attiqa.cli.common import EXIT_CODES_HELP, on_file, reports_errors, stage_description
from attiqa.modeling.checkpoint import load_attiqa_model, save_quality_checkpoint
from attiqa.training import finetune as stage
from attiqa.training.finetune import FinetuneConfig, build_quality_model, finetune, predict
from rlisp_common.exit_codes import EXIT_USAGE, InputError

__all__ = ["add_config_arguments", "config_from_args", "main"]


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



@reports_errors("attiqa finetune")
def main(argv: list[str] | None = None) -> int:
    from attiqa.data.datasets import parse_dataset_spec

    p = argparse.ArgumentParser(prog="python -m attiqa finetune", description=stage_description(stage),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EXIT_CODES_HELP)
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
    if not 0 < args.train_fraction <= 1:
        raise InputError("--train-fraction must be in (0, 1]", EXIT_USAGE)
    with on_file(args.dataset.split("=", 1)[-1]):
        dataset = parse_dataset_spec(args.dataset)
    with on_file(args.pretrained):
        attiqa, pre_meta = load_attiqa_model(args.pretrained)
    test_idx = np.array([], dtype=np.int64)
    if args.train_fraction < 1:
        from attiqa.data.splits import random_splits
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
        from attiqa.eval.correlations import correlations
        pred = predict(model, dataset.subset(test_idx), resize=config.resize, crop=config.crop, device=args.device)
        metrics = correlations(pred, dataset.mos[test_idx])
        extra["test_metrics"] = metrics
        print("held-out: " + ", ".join(f"{k.upper()} {v:.4f}" for k, v in metrics.items()))
    save_quality_checkpoint(out, model, description=f"ATTIQA fine-tuned on {dataset.name}", extra=extra)
    print(f"saved {out} ({result['steps']} steps, final loss {result['final_loss']:.4f})")
    return 0



if __name__ == "__main__":
    sys.exit(main())
