"""Two CPU processes under ``torchrun`` (gloo): sharded pseudo-labelling and DDP pretraining."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attiqa import ATTRIBUTES

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.distributed,  # under CI=true a skip here fails the run (tests/conftest.py)
              pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                 reason="torch.distributed with gloo is required")]


def _torchrun(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist_imgs")
    rng = np.random.default_rng(0)
    for i in range(14):
        base = rng.random((6, 8, 3)) * rng.uniform(0.2, 1.0)
        arr = np.kron(base, np.ones((6, 6, 1)))
        arr = np.clip(arr + rng.normal(0, rng.uniform(0, 0.1), arr.shape), 0, 1)
        p = root / f"class{i % 3}" / f"{i:03d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray((arr * 255).astype(np.uint8)).save(p)
    return root


@pytest.fixture(scope="module")
def two_rank_labels(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist_labels") / "labels.csv"
    r = _torchrun(["-m", "attiqa", "pseudo-label", "--images", str(images), "--out", str(out), "--teacher", "analytic",
                   "--size", "32", "--batch-size", "2", "--shard-size", "3", "--workers", "0", "--no-progress"])
    return out, r


def test_two_ranks_label_every_image_exactly_once(images, two_rank_labels, tmp_path):
    from attiqa.cli.pseudo_label import main
    from attiqa.training.pseudo_label import read_shard, shard_path, shard_ranges

    out, r = two_rank_labels
    assert r.returncode == 0, r.stdout + r.stderr
    # both ranks worked, on disjoint shards (14 images / 3 per shard = 5 shards: rank 0 gets 3, rank 1 gets 2)
    assert "rank 0: labelled 3 shards" in r.stderr and "rank 1: labelled 2 shards" in r.stderr
    work = out.with_name(out.name + ".shards")
    seen = np.concatenate([read_shard(shard_path(work, s), rg)["index"] for s, rg in enumerate(shard_ranges(14, 3))])
    assert sorted(seen.tolist()) == list(range(14))
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)) == 14
    # identical to a single-process run
    single = tmp_path / "single.csv"
    assert main(["--images", str(images), "--out", str(single), "--teacher", "analytic", "--size", "32",
                 "--workers", "0", "--no-progress"]) == 0
    with open(single, newline="") as f:
        ref = {row["path"]: [float(row[a]) for a in ATTRIBUTES] for row in csv.DictReader(f)}
    for row in rows:
        assert [float(row[a]) for a in ATTRIBUTES] == pytest.approx(ref[row["path"]], abs=1e-6)


_HELPER = """
    # Runs `python -m attiqa <argv>` unchanged, but records each rank's final weights.
    import sys
    from pathlib import Path

    import torch
    import torch.distributed as dist

    import attiqa.training.pretrain as pretrain

    _orig = pretrain.train_ranking

    def _recording(model, dataset, **kw):
        info = _orig(model, dataset, **kw)
        rank = dist.get_rank() if dist.is_initialized() else 0
        world = dist.get_world_size() if dist.is_initialized() else 1
        state = {{k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        torch.save({{"state": state, "world": world, "info": {{k: v for k, v in info.items()
                                                             if not isinstance(v, dict)}}}},
                   Path({out!r}) / f"rank{{rank}}.pt")
        return info

    pretrain.train_ranking = _recording
    from attiqa.__main__ import main

    sys.exit(main(sys.argv[1:]))
"""


def test_torchrun_pretraining_keeps_ranks_identical(images, tmp_path):
    """DDP over gloo: after a few steps both ranks hold the same weights (and buffers), and rank 0's
    checkpoint is that model. The pretraining reads a labels file written by `pseudo-label`
    (labelled in-process here, so the test does not wait for the two-rank labelling)."""
    from attiqa.modeling.checkpoint import load_checkpoint
    from attiqa.cli.pseudo_label import main as pseudo_label

    labels = tmp_path / "labels.csv"
    assert pseudo_label(["--images", str(images), "--out", str(labels), "--teacher", "analytic", "--size", "32",
                         "--workers", "0", "--no-progress"]) == 0
    helper = tmp_path / "run_recording.py"
    helper.write_text(textwrap.dedent(_HELPER.format(out=str(tmp_path))))
    run = tmp_path / "run"
    r = _torchrun([str(helper), "pretrain", "--images", str(images), "--labels", str(labels), "--out-dir", str(run),
                   "--backbone", "efficientnet_lite0", "--no-imagenet", "--head-hidden", "16", "--steps", "3",
                   "--batch-size", "3", "--resize", "36", "--crop", "32", "--workers", "0", "--lr", "1e-3",
                   "--device", "cpu", "--checkpoint-every", "0", "--no-progress"])
    assert r.returncode == 0, r.stdout + r.stderr
    r0, r1 = (torch.load(tmp_path / f"rank{k}.pt", weights_only=True) for k in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["info"]["steps"] == 3
    assert r0["state"].keys() == r1["state"].keys()
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    ckpt = load_checkpoint(run / "pretrained.pt")
    assert ckpt["meta"]["kind"] == "pretrained"
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(v, r0["state"][k]), k
    # and training did move them away from the model the CLI starts from (same seed)
    from attiqa.modeling.heads import build_model

    torch.manual_seed(0)
    fresh = build_model("efficientnet_lite0", pretrained=False, head_hidden=16).state_dict()
    changed = [k for k, v in fresh.items() if v.is_floating_point() and not torch.equal(v, r0["state"][k])]
    assert len(changed) > len(fresh) // 2
