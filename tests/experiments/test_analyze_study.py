"""experiments/analyze_study.py: win rates, confidence intervals, agreement, file formats."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import analyze_study as A

REPO = Path(__file__).resolve().parents[2]


def _key(path, rows, study="s0-abc"):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["pair", "study_id", "id", "comparison", "left", "right", "mos_left", "mos_right"])
        w.writeheader()
        for r in rows:
            w.writerow({"study_id": study, **r})
    return path


def _answers_csv(path, participant, choices, study="s0-abc"):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(A.ANSWER_FIELDS)
        for pair, choice in choices:
            w.writerow([study, participant, pair, choice, 500, "2026-01-01T00:00:00Z"])
    return path


def _wilson(k, n, z=1.959963984540054):
    # Wilson score interval written out from its formula (independent of scipy).
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_interval_matches_formula():
    for k, n in [(116, 200), (3, 10), (0, 5), (7, 7)]:
        got = A.proportion(k, n)
        lo, hi = _wilson(k, n)
        assert got["ci_low"] == pytest.approx(max(lo, 0.0), abs=1e-9)
        assert got["ci_high"] == pytest.approx(min(hi, 1.0), abs=1e-9)
        assert got["rate"] == k / n
    # The paper's headline: 58 % of 200 answers.
    p = A.proportion(116, 200)
    assert 0.50 < p["ci_low"] < 0.58 < p["ci_high"] < 0.66


def test_analyze_counts_wins_agreement_and_last_answer(tmp_path):
    key = _key(tmp_path / "key.csv", [
        {"pair": 1, "id": "a0001", "comparison": "agent_vs_expert_c", "left": "agent", "right": "expert_c", "mos_left": 0.9, "mos_right": 0.1},
        {"pair": 2, "id": "a0002", "comparison": "agent_vs_expert_c", "left": "expert_c", "right": "agent", "mos_left": 0.8, "mos_right": 0.2},
        {"pair": 3, "id": "a0003", "comparison": "agent_vs_expert_c", "left": "expert_c", "right": "agent", "mos_left": 0.3, "mos_right": 0.6},
        {"pair": 4, "id": "a0001", "comparison": "default_vs_expert_c", "left": "default", "right": "expert_c", "mos_left": 0.5, "mos_right": 0.4},
    ])
    # p1 picks agent on 1, 2, 3 (pair 2 answered twice: last counts); p2 picks expert on 1 and 3.
    a1 = _answers_csv(tmp_path / "p1.csv", "p1", [(1, "left"), (2, "left"), (2, "right"), (3, "right"), (4, "left")])
    a2 = tmp_path / "p2.json"
    a2.write_text(json.dumps({"study_id": "s0-abc", "participant": "p2", "answers": [
        {"pair": 1, "choice": "right", "rt_ms": 100}, {"pair": 3, "choice": "left", "rt_ms": 200}]}))
    answers = A.load_answers([a1, a2])
    assert [(a.participant, a.pair, a.choice) for a in answers] == [
        ("p1", 1, "left"), ("p1", 2, "left"), ("p1", 2, "right"), ("p1", 3, "right"), ("p1", 4, "left"),
        ("p2", 1, "right"), ("p2", 3, "left")]
    res = A.analyze(answers, A.load_key(key))
    c = res["comparisons"]["agent_vs_expert_c"]
    assert c["total"]["wins"] == 3 and c["total"]["n"] == 5
    assert c["participants"]["p1"]["rate"] == 1.0 and c["participants"]["p2"]["rate"] == 0.0
    # Model prefers: pair1 left (agent), pair2 left (expert), pair3 right (agent).
    # p1: 1 left=agree, 2 right=disagree, 3 right=agree; p2: 1 right=disagree, 3 left=disagree.
    assert c["model_agreement"] == {"agree": 2, "n": 5, "rate": 0.4}
    assert c["model_prefers_target"] == pytest.approx(2 / 3)
    d = res["comparisons"]["default_vs_expert_c"]
    assert d["total"]["wins"] == 1 and d["total"]["n"] == 1
    assert "TOTAL" in A.format_table(res)


def test_cli_and_errors(tmp_path, capsys):
    key = _key(tmp_path / "key.csv", [
        {"pair": i, "id": f"a{i:04d}", "comparison": "agent_vs_expert_c", "left": "agent", "right": "expert_c",
         "mos_left": "", "mos_right": ""} for i in range(1, 5)])
    ans = _answers_csv(tmp_path / "a.csv", "x", [(1, "left"), (2, "left"), (3, "right"), (4, "left")])
    out = tmp_path / "res.json"
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "analyze_study.py"), str(ans), "--key", str(key),
                           "--json", str(out), "--ci", "exact"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "Clopper-Pearson" in proc.stdout
    res = json.loads(out.read_text())
    tot = res["comparisons"]["agent_vs_expert_c"]["total"]
    assert (tot["wins"], tot["n"]) == (3, 4)
    from scipy.stats import beta
    assert tot["ci_low"] == pytest.approx(beta.ppf(0.025, 3, 2))  # Clopper-Pearson from the beta quantiles
    # Wrong study, unknown pair, bad choice, missing file: one clear error, exit 2 (in-process).
    for name, rows, msg in [("w.csv", None, "belong to study"), ("u.csv", [(9, "left")], "does not have"),
                            ("c.csv", [(1, "up")], "neither left nor right"), ("missing.csv", "absent", "does not exist")]:
        bad = tmp_path / name
        if rows is None:
            _answers_csv(bad, "x", [(1, "left")], study="other")
        elif rows != "absent":
            _answers_csv(bad, "x", rows)
        capsys.readouterr()
        assert A.main([str(bad), "--key", str(key)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and msg in err, err
