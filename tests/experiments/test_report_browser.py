"""``rl.report``: the run folder's report.html, read back in a real headless Chromium.

The run folder is made by hand (config, command, training curve and an ``eval.json`` in the
schema of ``rl.evaluate``) on the session's sample set, so the page's images are real renders of
its RAWs; the strings in it carry HTML and a closing ``</script>`` to check the escaping. The
Chromium driver is the study page test's (``test_study_browser.Browser``).
"""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from test_study_browser import Browser, needs_browser  # same folder: the study page's DevTools driver

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = '</script><img src=x onerror="document.title=\'pwned\'"><b>bold</b> & "quotes"'


def make_run_folder(root: Path, sample_root: Path) -> tuple[Path, dict]:
    """A run folder whose eval.json follows rl.evaluate's schema, on the sample set's test split."""
    import isp
    from envs.judges import summarize
    from isp import datasets, fivek
    from rl.evaluate import POLICIES

    run = root / "run"
    run.mkdir()
    test = datasets.load_split(sample_root)["test"]
    rng = np.random.default_rng(0)
    conditions = ["correct", "under"]
    results: dict = {}
    for k, policy in enumerate(POLICIES):
        unit = np.zeros((len(test), isp.NUM_PARAMS), np.float32) if policy == "default" else \
            rng.uniform(-0.6, 0.6, (len(test), isp.NUM_PARAMS)).astype(np.float32)
        import torch

        params = isp.unit_to_params(torch.as_tensor(unit))
        per_image, rows = [], []
        for i, e in enumerate(test):
            pd = isp.params_to_dict(params[i])
            per_image.append({"id": e.id, "score": float(rng.uniform(0.4, 0.9)), "clipped_fraction": float(rng.uniform(0, 0.2)),
                              "colour_cast": float(rng.uniform(0, 0.3)), "params": pd})
            rows.append({"id": e.id, "scene": e.id, "condition": conditions[i % 2], "full_res_score": float(rng.uniform(0.4, 0.9)),
                         "height": 100, "width": 150, "params": pd, "clipped_fraction": float(rng.uniform(0, 0.2)),
                         "colour_cast": float(rng.uniform(0, 0.3)), "psnr": float(rng.uniform(15, 30)),
                         "ssim": float(rng.uniform(0.5, 0.9)), "delta_e2000": float(rng.uniform(3, 15)),
                         "cast_vs_expert": None if k == 2 and i == 0 else float(rng.uniform(1, 10))})
        summary = summarize(rows)
        summary["per_image"] = rows
        results[policy] = {"mean_score": float(np.mean([r["score"] for r in per_image])), "per_image": per_image,
                           "reward_evals": 1, "seconds": 0.1, "judges": summary}
    results["amortisation"] = {"score_gain_ratio": 0.8123456, "compute_ratio": 123.4}
    results["benchmark"] = {"agent_vs_default_dE_ratio": 0.87654321, "gradient_ascent_vs_default_dE_ratio": 1.1,
                            "capture_error_images": 1}
    results["meta"] = {"reward": "attiqa", "reward_description": PAYLOAD, "starter_reward": True,
                       "data": str(sample_root), "timesteps": 512}
    (run / "eval.json").write_text(json.dumps(results))
    (run / "config.yaml").write_text(yaml.safe_dump({"algo": "sac", "reward": "attiqa", "data": str(sample_root),
                                                     "note": PAYLOAD}))
    (run / "command.txt").write_text(f"python rl/train_agent.py --reward attiqa --run-dir '{PAYLOAD}'\n")
    (run / "training_curve.csv").write_text("timesteps,mean_return,mean_score\n128,0.1,0.5\n256,0.4,0.6\n384,0.5,0.65\n")
    return run, results


@pytest.fixture(scope="module")
def report_run(sample_root, tmp_path_factory):
    run, results = make_run_folder(tmp_path_factory.mktemp("report"), sample_root)
    proc = subprocess.run([sys.executable, "-m", "rl.report", str(run), "--max-side", "96"], capture_output=True, text=True,
                          cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return run, results


def test_report_is_self_contained_and_escaped(report_run):
    run, results = report_run
    page = (run / "report.html").read_text()
    assert PAYLOAD not in page  # every embedded string is escaped
    assert "</script><img" not in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    srcs = [s.split('"', 1)[0] for s in page.split('src="')[1:]]
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    # 3 policies + expert per judged image, one training curve, one plot per ISP parameter.
    import isp

    n = len(results["agent"]["judges"]["per_image"])
    assert len(srcs) == 4 * n + 1 + isp.NUM_PARAMS
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(srcs[-1].split(",", 1)[1])))
    assert img.size[0] > 50 and img.size[1] > 50


