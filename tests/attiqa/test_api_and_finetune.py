"""Scoring API, score CLI, and finetune + evaluate end to end on generated miniatures (tiny model)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import attiqa
from attiqa import ATTRIBUTES


def _write_koniq(root, n=10, seed=0):
    rng = np.random.default_rng(seed)
    (root / "1024x768").mkdir(parents=True)
    lines = ['"image_name","c1","c2","c3","c4","c5","c_total","MOS","SD","MOS_zscore"']
    for i in range(n):
        arr = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / "1024x768" / f"{i}.jpg")
        mos = 1 + 4 * i / (n - 1)
        lines.append(f'"{i}.jpg",0,0,0,0,0,0,{mos:.3f},0.1,{mos * 20:.3f}')
    (root / "koniq10k_scores_and_distributions.csv").write_text("\n".join(lines) + "\n")
    return root


def _write_csv_dataset(root, n=8, seed=1):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    rows = ["path,mos"]
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (36, 44, 3), dtype=np.uint8)).save(root / f"im{i}.png")
        rows.append(f"im{i}.png,{rng.uniform(0, 100):.2f}")
    (root / "mos.csv").write_text("\n".join(rows) + "\n")
    return root / "mos.csv"


def test_create_metric_is_differentiable(tiny_attiqa_checkpoint):
    metric = attiqa.create_metric(tiny_attiqa_checkpoint)
    assert metric.lower_better is False and metric.is_starter
    lo, hi = metric.score_range
    x = torch.rand(2, 3, 48, 48, requires_grad=True)
    out = metric(x)
    assert out.mos.shape == (2,) and out.attributes.shape == (2, 5)
    assert torch.all((out.mos >= lo) & (out.mos <= hi))
    out.mos.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="shape"):
        metric(torch.rand(3, 48, 48))


def test_create_metric_rejects_bad_checkpoints(tiny_attiqa_checkpoint, tmp_path):
    from attiqa.checkpoint import load_checkpoint, save_checkpoint

    with pytest.raises(FileNotFoundError, match="not found"):
        attiqa.create_metric(tmp_path / "missing.pt")
    ckpt = load_checkpoint(tiny_attiqa_checkpoint)
    meta, state = dict(ckpt["meta"]), dict(ckpt["state_dict"])
    # another architecture: the stored config says a wider MOS head than the weights have
    arch = json.loads(json.dumps(meta["architecture"]))
    arch["mos_head"]["hidden"] = arch["mos_head"]["hidden"] + 3
    save_checkpoint(tmp_path / "other_arch.pt", state, dict(meta, architecture=arch))
    with pytest.raises(ValueError, match="architecture"):
        attiqa.create_metric(tmp_path / "other_arch.pt")
    # a missing weight
    state.pop(next(k for k in state if k.startswith("mos_head")))
    save_checkpoint(tmp_path / "missing_weight.pt", state, meta)
    with pytest.raises(ValueError, match="missing"):
        attiqa.create_metric(tmp_path / "missing_weight.pt")
    # a pretrained checkpoint has no MOS head
    save_checkpoint(tmp_path / "pre.pt", dict(ckpt["state_dict"]), dict(meta, kind="pretrained"))
    with pytest.raises(ValueError, match="MOS head"):
        attiqa.create_metric(tmp_path / "pre.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError):
        attiqa.create_metric(tmp_path / "junk.pt")


def test_score_cli_json(tiny_attiqa_checkpoint, tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 52, 3), dtype=np.uint8)).save(img)
    r = subprocess.run([sys.executable, "-m", "attiqa", "score", str(img), "--json", "--checkpoint",
                        str(tiny_attiqa_checkpoint)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["path"] == str(img)
    assert set(rows[0]) == {"path", "mos", *ATTRIBUTES}
    metric = attiqa.create_metric(tiny_attiqa_checkpoint)
    assert rows[0]["mos"] == pytest.approx(metric.score_paths([img])[0]["mos"], abs=1e-5)
    assert "starter" in r.stderr.lower()
    bad = subprocess.run([sys.executable, "-m", "attiqa", "score", str(tmp_path / "none.png"), "--checkpoint",
                          str(tiny_attiqa_checkpoint)], capture_output=True, text=True)
    assert bad.returncode == 1 and "no such file" in bad.stderr


def test_finetune_and_evaluate_end_to_end(tiny_attiqa_checkpoint, tmp_path):
    koniq = _write_koniq(tmp_path / "koniq")
    csv_path = _write_csv_dataset(tmp_path / "other")
    small = ["--resize", "36", "--crop", "32", "--batch-size", "4", "--steps", "3"]
    out = tmp_path / "q.pt"
    r = subprocess.run([sys.executable, "-m", "attiqa", "finetune", "--pretrained", str(tiny_attiqa_checkpoint),
                        "--dataset", f"koniq10k={koniq}", "--out", str(out), "--train-fraction", "0.8",
                        "--no-progress", "--device", "cpu", *small], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    metric = attiqa.create_metric(out)
    assert metric.score_range == (1.0, 5.0) and not metric.is_starter
    assert metric.meta["trained_on"] == "koniq10k" and "test_metrics" in metric.meta

    res = tmp_path / "res"
    r = subprocess.run([sys.executable, "-m", "attiqa", "evaluate", "--pretrained", f"tiny={tiny_attiqa_checkpoint}",
                        "--dataset", f"koniq10k={koniq}", "--dataset", f"other={csv_path}",
                        "--protocol", "split", "linear-probe", "data-efficient", "cross",
                        "--cross", "koniq10k:other", "--n-splits", "2", "--data-fractions", "0.5",
                        "--out-dir", str(res), "--device", "cpu", *small], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    md = (res / "results.md").read_text()
    assert "| tiny |" in md and "koniq10k→other" in md and "linear-probe" in md and "data-efficient 50%" in md
    rows = (res / "results.csv").read_text().splitlines()
    assert rows[0] == "model,protocol,train,test,srocc,plcc,krcc,n_splits" and len(rows) == 1 + 3 * 2 + 1
