"""The study page in a real headless Chromium, driven over the Chrome DevTools Protocol.

The test types a participant id, answers every pair with real key presses (arrow keys and 1/2)
and mouse clicks, clicks the download links, and checks that analyze_study reads the downloaded
CSV and JSON back exactly. It needs a Chromium (``$CHROME_BIN``, else ``chromium``,
``chromium-browser`` or ``google-chrome`` on ``PATH``; ``.ci/run`` installs Debian's
``chromium``) and the ``websocket-client`` package; without them the browser tests are skipped
with the reason, and the end-to-end export and analysis are still checked without a browser.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments import analyze_study as A
from experiments import export_pairs as E

REPO = Path(__file__).resolve().parents[2]
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> tuple[str | None, str]:
    """The browser executable, or ``None`` and the reason none is usable."""
    env = os.environ.get("CHROME_BIN")
    if env:
        path = shutil.which(env)
        return (path, "") if path else (None, f"CHROME_BIN={env!r} is not an executable file")
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path, ""
    return None, (f"no browser found ({', '.join(BROWSER_NAMES)} on PATH, or CHROME_BIN); "
                  "install Debian's chromium (apt-get install chromium; .ci/run does)")


CHROMIUM, _NO_CHROMIUM = find_chromium()
try:
    import websocket
except ImportError:  # pragma: no cover - depends on the environment
    websocket = None
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or websocket is None,
    reason=_NO_CHROMIUM or "websocket-client is not installed (pip install websocket-client)",
)

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1200,800",
]


class CDP:
    """A minimal synchronous Chrome DevTools Protocol client on one browser websocket."""

    def __init__(self, url: str):
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, deadline_s: float = 30.0, pred=lambda p: True) -> dict:
        end = time.monotonic() + deadline_s
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method and pred(ev.get("params", {})):
                    return self.events.pop(i)["params"]
            if time.monotonic() > end:
                raise TimeoutError(f"no {method} event")
            self.ws.settimeout(max(0.1, end - time.monotonic()))
            try:
                self.events.append(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                pass

    def close(self):
        self.ws.close()


class Browser:
    """Headless Chromium with one page attached (flattened session)."""

    def __init__(self, profile: Path, download_dir: Path):
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.proc.kill()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port, path = port_file.read_text().split()[:2]
        self.cdp = CDP(f"ws://127.0.0.1:{port}{path}")
        self.cdp.call("Browser.setDownloadBehavior",
                      {"behavior": "allow", "downloadPath": str(download_dir), "eventsEnabled": True})
        target = self.cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method, params=None):
        return self.cdp.call(method, params, session=self.session)

    def open(self, url: str):
        self.call("Page.navigate", {"url": url})
        self.cdp.wait_event("Page.loadEventFired")

    def js(self, expression: str):
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"page error: {res['exceptionDetails']}")
        return res["result"].get("value")

    def key(self, key: str, code: str, vk: int, text: str | None = None):
        base = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}
        self.call("Input.dispatchKeyEvent", {"type": "keyDown", **base, **({"text": text} if text else {})})
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", **base})

    def click(self, element_id: str):
        box = self.js(f"(() => {{ const r = document.getElementById('{element_id}').getBoundingClientRect();"
                      " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent",
                      {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})

    def close(self):
        try:
            self.cdp.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wait(pred, what: str, deadline_s: float = 20.0):
    end = time.monotonic() + deadline_s
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError(what)
        time.sleep(0.05)


def _wait_download(folder: Path, suffix: str) -> Path:
    found: list[Path] = []

    def done():
        found[:] = [p for p in folder.iterdir() if p.name.endswith(suffix)]
        return bool(found)

    _wait(done, f"no {suffix} download in {folder}")
    return found[0]


ANSWER_WAYS = ("arrow", "digit", "click")


def run_study(html: Path, tmp: Path, participant: str, seed: int = 0):
    """Answers every pair of ``html`` in Chromium; returns (plan, csv path, json path).

    ``plan`` is the list of (pair number, choice) in the order answered.
    """
    downloads = tmp / f"downloads-{participant}"
    downloads.mkdir()
    browser = Browser(tmp / f"profile-{participant}", downloads)
    rng = random.Random(seed)
    plan = []
    try:
        browser.open(html.resolve().as_uri())
        state = browser.js("studyState()")
        assert state["screen"] == "intro" and state["n_answers"] == 0
        n = state["n_pairs"]
        browser.js("document.getElementById('participant').focus()")
        browser.call("Input.insertText", {"text": participant})
        browser.key("Enter", "Enter", 13, text="\r")
        _wait(lambda: browser.js("studyState().screen") == "trial", "study did not start")
        for i in range(n):
            assert browser.js("document.getElementById('progress').textContent") == f"Pair {i + 1} of {n}"
            choice = rng.choice(("left", "right"))
            way = ANSWER_WAYS[i % 3]
            if way == "arrow":
                name = "ArrowLeft" if choice == "left" else "ArrowRight"
                browser.key(name, name, 37 if choice == "left" else 39)
            elif way == "digit":
                d = "1" if choice == "left" else "2"
                browser.key(d, f"Digit{d}", ord(d), text=d)
            else:
                browser.click(f"img-{choice}")
            plan.append((i + 1, choice))
            _wait(lambda: browser.js("studyState().n_answers") == i + 1, f"answer {i + 1} not recorded")
        assert browser.js("studyState().screen") == "done"
        browser.click("download-csv")
        csv_path = _wait_download(downloads, ".csv")
        browser.click("download-json")
        json_path = _wait_download(downloads, ".json")
        # Downloads are complete when the final name exists (Chromium renames .crdownload files).
        _wait(lambda: not list(downloads.glob("*.crdownload")), "download did not finish")
    finally:
        browser.close()
    return plan, csv_path, json_path


def _tiny_study(out: Path, n_images: int = 5):
    """A study page from synthetic renderings (no RAW decoding), as export_pairs writes it."""
    from PIL import Image

    rng = np.random.default_rng(0)
    records, images = [], {}
    for i in range(1, n_images + 1):
        rid = f"a{i:04d}"
        records.append({"id": rid, "mos": {"agent": float(rng.random()), "default": float(rng.random()),
                                            "expert_c": float(rng.random())}})
        for m in E.METHODS:
            arr = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG")
            images[(rid, m)] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    study_id, key = E.build_pairs(records, ["agent_vs_expert_c", "default_vs_expert_c"], seed=3)
    E._write_csv(out / "key.csv", E.KEY_FIELDS, key)
    pairs = [{"pair": k["pair"], "left": images[(k["id"], k["left"])], "right": images[(k["id"], k["right"])]}
             for k in key]
    E.write_study_html(out / "study.html", study_id, pairs)
    return study_id, key


def _check_readback(plan, csv_path, json_path, key_path, participant, study_id):
    for path in (csv_path, json_path):
        answers = A.load_answers([path])
        assert [(a.pair, a.choice) for a in answers] == plan
        assert {a.participant for a in answers} == {participant}
        assert {a.study_id for a in answers} == {study_id}
        assert all(a.rt_ms is not None and a.rt_ms >= 0 for a in answers)
    key = A.load_key(key_path)
    res = A.analyze(A.load_answers([csv_path]), key)
    # Independent count of the agent's wins from the plan and the key.
    for comp, target in (("agent_vs_expert_c", "agent"), ("default_vs_expert_c", "default")):
        rows = [(p, c) for p, c in plan if key[p].comparison == comp]
        if not rows:
            continue
        wins = sum((key[p].left if c == "left" else key[p].right) == target for p, c in rows)
        assert res["comparisons"][comp]["total"]["wins"] == wins
        assert res["comparisons"][comp]["total"]["n"] == len(rows)
    return res


@pytest.mark.browser
@needs_browser
def test_study_page_in_chromium(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    study_id, key = _tiny_study(out)
    html = (out / "study.html").read_text()
    # No names or hints in the page: no ids, no method names.
    for word in ("a0001", "agent", "expert", "_vs_", "key.csv"):
        assert word not in html.lower()
    plan, csv_path, json_path = run_study(out / "study.html", tmp_path, "p 01", seed=1)
    assert len(plan) == len(key) == 10
    assert csv_path.name == f"answers-p_01-{study_id}.csv"
    _check_readback(plan, csv_path, json_path, out / "key.csv", "p 01", study_id)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def e2e_export(tiny_run, sample_root, tmp_path_factory):
    """``export_pairs.py --run`` of the short agent run (``tiny_run``) on the sample set's test split."""
    out = tmp_path_factory.mktemp("e2e") / "export"
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "export_pairs.py"), "--run", str(tiny_run), "--fivek",
         str(sample_root), "--out", str(out), "--max-side", "96", "--no-progress"],
        capture_output=True, text=True, cwd=REPO, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, proc.stdout