def test_report_strip_renders_the_recorded_params(report_run, sample_root):
    """The agent's strip image is isp.render of the RAW with the params from eval.json (same pixels)."""
    import isp
    from isp import datasets, fivek
    from rl.report import _array_png

    run, results = report_run
    page = (run / "report.html").read_text()
    row = results["agent"]["judges"]["per_image"][0]
    entry = {e.id: e for e in datasets.load_split(sample_root)["test"]}[row["id"]]
    want = _array_png(isp.render(fivek.cached_preview(entry.dng, 96), isp.params_from_dict(row["params"])).numpy())
    assert base64.b64encode(want).decode() in page
    neutral = _array_png(isp.render(fivek.cached_preview(entry.dng, 96)).numpy())
    assert want != neutral  # the params matter: not the default rendering again


@needs_browser
def test_report_in_chromium(report_run, tmp_path):
    run, results = report_run
    (tmp_path / "profile").mkdir()
    b = Browser(tmp_path / "profile", tmp_path)
    try:
        b.call("Log.enable")
        b.open((run / "report.html").as_uri())
        assert b.js("document.title") != "pwned"
        ready = b.js("document.body.getAttribute('data-ready')")
        cells = b.js("""Array.from(document.querySelectorAll('#judges tbody tr')).map(tr => ({
            policy: tr.dataset.policy, condition: tr.dataset.condition,
            cells: Array.from(tr.querySelectorAll('td[data-key]')).map(td => [td.dataset.key, td.dataset.value, td.textContent])}))""")
        text = b.js("document.body.innerText")
        n_injected = b.js("document.querySelectorAll('img[src=\"x\"]').length"
                          " + Array.from(document.querySelectorAll('b')).filter(e => e.textContent === 'bold').length")
        natural = b.js("Array.from(document.images).map(i => i.naturalWidth * i.naturalHeight)")
        shot = b.call("Page.captureScreenshot", {"format": "png"})["data"]
        full = b.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                 "clip": {"x": 0, "y": 600, "width": 1200, "height": 900, "scale": 1}})["data"]
        errors = [e for e in b.cdp.events if e.get("method") in ("Runtime.exceptionThrown",)
                  or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error")
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]
    finally:
        b.close()
    (tmp_path / "report.png").write_bytes(base64.b64decode(shot))
    (tmp_path / "report_middle.png").write_bytes(base64.b64decode(full))
    assert errors == [], errors
    assert ready is not None and ready.split(":")[1] == str(sum(len(c["cells"]) for c in cells))
    assert min(natural) > 0  # every embedded image decoded
    assert n_injected == 0 and PAYLOAD in text  # the payload shows as text, nothing of it became markup
    # The table equals eval.json: the overall row per policy, then one row per capture condition.
    by = {(c["policy"], c["condition"]): dict((k, (v, t)) for k, v, t in c["cells"]) for c in cells}
    for policy in ("default", "agent", "random_search", "gradient_ascent"):
        j = results[policy]["judges"]
        rows = [("all", {**j["mean"], "score": results[policy]["mean_score"]})]
        rows += [(cond, g["mean"]) for cond, g in j["per_condition"].items()]
        for cond, means in rows:
            cellmap = by[(policy, cond)]
            for key, (value, shown) in cellmap.items():
                want = means.get(key)
                if want is None:
                    assert value == "" and shown == "–", (policy, cond, key)
                else:
                    assert float(value) == want and shown == f"{want:.4f}", (policy, cond, key, value, shown)
    assert ("random_search", "correct") in by and by[("random_search", "all")]["cast_vs_expert"][0] != ""
    assert float(b_value(text, "agent_vs_default_dE_ratio")) == pytest.approx(0.8765, abs=1e-4)
    # The screenshot is a real page, not a blank one.
    from PIL import Image

    for data in (shot, full):
        px = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"), dtype=np.float32)
        assert px.std() > 10 and len(np.unique(px.reshape(-1, 3), axis=0)) > 50


def b_value(text: str, key: str) -> str:
    """The number printed after ``key = `` in the page's text."""
    return text.split(f"{key} = ", 1)[1].split()[0]


def test_bench_agent_writes_a_report_per_seed_and_a_summary(sample_root, tmp_path, capsys):
    """Seeds whose eval.json exists are reused: each gets its report.html, the benchmark a bench.html."""
    import re
    import shutil

    from experiments import bench_agent

    run, _ = make_run_folder(tmp_path, sample_root)
    out = tmp_path / "bench"
    for s in (0, 1):
        shutil.copytree(run, out / f"seed_{s}")
    assert bench_agent.main(["--seeds", "0", "1", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("agent_vs_default_dE_ratio=0.8765")
    for s in (0, 1):
        assert "<table id=\"judges\">" in (out / f"seed_{s}" / "report.html").read_text()
    page = (out / "bench.html").read_text()
    agg = json.loads((out / "bench.json").read_text())
    assert 'href="seed_0/report.html"' in page and 'href="seed_1/report.html"' in page
    want = agg["policies"]["agent"]["all"]["delta_e2000"]["mean"]
    cell = re.search(r'<tr data-policy="agent" data-condition="all">.*?data-key="delta_e2000" data-value="([^"]+)"', page)
    assert float(cell.group(1)) == want
