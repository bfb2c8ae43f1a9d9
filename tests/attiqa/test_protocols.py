"""Metrics against scipy, the split protocol's median, preference accuracy, the dispatcher."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats

from attiqa.data.splits import random_splits
from attiqa.eval.correlations import correlations
from attiqa.eval.protocols import ResultsTable, split_protocol
from attiqa.eval.preference import preference_accuracy, read_pairs


def test_correlations_equal_scipy():
    rng = np.random.default_rng(0)
    t = rng.normal(size=50)
    p = t + rng.normal(scale=0.5, size=50)
    c = correlations(p, t)
    assert c["srocc"] == pytest.approx(stats.spearmanr(p, t).statistic)
    assert c["plcc"] == pytest.approx(stats.pearsonr(p, t).statistic)
    assert c["krcc"] == pytest.approx(stats.kendalltau(p, t).statistic)
    assert np.isnan(correlations(np.ones(5), t[:5])["srocc"])


def test_random_splits_are_disjoint_and_reproducible():
    splits = random_splits(20, 10, 0.8, seed=3)
    assert len(splits) == 10
    for tr, te in splits:
        assert len(tr) == 16 and len(te) == 4 and not set(tr) & set(te)
        assert sorted(set(tr) | set(te)) == list(range(20))
    again = random_splits(20, 10, 0.8, seed=3)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(splits, again))
    assert not all(np.array_equal(splits[0][0], s[0]) for s in splits[1:])


class _FakeDataset:
    """Stands in for an IQADataset: the split protocol only needs len, mos, subset, score_range."""

    def __init__(self, mos):
        self.mos, self.score_range = np.asarray(mos, float), (0.0, 1.0)

    def __len__(self):
        return len(self.mos)

    def subset(self, idx):
        return _FakeDataset(self.mos[idx])


def test_split_protocol_reports_median_of_ten(monkeypatch):
    import attiqa.eval.protocols as ev

    rng = np.random.default_rng(1)
    calls = {"n": 0}

    def fake_finetune(model, train, config, **kw):
        calls["n"] += 1

    def fake_predict(model, test, **kw):  # noisy predictions: each split gets a different SROCC
        return test.mos + rng.normal(scale=0.3, size=len(test))

    monkeypatch.setattr(ev, "finetune", fake_finetune)
    monkeypatch.setattr(ev, "predict", fake_predict)
    ds = _FakeDataset(np.linspace(0, 1, 30))
    res = split_protocol(lambda r, c: object(), ds, n_splits=10, seed=0)
    assert calls["n"] == 10 and res["n_splits"] == 10 and len(res["splits"]) == 10
    for k in ("srocc", "plcc", "krcc"):
        assert res[k] == pytest.approx(np.median([s[k] for s in res["splits"]]))
    assert all(s["n_train"] == 24 and s["n_test"] == 6 for s in res["splits"])
    eff = split_protocol(lambda r, c: object(), ds, n_splits=10, data_fraction=0.1)
    assert all(s["n_train"] == 3 for s in eff["splits"])


def test_results_table_markdown_and_csv(tmp_path):
    t = ResultsTable()
    t.add("ATTIQA", "split", "koniq10k", "koniq10k", {"srocc": 0.9, "plcc": 0.91, "krcc": 0.7, "n_splits": 10})
    t.add("ATTIQA", "cross", "koniq10k", "clive", {"srocc": 0.8, "plcc": 0.81, "krcc": 0.6, "n_splits": 1})
    csv_path, md_path = t.write(tmp_path)
    assert "0.900 / 0.910" in md_path.read_text() and "koniq10k→clive" in md_path.read_text()
    assert csv_path.read_text().splitlines()[1].startswith("ATTIQA,split,koniq10k,koniq10k,0.9000")


def test_preference_accuracy_equals_hand_count(tmp_path):
    (tmp_path / "pairs.csv").write_text("image_a,image_b,choice\n"
                                        "a.png,b.png,a\n"   # model: a=0.9 > b=0.1 -> agrees
                                        "c.png,d.png,b\n"   # c=0.5 > d=0.2, people chose d -> disagrees
                                        "b.png,c.png,1\n"   # b=0.1 < c=0.5, people chose c -> agrees
                                        "d.png,a.png,d.png\n"  # d=0.2 < a=0.9, people chose d -> disagrees
                                        "a.png,e.png,0\n")  # a=0.9 = e=0.9 -> tie, counts 1/2
    scores = {tmp_path / n: s for n, s in zip("abcde", (0.9, 0.1, 0.5, 0.2, 0.9))}
    scores = {p.with_suffix(".png"): s for p, s in scores.items()}
    res = preference_accuracy(read_pairs(tmp_path / "pairs.csv"), scores)
    assert res == {"accuracy": (2 + 0.5) / 5, "n_pairs": 5, "agree": 2, "ties": 1}
    (tmp_path / "bad.csv").write_text("image_a,image_b,choice\na.png,b.png,maybe\n")
    with pytest.raises(ValueError, match="choice"):
        read_pairs(tmp_path / "bad.csv")


def test_dispatcher_help_and_unknown(capsys):
    from attiqa.__main__ import main

    out = subprocess.run([sys.executable, "-m", "attiqa", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in ("select-prompts", "pseudo-label", "pretrain", "finetune", "evaluate", "build-starter", "score"):
        assert name in out.stdout
    assert main(["frobnicate"]) == 2 and "unknown subcommand" in capsys.readouterr().err
    for sub in ("finetune", "evaluate", "score", "preference", "build-starter"):
        with pytest.raises(SystemExit) as exc:
            main([sub, "--help"])
        assert exc.value.code == 0
        assert "usage: python -m attiqa " + sub in capsys.readouterr().out


def test_preference_cli_agrees_with_metric(tiny_attiqa_checkpoint, tmp_path, capsys):
    import json

    from PIL import Image

    import attiqa
    from attiqa.__main__ import main

    rng = np.random.default_rng(0)
    names = [f"g{i}.png" for i in range(4)]
    for n in names:
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / n)
    choices = ["a", "b", "g3.png"]
    rows = [("g0.png", "g1.png"), ("g1.png", "g2.png"), ("g2.png", "g3.png")]
    (tmp_path / "pairs.csv").write_text("image_a,image_b,choice\n" +
                                        "".join(f"{a},{b},{c}\n" for (a, b), c in zip(rows, choices)))
    assert main(["preference", str(tmp_path / "pairs.csv"), "--checkpoint", str(tiny_attiqa_checkpoint),
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    metric = attiqa.create_metric(tiny_attiqa_checkpoint)
    s = {r["path"]: r["mos"] for r in metric.score_paths([tmp_path / n for n in names])}
    s = {k.rsplit("/", 1)[-1]: v for k, v in s.items()}
    winners = [rows[0][0], rows[1][1], "g3.png"]
    expect = sum((s[w] > s[a if w == b else b]) + 0.5 * (s[a] == s[b]) for (a, b), w in zip(rows, winners)) / 3
    assert got["n_pairs"] == 3 and got["accuracy"] == pytest.approx(expect)
    assert main(["preference", str(tmp_path / "none.csv"), "--checkpoint", str(tiny_attiqa_checkpoint)]) == 3  # EXIT_MISSING
    assert "not found" in capsys.readouterr().err


def test_ablation_variants_use_their_switches(tmp_path, monkeypatch):
    """good-bad-prompt gives every head one shared score (CLIP: one "Good/Bad image" pair); l2-loss uses L2."""
    from PIL import Image

    import attiqa.training.pretrain
    import attiqa.teachers
    from attiqa.training.ablation import GOOD_BAD_PROMPTS, pretrain_variant
    from attiqa.modeling.checkpoint import load_attiqa_model

    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    seen = []
    real = attiqa.training.pretrain.train_ranking

    def spy(model, dataset, **kw):
        seen.append((kw["loss"], dataset.labels.clone()))
        return real(model, dataset, **kw)

    monkeypatch.setattr(attiqa.training.pretrain, "train_ranking", spy)
    common = dict(pretrained=False, steps=2, batch_size=2, resize=36, crop=32, progress=False)
    for variant in ("baseline", "good-bad-prompt", "l2-loss"):
        path = pretrain_variant(tmp_path / "imgs", tmp_path / f"{variant}.pt", variant=variant, **common)
        model, meta = load_attiqa_model(path)  # loads with every weight checked
        assert meta["kind"] == "pretrained" and variant in meta["description"]
        assert meta["normalization"]["mean"] == pytest.approx(model.mean.flatten().tolist())
    (base_loss, base_labels), (gb_loss, gb_labels), (l2_loss, l2_labels) = seen
    assert (base_loss, gb_loss, l2_loss) == ("margin", "margin", "l2")
    assert torch.equal(base_labels, l2_labels)
    assert torch.allclose(gb_labels, base_labels.mean(1, keepdim=True).expand_as(base_labels))
    assert not torch.allclose(base_labels[:, 0], base_labels[:, 2])  # the baseline heads get different targets

    kwargs = {}

    def fake_teacher(name, **kw):
        kwargs.update(kw, name=name)
        return attiqa.teachers.AnalyticTeacher()

    monkeypatch.setattr(attiqa.teachers, "create_teacher", fake_teacher)
    pretrain_variant(tmp_path / "imgs", tmp_path / "clip_gb.pt", variant="good-bad-prompt", teacher="clip",
                     clip_model="some/clip", **common)
    assert kwargs["name"] == "clip" and kwargs["model"] == "some/clip" and kwargs["prompts"] == GOOD_BAD_PROMPTS
    assert set(GOOD_BAD_PROMPTS.values()) == {("Good image", "Bad image")}


def test_evaluate_ablation_table(tiny_attiqa_checkpoint, tmp_path, capsys):
    from PIL import Image

    from attiqa.__main__ import main

    rng = np.random.default_rng(2)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "d").mkdir()
    rows = ["path,mos"]
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
        rows.append(f"../imgs/{i}.png,{i}")
    (tmp_path / "d" / "mos.csv").write_text("\n".join(rows) + "\n")
    argv = ["evaluate", "--dataset", f"mini={tmp_path / 'd' / 'mos.csv'}", "--ablation", "good-bad-prompt",
            "l2-loss", "--pretrain-images", str(tmp_path / "imgs"), "--no-imagenet", "--pretrain-steps", "2",
            "--pretrain-crop", "32", "--n-splits", "2", "--steps", "2", "--batch-size", "2", "--resize", "36",
            "--crop", "32", "--out-dir", str(tmp_path / "res"), "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    md = (tmp_path / "res" / "results.md").read_text()
    for row in ("ATTIQA (pretrained here)", "single good/bad prompt", "L2 pretraining loss"):
        assert f"| {row} |" in md
    assert sorted(p.name for p in (tmp_path / "res" / "ablation_checkpoints").iterdir()) == \
        ["baseline.pt", "good-bad-prompt.pt", "l2-loss.pt"]
