"""``python -m attiqa evaluate``: the SROCC/PLCC/KRCC protocols and the results table.

The protocols are in :mod:`attiqa.eval.protocols`, the ablation pretraining in
:mod:`attiqa.training.ablation`; this module is their command line.

A ``--dataset`` or ``--pretrained`` checkpoint that is missing, unreadable or invalid is one line
``attiqa evaluate: error: <file>: <cause>``; the other datasets and checkpoints are still
evaluated (a cross pair with a failed dataset is left out) and the exit code is the first
failure's (3 missing, 4 permission denied, 5 invalid, 6 checkpoint with pickled objects; see
:mod:`attiqa.cli.common`).
"""
from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import replace
from pathlib import Path

from attiqa.cli.common import EXIT_CODES_HELP, collected, on_file, reports_errors, stage_description
from attiqa.cli.finetune import add_config_arguments, config_from_args
from attiqa.eval import protocols as stage
from attiqa.eval.protocols import ResultsTable, cross_dataset, split_protocol
from attiqa.modeling.checkpoint import load_attiqa_model
from attiqa.training.ablation import pretrain_variant
from attiqa.training.finetune import build_quality_model
from rlisp_common.exit_codes import EXIT_USAGE, Failures, InputError

__all__ = ["main"]

PROG = "attiqa evaluate"


_KNOWN = {"koniq10k", "koniq", "spaq", "clive", "livec", "livechallenge", "flive", "ava", "agiqa3k", "agiqa"}



def _parse_named(spec: str) -> tuple[str, str]:
    if "=" in spec:
        name, value = spec.split("=", 1)
        return name, value
    return Path(spec).stem, spec



@reports_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    from attiqa.data.datasets import load_dataset, load_csv

    p = argparse.ArgumentParser(prog="python -m attiqa evaluate", description=stage_description(stage),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EXIT_CODES_HELP)
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

    failures = Failures(prefix=f"{PROG}: error")
    datasets = {}
    for spec in args.dataset:  # a bad dataset or checkpoint is one line; the others are evaluated
        name, root = _parse_named(spec) if "=" in spec else ("csv", spec)
        with collected(failures, root):
            if name.lower().replace("-", "").replace("_", "") in _KNOWN and name != "csv":
                ds = load_dataset(name, root)
                datasets[ds.name] = ds
            else:  # a generic CSV, named NAME (or after its folder for csv=PATH)
                ds = load_csv(root)
                datasets[name if name != "csv" else Path(root).resolve().parent.name] = ds
    models = dict(_parse_named(s) for s in args.pretrained)
    if args.ablation:
        if not args.pretrain_images:
            raise InputError("--ablation needs --pretrain-images", EXIT_USAGE)
        out_dir = Path(args.out_dir) / "ablation_checkpoints"
        for variant in ["baseline", *args.ablation]:
            path = out_dir / f"{variant}.pt"
            if not path.is_file():
                print(f"pretraining ablation variant {variant} ...", file=sys.stderr)
                with on_file(args.pretrain_images):
                    pretrain_variant(args.pretrain_images, path, variant=variant, teacher=args.teacher,
                                     clip_model=args.clip_model, backbone=args.backbone,
                                     pretrained=not args.no_imagenet, steps=args.pretrain_steps,
                                     crop=args.pretrain_crop, resize=max(args.pretrain_crop, 256),
                                     device=str(args.device), seed=args.split_seed)
            models[{"baseline": "ATTIQA (pretrained here)", "good-bad-prompt": "single good/bad prompt",
                    "l2-loss": "L2 pretraining loss"}[variant]] = str(path)
    if not models:
        raise InputError("give at least one --pretrained NAME=CKPT or --ablation", EXIT_USAGE)
    loaded = {}
    for name, path in models.items():
        with collected(failures, path):
            loaded[name] = load_attiqa_model(path)[0]
    if not datasets or not loaded:
        return failures.code  # each failure has had its line

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
                    if failures:  # a dataset that failed to load has had its line: its pairs are left out
                        continue
                    raise InputError(f"--cross {a}:{b} names a dataset not given", EXIT_USAGE)
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
    return failures.code



if __name__ == "__main__":
    sys.exit(main())
