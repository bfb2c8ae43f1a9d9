"""Scoring API, score CLI, and finetune + evaluate end to end on generated miniatures (tiny model).

The CLIs run in-process through their ``main(argv)`` (one real subprocess checks the
``python -m attiqa score --json`` contract), which keeps the module fast on a small CPU.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import replace
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


def _png(path, seed=0, size=(52, 40)):
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _cli(argv, capsys):
    from attiqa.__main__ import main

    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_create_metric_is_differentiable(tiny_attiqa_checkpoint):
    metric = attiqa.create_metric(tiny_attiqa_checkpoint)
    assert metric.lower_better is False and metric.is_starter
    lo, hi = metric.score_range
    assert (lo, hi) == tuple(metric.meta["score_range"])
    x = torch.rand(2, 3, 48, 48, requires_grad=True)
    out = metric.quality(x)  # the named output, differentiable (what the reward reads)
    assert out.mos.shape == (2,) and out.attributes.shape == (2, 5)
    assert torch.all((out.mos >= lo) & (out.mos <= hi))
    out.mos.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # the metric's weights are frozen: the gradient goes to the images only
    assert all(p.grad is None for p in metric.parameters())
    # pyiqa-style call: a (B,) score without gradient, the attributes by a method
    score = metric(x)
    assert score.shape == (2,) and not score.requires_grad and torch.equal(score, out.mos.detach())
    assert torch.equal(metric.attributes(x), out.attributes.detach()) and not metric.attributes(x).requires_grad
    with pytest.raises(ValueError, match="shape"):
        metric(torch.rand(3, 48, 48))
    bad = torch.rand(1, 3, 48, 48)
    bad[0, 1, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        metric(bad)
    assert metric(bad, validate=False).shape == (1,)  # the check can be turned off in hot loops
    # the metric stays in eval mode: a batch's score does not depend on the other images in it
    a = torch.rand(1, 3, 48, 48)
    metric.train()
    assert torch.allclose(metric(a), metric(torch.cat([a, torch.rand(3, 3, 48, 48)]))[:1], atol=1e-5)


def test_create_metric_rejects_bad_checkpoints(tiny_attiqa_checkpoint, tmp_path):
    from attiqa.modeling.checkpoint import load_checkpoint, save_checkpoint

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
    missing = dict(state)
    missing.pop(next(k for k in missing if k.startswith("mos_head")))
    save_checkpoint(tmp_path / "missing_weight.pt", missing, meta)
    with pytest.raises(ValueError, match="missing"):
        attiqa.create_metric(tmp_path / "missing_weight.pt")
    # an unexpected extra weight
    save_checkpoint(tmp_path / "extra_weight.pt", dict(state, **{"mos_head.extra": torch.zeros(2)}), meta)
    with pytest.raises(ValueError, match="unexpected"):
        attiqa.create_metric(tmp_path / "extra_weight.pt")
    # NaN weights
    nan_state = dict(state)
    key = next(k for k in nan_state if k.startswith("mos_head") and k.endswith("weight"))
    nan_state[key] = torch.full_like(nan_state[key], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", nan_state, meta)
    with pytest.raises(ValueError, match="NaN"):
        attiqa.create_metric(tmp_path / "nan.pt")
    # normalisation in the metadata that differs from the weights' buffers
    norm = {"mean": [0.1, 0.2, 0.3], "std": [1.0, 1.0, 1.0]}
    save_checkpoint(tmp_path / "norm.pt", state, dict(meta, normalization=norm))
    with pytest.raises(ValueError, match="normalisation"):
        attiqa.create_metric(tmp_path / "norm.pt")
    # a pretrained checkpoint has no MOS head
    save_checkpoint(tmp_path / "pre.pt", state, dict(meta, kind="pretrained"))
    with pytest.raises(ValueError, match="MOS head"):
        attiqa.create_metric(tmp_path / "pre.pt")
    # a plain state dict (another project's file) and junk bytes
    torch.save(state, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not an ATTIQA checkpoint"):
        attiqa.create_metric(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable"):
        attiqa.create_metric(tmp_path / "junk.pt")


def test_score_cli_json_subprocess(tiny_attiqa_checkpoint, tmp_path):
    img = _png(tmp_path / "x.png")
    r = subprocess.run([sys.executable, "-m", "attiqa", "score", str(img), "--json", "--checkpoint",
                        str(tiny_attiqa_checkpoint)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["path"] == str(img)
    assert set(rows[0]) == {"path", "mos", *ATTRIBUTES}
    metric = attiqa.create_metric(tiny_attiqa_checkpoint)
    expect = metric.quality(torch.from_numpy(np.asarray(Image.open(img), dtype=np.float32) / 255).permute(2, 0, 1)[None])
    assert rows[0]["mos"] == pytest.approx(float(expect.mos[0]), abs=1e-5)
    for name, v in zip(ATTRIBUTES, expect.attributes[0].tolist()):
        assert rows[0][name] == pytest.approx(v, abs=1e-5)
    assert "starter" in r.stderr.lower()


def test_score_cli_folders_and_errors(tiny_attiqa_checkpoint, tmp_path, capsys):
    ck = ["--checkpoint", str(tiny_attiqa_checkpoint)]
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    paths = [_png(tmp_path / "imgs" / "b.png", 1), _png(tmp_path / "imgs" / "sub" / "a.jpg", 2)]
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    rc, out, err = _cli(["score", str(tmp_path / "imgs"), "--json", *ck], capsys)
    assert rc == 0, err
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(p) for p in sorted(paths)]
    rc, out, err = _cli(["score", str(paths[0]), *ck], capsys)  # the plain-text table
    assert rc == 0 and "mos=" in out and "sharpness=" in out

    from rlisp_common.exit_codes import EXIT_BAD_INPUT, EXIT_MISSING

    def fails(argv, message, code=EXIT_BAD_INPUT):
        rc, out, err = _cli(["score", *argv], capsys)
        assert rc == code, (argv, out, err)
        lines = [line for line in err.splitlines() if "error" in line]
        assert len(lines) == 1 and message in lines[0], err

    fails([str(tmp_path / "none.png"), *ck], "no such file", EXIT_MISSING)
    (tmp_path / "fake.png").write_bytes(b"\x89PNG not really")
    fails([str(tmp_path / "fake.png"), *ck], "not a readable image")
    fails([str(paths[0]), "--checkpoint", str(tmp_path / "nope.pt")], "not found", EXIT_MISSING)
    from attiqa.modeling.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(tiny_attiqa_checkpoint)
    arch = json.loads(json.dumps(ckpt["meta"]["architecture"]))
    arch["attiqa"]["head_hidden"] += 1
    save_checkpoint(tmp_path / "other.pt", ckpt["state_dict"], dict(ckpt["meta"], architecture=arch))
    fails([str(paths[0]), "--checkpoint", str(tmp_path / "other.pt")], "architecture")
    state = {k: (v * float("nan") if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    save_checkpoint(tmp_path / "nan.pt", state, ckpt["meta"])
    fails([str(paths[0]), "--checkpoint", str(tmp_path / "nan.pt")], "NaN")


def test_score_without_checkpoint_uses_cached_starter(tiny_attiqa_checkpoint, tmp_path, monkeypatch, capsys):
    import shutil

    from attiqa.training.starter import build as starter

    monkeypatch.setenv("RLISP_CACHE", str(tmp_path / "cache"))
    target = starter.starter_path()
    assert target == tmp_path / "cache" / "attiqa" / f"starter-v{starter.STARTER_VERSION}.pt"
    target.parent.mkdir(parents=True)
    shutil.copy(tiny_attiqa_checkpoint, target)
    img = _png(tmp_path / "x.png")
    rc, out, err = _cli(["score", str(img), "--json"], capsys)
    assert rc == 0, err
    assert "STARTER" in err and "not the paper" in err
    assert set(json.loads(out)) == {"path", "mos", *ATTRIBUTES}
    assert attiqa.create_metric().checkpoint_path == target
    # a cached file that is not a usable checkpoint: one message that says how to rebuild
    target.write_bytes(b"broken")
    rc, out, err = _cli(["score", str(img)], capsys)
    from rlisp_common.exit_codes import EXIT_BAD_INPUT

    assert rc == EXIT_BAD_INPUT and "build-starter --force" in err


def test_ensure_starter_builds_once_on_first_use(tmp_path, monkeypatch):
    from attiqa.training.starter import build as starter

    monkeypatch.setenv("RLISP_CACHE", str(tmp_path))
    for k, v in starter.PINNED_ISA_ENV.items():  # as if pinned already: the build runs in this process
        monkeypatch.setenv(k, v)
    calls, real_build = [], starter.build_starter

    def fake_build(path, config=None, progress=True):  # records the request, builds the tiny model
        calls.append(config)
        return real_build(path, starter.StarterConfig.tiny(), progress=False)

    monkeypatch.setattr(starter, "build_starter", fake_build)
    p = starter.ensure_starter(progress=False)
    assert p == starter.starter_path() and p.is_file() and len(calls) == 1
    assert isinstance(calls[0], starter.StarterConfig) and calls[0].pretrained  # the real configuration
    assert starter.ensure_starter(progress=False) == p and len(calls) == 1  # cached
    meta = attiqa.create_metric(p).meta
    assert meta["starter"] is True and "not the paper" in meta["description"]
    from attiqa.training.starter.pushes import DIRECTIONS

    assert set(meta["holdout_report"]["mos"]) == set(DIRECTIONS)


def test_unpinned_process_builds_the_starter_in_a_pinned_child(tmp_path, monkeypatch):
    from attiqa.training.starter import build as starter

    monkeypatch.setattr(starter.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert not starter.isa_pinned()
    runs = []

    def fake_run(cmd, env=None, check=False):
        runs.append((cmd, env))
        return subprocess.CompletedProcess(cmd, len(runs) - 1)  # the first run succeeds, the second fails

    monkeypatch.setattr(starter.subprocess, "run", fake_run)
    monkeypatch.setattr(starter, "build_starter", lambda *a, **k: pytest.fail("built in the unpinned process"))
    assert starter.build_starter_pinned(tmp_path / "s.pt", tiny=True, progress=False) == tmp_path / "s.pt"
    cmd, env = runs[0]
    assert cmd[1:] == ["-m", "attiqa", "build-starter", "--force", "--out", str(tmp_path / "s.pt"), "--tiny",
                       "--quiet"]
    assert starter.isa_pinned(env) and env["ATEN_CPU_CAPABILITY"] == "avx2" and "PATH" in env
    with pytest.raises(RuntimeError, match="exit code 1"):
        starter.build_starter_pinned(tmp_path / "t.pt")
    assert "--tiny" not in runs[1][0] and "--quiet" not in runs[1][0]


def test_predict_averages_five_crops(tiny_attiqa_checkpoint, tmp_path):
    from attiqa.data.datasets import load_csv
    from attiqa.training.finetune import predict
    from attiqa.data.transforms import load_image, resize_short_edge

    ds = load_csv(_write_csv_dataset(tmp_path / "d", n=3))
    model = attiqa.create_metric(tiny_attiqa_checkpoint).model
    pred = predict(model, ds, resize=36, crop=32)
    for i, p in enumerate(ds.paths):
        img = resize_short_edge(load_image(p), 36)
        _, h, w = img.shape
        boxes = [(0, 0), (0, w - 32), (h - 32, 0), (h - 32, w - 32), ((h - 32) // 2, (w - 32) // 2)]
        with torch.no_grad():
            manual = np.mean([float(model(img[None, :, y:y + 32, x:x + 32]).mos) for y, x in boxes])
        assert pred[i] == pytest.approx(manual, abs=1e-5)


def test_linear_probe_freezes_backbone_and_resume(tiny_attiqa_checkpoint, tmp_path):
    from attiqa.data.datasets import load_koniq10k
    from attiqa.modeling.checkpoint import load_attiqa_model
    from attiqa.training.finetune import FinetuneConfig, build_quality_model, finetune

    ds = load_koniq10k(_write_koniq(tmp_path / "koniq", n=6))
    base, _ = load_attiqa_model(tiny_attiqa_checkpoint)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    cfg = FinetuneConfig(steps=3, batch_size=3, resize=36, crop=32, linear_probe=True)
    model = build_quality_model(base, ds.score_range, cfg)
    assert len([m for m in model.mos_head.modules() if isinstance(m, torch.nn.Linear)]) == 1
    head0 = [p.clone() for p in model.mos_head.parameters()]
    res = finetune(model, ds, cfg, progress=False)
    assert res["steps"] == 3
    after = model.attiqa.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics unchanged
    assert any(not torch.equal(a, b) for a, b in zip(head0, model.mos_head.parameters()))

    # resumable: 2 steps, then resume to 4 continues from the saved state
    full_cfg = FinetuneConfig(steps=4, batch_size=3, resize=36, crop=32, dropout=0.0)
    state = tmp_path / "q.pt.state"
    m1 = build_quality_model(load_attiqa_model(tiny_attiqa_checkpoint)[0], ds.score_range, full_cfg)
    first = finetune(m1, ds, replace(full_cfg, steps=2), progress=False,
                     state_path=state, save_every=1)
    assert first["steps"] == 2 and state.is_file()
    m2 = build_quality_model(load_attiqa_model(tiny_attiqa_checkpoint)[0], ds.score_range, full_cfg)
    second = finetune(m2, ds, full_cfg, progress=False, state_path=state, resume=True)
    assert second["steps"] == 4 and len(second["losses"]) == 4 and second["losses"][:2] == first["losses"]


def test_finetune_and_evaluate_end_to_end(tiny_attiqa_checkpoint, tmp_path, capsys):
    koniq = _write_koniq(tmp_path / "koniq")
    csv_path = _write_csv_dataset(tmp_path / "other")
    small = ["--resize", "36", "--crop", "32", "--batch-size", "4", "--steps", "3"]
    out = tmp_path / "q.pt"
    rc, stdout, err = _cli(["finetune", "--pretrained", str(tiny_attiqa_checkpoint), "--dataset", f"koniq10k={koniq}",
                            "--out", str(out), "--train-fraction", "0.8", "--no-progress", "--device", "cpu", *small],
                           capsys)
    assert rc == 0, err
    metric = attiqa.create_metric(out)
    assert metric.score_range == (1.0, 5.0) and not metric.is_starter
    assert metric.meta["trained_on"] == "koniq10k" and "test_metrics" in metric.meta
    assert "SROCC" in stdout

    res = tmp_path / "res"
    rc, stdout, err = _cli(["evaluate", "--pretrained", f"tiny={tiny_attiqa_checkpoint}", "--dataset",
                            f"koniq10k={koniq}", "--dataset", f"other={csv_path}",
                            "--protocol", "split", "linear-probe", "data-efficient", "cross",
                            "--cross", "koniq10k:other", "--n-splits", "2",
                            "--out-dir", str(res), "--device", "cpu", *small], capsys)
    assert rc == 0, err
    md = (res / "results.md").read_text()
    assert "| tiny |" in md and "koniq10k→other" in md and "linear-probe" in md
    assert "data-efficient 10%" in md and "data-efficient 20%" in md  # the paper's default shares
    rows = (res / "results.csv").read_text().splitlines()
    assert rows[0] == "model,protocol,train,test,srocc,plcc,krcc,n_splits"
    assert len(rows) == 1 + 4 * 2 + 1  # 4 protocol columns x 2 datasets + one cross pair
    assert all(r.endswith(",2") for r in rows[1:-1]) and rows[-1].endswith(",1")


def test_cli_error_paths(tiny_attiqa_checkpoint, tmp_path, capsys):
    koniq = _write_koniq(tmp_path / "koniq", n=4)
    rc, _, err = _cli(["finetune", "--pretrained", str(tmp_path / "none.pt"), "--dataset", f"koniq10k={koniq}",
                       "--out", str(tmp_path / "q.pt")], capsys)
    assert rc == 3 and "not found" in err  # rlisp_common.exit_codes.EXIT_MISSING
    rc, _, err = _cli(["finetune", "--pretrained", str(tiny_attiqa_checkpoint), "--dataset",
                       f"koniq10k={tmp_path / 'nowhere'}", "--out", str(tmp_path / "q.pt")], capsys)
    assert rc == 3 and "annotation file not found" in err
    rc, _, err = _cli(["evaluate", "--pretrained", f"x={tiny_attiqa_checkpoint}", "--dataset",
                       f"spaq={tmp_path / 'nowhere'}"], capsys)
    assert rc == 3 and "not found" in err
    rc, _, err = _cli(["evaluate", "--dataset", f"koniq10k={koniq}", "--ablation", "l2-loss"], capsys)
    assert rc == 2 and "--pretrain-images" in err  # EXIT_USAGE
    assert not (tmp_path / "q.pt").exists()
