"""experiments/render.py's parameter sidecars: what --run chose, re-rendered by --params bit for bit."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from isp import fivek

REPO = Path(__file__).resolve().parents[2]


def render(*args) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "render.py"), *map(str, args), "--quiet"],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_sidecar_rerenders_the_same_image(tiny_run, sample_root, tmp_path):
    import isp
    from rl.inference import AgentParamsPredictor

    entries = [e for e in fivek.index(sample_root) if e.id in ("a0002", "a0005")]  # orientations 1 and 6
    folder = tmp_path / "in"
    folder.mkdir()
    dngs = [Path(shutil.copy(e.dng, folder / e.dng.name)) for e in entries]
    render("--run", tiny_run, folder, "--out", tmp_path / "a", "--max-side", 80)
    predictor = AgentParamsPredictor.load(tiny_run)
    for dng in dngs:
        out = tmp_path / "a" / f"{dng.stem}.png"
        side = json.loads((tmp_path / "a" / f"{dng.stem}.params.json").read_text())
        assert side["raw"] == str(dng) and side["output"] == out.name and side["source"].startswith("run:")
        # the sidecar holds exactly what the agent chose for this RAW
        chosen = predictor.predict([isp.read_raw(dng)])[0]
        assert side["params"] == isp.params_to_dict(chosen)
        # --params SIDECAR renders the same pixels, and writes the same params again
        render("--params", tmp_path / "a" / f"{dng.stem}.params.json", dng, "--out", tmp_path / "b", "--max-side", 80)
        again = tmp_path / "b" / out.name
        assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))
        assert json.loads((tmp_path / "b" / f"{dng.stem}.params.json").read_text())["params"] == side["params"]
    # a hand-edited sidecar is a parameter file like any other: one more stop of exposure is brighter
    side = json.loads((tmp_path / "a" / f"{dngs[0].stem}.params.json").read_text())
    side["params"]["exposure"] = min(side["params"]["exposure"] + 1.0, 2.0)  # the range ends at +2 EV
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(side))
    render("--params", edited, dngs[0], "--out", tmp_path / "c", "--max-side", 80)
    a = np.asarray(Image.open(tmp_path / "a" / f"{dngs[0].stem}.png"), dtype=np.float64)
    c = np.asarray(Image.open(tmp_path / "c" / f"{dngs[0].stem}.png"), dtype=np.float64)
    assert c.mean() > a.mean() + 5
