"""Hub-style checkpoints (config.json + model.safetensors) and the pyiqa-style metric call."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import attiqa
from attiqa.attributes import ATTRIBUTES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pretrained_folder(tiny_attiqa_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub") / "tiny-attiqa"
    attiqa.create_metric(tiny_attiqa_checkpoint).save_pretrained(folder)
    return folder


def test_save_pretrained_layout_without_pickle(pretrained_folder, tiny_attiqa_checkpoint):
    from safetensors import safe_open

    assert sorted(p.name for p in pretrained_folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((pretrained_folder / "config.json").read_text())
    assert config["format"] == "attiqa-pretrained" and config["kind"] == "quality"
    assert config["attributes"] == list(ATTRIBUTES) and config["starter"] is True
    assert config["architecture"]["type"] == "QualityModel" and len(config["normalization"]["mean"]) == 3
    assert config["score_range"] == list(attiqa.create_metric(tiny_attiqa_checkpoint).score_range)
    assert config["provenance"]["source"] == str(tiny_attiqa_checkpoint) and len(config["provenance"]["weights_sha256"]) == 64
    # The weights, read by safetensors itself (no torch.load, no pickle), equal the .pt file's.
    ref = torch.load(tiny_attiqa_checkpoint, weights_only=True)["state_dict"]
    with safe_open(str(pretrained_folder / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        assert keys == set(ref)
        for k in keys:
            assert torch.equal(f.get_tensor(k), ref[k]), k
    assert b"\x80\x04" not in (pretrained_folder / "model.safetensors").read_bytes()[:64]  # no pickle header


def test_from_pretrained_scores_identically(pretrained_folder, tiny_attiqa_checkpoint):
    a = attiqa.create_metric(tiny_attiqa_checkpoint)
    b = attiqa.api.QualityMetric.from_pretrained(pretrained_folder)
    x = torch.rand(3, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a(x), b(x)) and torch.equal(a.attributes(x), b.attributes(x))
    assert b.is_starter and b.score_range == a.score_range and b.checkpoint_path == pretrained_folder
    # Both formats feed the stages that need the backbone only (fine-tuning, evaluation).
    from attiqa.modeling.checkpoint import load_attiqa_model

    m1, _ = load_attiqa_model(tiny_attiqa_checkpoint)
    m2, meta2 = load_attiqa_model(pretrained_folder)
    assert meta2["kind"] == "quality"
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())


def test_hub_id_goes_through_snapshot_download(pretrained_folder, tiny_attiqa_checkpoint, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, revision=None, allow_patterns=None, **kw):
        calls.append((repo_id, revision, tuple(allow_patterns)))
        return str(pretrained_folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    metric = attiqa.create_metric("someone/attiqa-tiny@v1")
    assert calls == [("someone/attiqa-tiny", "v1", ("config.json", "model.safetensors"))]
    x = torch.rand(2, 3, 48, 48)
    assert torch.equal(metric(x), attiqa.create_metric(tiny_attiqa_checkpoint)(x))

    def offline(**kw):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: offline())
    with pytest.raises(ValueError, match="Hugging Face Hub .*couldn't connect"):
        attiqa.create_metric("someone/other")
    with pytest.raises(FileNotFoundError, match="not found"):
        attiqa.create_metric("no/such/local/path.pt")


def test_pretrained_folder_errors(pretrained_folder, tmp_path):
    import shutil

    bad = tmp_path / "tampered"
    shutil.copytree(pretrained_folder, bad)
    blob = bytearray((bad / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="SHA-256"):
        attiqa.create_metric(bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        attiqa.create_metric(bad)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not an ATTIQA checkpoint folder"):
        attiqa.create_metric(other)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        attiqa.create_metric(empty)


def test_score_cli_takes_a_folder(pretrained_folder, tiny_attiqa_checkpoint, tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)).save(img)

    def score(ckpt):
        r = subprocess.run([sys.executable, "-m", "attiqa", "score", str(img), "--json", "--checkpoint", str(ckpt)],
                           capture_output=True, text=True, cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    assert score(pretrained_folder) == score(tiny_attiqa_checkpoint)


def test_metric_as_loss_trains_something(tmp_path):
    """The documented five lines: a per-image gain on a dark image, trained on the loss, raises the MOS.

    The tiny test starter's backbone is randomly initialised, and in eval mode its features (and
    so its MOS) hardly depend on the image; this test uses the packaged ImageNet backbone with an
    untrained MOS head instead, which does respond to brightness.
    """
    from attiqa.modeling.checkpoint import save_quality_checkpoint
    from attiqa.modeling.heads import build_model
    from attiqa.modeling.quality import QualityModel

    torch.manual_seed(0)
    model = QualityModel(build_model("efficientnet_lite0", pretrained=True, head_hidden=16), head_hidden=16, dropout=0.0,
                         score_range=(0.0, 1.0))
    steep = save_quality_checkpoint(tmp_path / "imagenet_heads.pt", model.eval(), description="untrained heads")
    metric = attiqa.create_metric(steep)
    loss_fn = attiqa.create_metric(steep, as_loss=True)
    assert loss_fn.lower_better is False and loss_fn.score_range == metric.score_range
    dark = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1)) * 0.15
    loss = loss_fn(dark)
    assert loss.dim() == 0 and torch.allclose(loss, -metric(dark).mean())
    per = attiqa.create_metric(steep, as_loss=True, loss_reduction="none", loss_weight=2.0)(dark)
    assert per.shape == (2,) and torch.allclose(per, -2.0 * metric(dark))
    start = float(loss_fn(dark))
    gain = torch.ones(1, requires_grad=True)
    opt = torch.optim.Adam([gain], lr=0.05)
    for _ in range(20):
        opt.zero_grad(); loss = loss_fn((dark * gain).clamp(0, 1)); loss.backward(); opt.step()  # noqa: E702
    assert gain.grad is not None and all(p.grad is None for p in loss_fn.parameters())
    assert abs(float(gain.detach()) - 1.0) > 0.01 and float(loss_fn((dark * gain.detach()).clamp(0, 1))) < start - 1e-4
    assert metric((dark * gain.detach()).clamp(0, 1)).mean() > metric(dark).mean() + 1e-4
    with pytest.raises(ValueError, match="loss_reduction"):
        attiqa.create_metric(steep, as_loss=True, loss_reduction="max")


def test_metric_names_and_old_keyword(tiny_attiqa_checkpoint, tmp_path, monkeypatch):
    import shutil

    from attiqa.training.starter import build as starter

    monkeypatch.setenv("RLISP_CACHE", str(tmp_path / "cache"))
    target = starter.starter_path()
    target.parent.mkdir(parents=True)
    shutil.copy(tiny_attiqa_checkpoint, target)
    assert attiqa.create_metric("attiqa").checkpoint_path == target
    assert "attiqa" in attiqa.api.list_metrics()
    assert attiqa.create_metric(checkpoint=tiny_attiqa_checkpoint).checkpoint_path == tiny_attiqa_checkpoint