def _analyze_cli(*args):
    return subprocess.run([sys.executable, str(REPO / "experiments" / "analyze_study.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120)


def test_end_to_end_agent_export_analysis(e2e_export, tiny_run, sample_root, tiny_attiqa_checkpoint, tmp_path):
    """Short agent run -> export_pairs --run -> answers -> analyze_study prints a win rate (no browser)."""
    import isp
    import torch
    from isp import fivek
    from rl.inference import AgentParamsPredictor

    out, stdout = e2e_export
    for name in ("manifest.csv", "key.csv", "metrics.json", "contact_sheet.png", "study.html"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["source"].startswith("run:") and summary["attiqa_checkpoint"] == str(tiny_attiqa_checkpoint)
    assert "PSNR dB" in stdout and "agent" in stdout
    # The agent's parameters are what AgentParamsPredictor chooses for each test image.
    predictor = AgentParamsPredictor.load(tiny_run)
    test = fivek.load_split(sample_root)["test"]
    rows = {r["id"]: r for r in csv_rows(out / "manifest.csv")}
    assert sorted(rows) == [e.id for e in test]
    for e in test:
        want = predictor.predict([isp.read_raw(e.dng)])[0]
        got = isp.params_from_dict(json.loads(rows[e.id]["params"]))
        torch.testing.assert_close(torch.as_tensor(got).reshape(-1).float(), want.reshape(-1).float(), atol=1e-5, rtol=1e-5)
    # A participant who always picks the left photo wins exactly where the key put the agent on the left.
    key = csv_rows(out / "key.csv")
    answers = tmp_path / "left.csv"
    with open(answers, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(A.ANSWER_FIELDS)
        for k in key:
            w.writerow([k["study_id"], "lefty", k["pair"], "left", 700, ""])
    proc = _analyze_cli(answers, "--key", out / "key.csv", "--json", tmp_path / "result.json")
    assert proc.returncode == 0, proc.stderr
    assert "TOTAL" in proc.stdout and "95 % CI" in proc.stdout
    total = json.loads((tmp_path / "result.json").read_text())["comparisons"]["agent_vs_expert_c"]["total"]
    assert (total["wins"], total["n"]) == (sum(k["left"] == "agent" for k in key), len(key))


@pytest.mark.browser
@needs_browser
def test_end_to_end_study_in_chromium(e2e_export, tmp_path):
    """The exported study page is completed in Chromium and the analysis reads the downloads back."""
    out, _ = e2e_export
    summary = json.loads((out / "metrics.json").read_text())
    html = (out / "study.html").read_text()
    for r in csv_rows(out / "manifest.csv"):
        assert r["id"] not in html and r["name"] not in html
    plan, csv_path, json_path = run_study(out / "study.html", tmp_path, "e2e", seed=7)
    assert len(plan) == summary["n_pairs"] == summary["n_images"]
    _check_readback(plan, csv_path, json_path, out / "key.csv", "e2e", summary["study_id"])
    proc = _analyze_cli(csv_path, json_path, "--key", out / "key.csv", "--json", tmp_path / "result.json")
    assert proc.returncode == 0, proc.stderr
    assert "TOTAL" in proc.stdout and "95 % CI" in proc.stdout
    res = json.loads((tmp_path / "result.json").read_text())
    # The CSV and JSON hold the same answers of one participant; duplicates collapse to one each.
    assert res["comparisons"]["agent_vs_expert_c"]["total"]["n"] == len(plan)
    assert list(res["comparisons"]["agent_vs_expert_c"]["participants"]) == ["e2e"]


def csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
