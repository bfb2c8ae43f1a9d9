"""Metrics against scipy, the split protocol's median, preference accuracy, the dispatcher."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from attiqa.evaluate import ResultsTable, correlations, random_splits, split_protocol
from attiqa.preference import preference_accuracy, read_pairs


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
    import attiqa.evaluate as ev

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


def test_dispatcher_help_and_unknown():
    out = subprocess.run([sys.executable, "-m", "attiqa", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in ("select-prompts", "pseudo-label", "pretrain", "finetune", "evaluate", "build-starter", "score"):
        assert name in out.stdout
    bad = subprocess.run([sys.executable, "-m", "attiqa", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown subcommand" in bad.stderr
    for sub in ("finetune", "evaluate", "score", "preference"):
        r = subprocess.run([sys.executable, "-m", "attiqa", sub, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage" in r.stdout, r.stderr
