"""experiments/render.py --run: a trained agent's renderings, 8/16-bit with sRGB profile, orientation, resume."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from envs import judges as M
from isp import fivek

REPO = Path(__file__).resolve().parents[2]


def render(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "experiments" / "render.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)


def _profile_name(icc: bytes) -> str:
    """The ICC profile's description, read by LittleCMS (PIL.ImageCms), independent of isp.io."""
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))


@pytest.fixture(scope="module")
def inputs(sample_root, tmp_path_factory):
    """Four sample DNGs (orientations 1, 6, 3, 6) and a truncated one, in a folder of their own.

    Returns:
        ``(folder, {id: (dng copy, Expert C TIFF, orientation)})``.
    """
    import isp

    folder = tmp_path_factory.mktemp("render_inputs")
    picked = {}
    for e in fivek.index(sample_root):
        if e.id in ("a0001", "a0005", "a0006", "a0011"):
            dng = Path(shutil.copy(e.dng, folder / e.dng.name))
            picked[e.id] = (dng, e.expert_c, isp.read_raw(dng).orientation)
    data = picked["a0001"][0].read_bytes()
    (folder / "sub").mkdir()
    (folder / "sub" / "a0999-broken.dng").write_bytes(data[: len(data) // 3])
    return folder, picked


def test_render_run_16bit_tiff(tiny_run, inputs, tmp_path, best_rotation):
    import isp
    from rl.inference import AgentParamsPredictor

    folder, picked = inputs
    out = tmp_path / "out"
    proc = render("--run", tiny_run, folder, "--out", out, "--format", "tif", "--bits", 16, "--max-side", 96,
                  "--batch-size", 2, "--quiet")
    # The truncated DNG fails with one clear line; every other file is rendered.
    assert proc.returncode == 5, proc.stdout + proc.stderr  # rlisp_common.exit_codes.EXIT_BAD_INPUT
    assert "error:" in proc.stderr and "a0999-broken" in proc.stderr and "Traceback" not in proc.stderr
    assert "rendered 4, skipped 0 existing, failed 1" in proc.stdout
    predictor = AgentParamsPredictor.load(tiny_run)
    seen_orientations = set()
    for file_id, (dng, expert_path, orientation) in picked.items():
        path = out / f"{Path(dng).stem}.tif"
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            arr = page.asarray()
            icc = page.tags[34675].value  # InterColorProfile
        assert arr.dtype == np.uint16 and arr.ndim == 3 and arr.shape[2] == 3 and max(arr.shape[:2]) <= 96
        assert "sRGB" in _profile_name(bytes(icc))
        img = arr.astype(np.float64) / 65535.0
        # The pixels are the agent's choice for this image, rendered by the ISP (batched vs single).
        full = isp.read_raw(dng)  # the agent looks at the whole RAW, whatever the output size
        want = isp.render(full, predictor.predict([full])[0], max_side=96).numpy().transpose(1, 2, 0)
        np.testing.assert_allclose(img, want, atol=2e-4)
        # Display orientation: the same way up as Expert C (an upright photograph).
        expert = M.load_expert_srgb(expert_path)
        assert best_rotation(img, expert) == 0, file_id
        h, w = img.shape[:2]
        assert abs(h / w - expert.shape[0] / expert.shape[1]) < 0.05
        seen_orientations.add(orientation)
    assert {3, 6} <= seen_orientations  # rotated DNGs were really exercised


def test_render_run_8bit_png_resume_and_errors(tiny_run, inputs, tmp_path, capsys):
    from experiments import render as R  # in-process: the CLI itself is exercised above

    folder, picked = inputs
    out = tmp_path / "out"
    args = ["--run", str(tiny_run), *[str(p[0]) for p in picked.values()], "--out", str(out), "--max-side", "64",
            "--quiet"]
    assert R.main(args) == 0, capsys.readouterr()
    files = sorted(out.glob("*.png"))
    assert len(files) == 4
    for f in files:
        with Image.open(f) as im:
            assert im.mode == "RGB" and "sRGB" in _profile_name(im.info["icc_profile"])
    # Resumable: a removed output is the only one rendered again; the others are not touched.
    stamps = {f.name: f.stat().st_mtime_ns for f in files[1:]}
    files[0].unlink()
    capsys.readouterr()
    assert R.main(args) == 0
    assert "rendered 1, skipped 3 existing, failed 0" in capsys.readouterr().out
    assert {f.name: f.stat().st_mtime_ns for f in files[1:]} == stamps
    assert files[0].is_file() and not list(out.glob(".*tmp*"))
    # Bad inputs: one clear error, exit 2.
    one = str(picked["a0001"][0])
    assert R.main(["--run", str(tmp_path / "no_such_run"), one, "--out", str(tmp_path / "o")]) == 3  # EXIT_MISSING
    assert "no_such_run: no such run folder" in capsys.readouterr().err
    other = tmp_path / "other_run"
    shutil.copytree(tiny_run, other)
    (other / "agent.zip").write_bytes(b"not a zip")
    assert R.main(["--run", str(other), one, "--out", str(tmp_path / "o")]) == 5  # EXIT_BAD_INPUT
    assert "agent.zip: corrupt" in capsys.readouterr().err
    assert R.main(["--run", str(tiny_run), one, "--out", str(tmp_path / "o"), "--format", "jpg", "--bits", "16"]) == 2
    assert "8-bit only" in capsys.readouterr().err


def test_render_bounds_pending_images(monkeypatch, tmp_path):
    """Many different sizes: decoded RAWs held for batching stay bounded (about 2 x batch size)."""
    import isp
    from experiments import render as R

    sizes = [(16 + 2 * i, 20) for i in range(9)]  # nine different shapes
    files = []
    for i, _ in enumerate(sizes):
        files.append(tmp_path / f"a{i:04d}.dng")
        files[-1].write_bytes(b"x")
    raws = {}
    for f, (h, w) in zip(files, sizes):
        raws[str(f)] = isp.RawImage(
            mosaic=np.full((h, w), 1000.0, np.float32), cfa_pattern="RGGB", black_level=np.full(4, 64.0, np.float32),
            white_level=4095.0, as_shot_wb=np.array([2.0, 1.0, 1.5], np.float32), cam_to_xyz=np.eye(3, dtype=np.float32),
            orientation=0, path=str(f), make="Test", model="Test")
    live = {"now": 0, "max": 0}

    def fake_read(path):
        live["now"] += 1
        live["max"] = max(live["max"], live["now"])
        return raws[str(path)]

    real_from_raws = isp.RawBatch.from_raws

    def counting_from_raws(group, device=None):
        live["now"] -= len(group)
        return real_from_raws(group, device=device)

    monkeypatch.setattr(isp, "read_raw", fake_read)
    monkeypatch.setattr(isp.RawBatch, "from_raws", counting_from_raws)
    rc = R.main(["--params", "default", *map(str, files), "--out", str(tmp_path / "out"), "--batch-size", "2", "--quiet"])
    assert rc == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 9
    assert live["max"] <= 4 and live["now"] == 0
