"""experiments/render.py with --params: defaults, JSON, folders, bit depths, failures, progress."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import isp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from experiments import render  # noqa: E402


@pytest.fixture(scope="module")
def inputs(sample_dngs, tmp_path_factory):
    """Three small DNGs in a folder tree plus a truncated one and a PNG renamed .dng."""
    d = tmp_path_factory.mktemp("render_in")
    (d / "sub").mkdir()
    picked = []
    for i, p in enumerate(sample_dngs[3:6]):
        raw = isp.read_raw(p)
        dst = (d / "sub" if i == 2 else d) / p.name
        shutil.copy(p, dst)
        picked.append((dst, raw))
    data = picked[0][0].read_bytes()
    (d / "sub" / "z-broken.dng").write_bytes(data[: len(data) // 3])
    Image.new("RGB", (8, 8)).save(d / "z-fake.png")
    shutil.move(d / "z-fake.png", d / "z-fake.dng")
    return d, picked


def test_default_folder_renders_good_files_and_reports_bad_ones(inputs, tmp_path, capsys):
    folder, picked = inputs
    out = tmp_path / "out"
    rc = render.main(["--params", "default", str(folder), "--out", str(out), "--max-side", "96"])
    cap = capsys.readouterr()
    assert rc == 5  # some files failed: unreadable input (rlisp_common.exit_codes.EXIT_BAD_INPUT)
    assert "error:" in cap.err and "z-broken.dng" in cap.err and "z-fake.dng" in cap.err
    assert "truncated or corrupt" in cap.err and "not a RAW" in cap.err
    assert "render:" in cap.err and "5/5" in cap.err  # the tqdm progress bar counted every file
    assert "rendered 3, skipped 0 existing, failed 2" in cap.out
    for dng, raw in picked:
        png = out / f"{dng.stem}.png"
        with Image.open(png) as im:
            arr = np.asarray(im)
        ref = isp.render(raw, max_side=96)
        assert arr.shape == (ref.shape[1], ref.shape[2], 3)  # orientation applied
        np.testing.assert_allclose(arr / 255.0, ref.permute(1, 2, 0).numpy(), atol=1 / 255 + 1e-6)
    # resumable: existing outputs are skipped
    rc = render.main(["--params", "default", str(folder / "sub"), "--out", str(out), "--max-side", "96", "--quiet"])
    assert rc == 5 and "skipped 1 existing" in capsys.readouterr().out


def test_json_params_16bit_tiff_full_resolution(inputs, tmp_path, capsys):
    _, picked = inputs
    dng, raw = picked[0]
    pfile = tmp_path / "p.json"
    pfile.write_text(json.dumps({"exposure": 0.7, "saturation": 0.3}))
    rc = render.main(["--params", str(pfile), str(dng), "--out", str(tmp_path / "o"), "--format", "tif", "--bits", "16", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    arr = tifffile.imread(tmp_path / "o" / f"{dng.stem}.tif")
    assert arr.dtype == np.uint16
    ref = isp.render(raw, isp.params_from_dict({"exposure": 0.7, "saturation": 0.3}))
    assert arr.shape == (ref.shape[1], ref.shape[2], 3)  # full resolution
    np.testing.assert_allclose(arr / 65535.0, ref.permute(1, 2, 0).numpy(), atol=2e-5)
    assert np.abs(arr / 65535.0 - isp.render(raw).permute(1, 2, 0).numpy()).mean() > 0.02  # params had an effect


def test_jpeg_8bit(inputs, tmp_path):
    _, picked = inputs
    assert render.main(["--params", "default", str(picked[1][0]), "--out", str(tmp_path), "--format", "jpg", "--quiet"]) == 0
    with Image.open(tmp_path / f"{picked[1][0].stem}.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and "icc_profile" in im.info


@pytest.mark.parametrize("args, msg", [
    (["--params", "default", "--format", "jpg", "--bits", "16"], "JPEG is 8-bit only"),
    (["--params", "default", "--format", "tif", "--bits", "8"], "16-bit"),
])
def test_bad_arguments_exit_2(inputs, tmp_path, capsys, args, msg):
    _, picked = inputs
    assert render.main([*args, str(picked[0][0]), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_params_neither_default_nor_file(inputs, tmp_path, capsys):
    _, picked = inputs
    assert render.main(["--params", "{bad}", str(picked[0][0]), "--out", str(tmp_path)]) == 3  # EXIT_MISSING
    assert render.main(["--params", "nope.json", str(picked[0][0]), "--out", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "neither" in err and "Traceback" not in err


@pytest.mark.parametrize("content, msg", [("{not json", "invalid JSON"), ('{"exposure": 9}', "outside its range"),
                                          ('{"gamma": 1}', "unknown ISP parameter"), ('[1, 2]', "JSON object")])
def test_bad_param_files(inputs, tmp_path, capsys, content, msg):
    _, picked = inputs
    f = tmp_path / "p.json"
    f.write_text(content)
    assert render.main(["--params", str(f), str(picked[0][0]), "--out", str(tmp_path / "o")]) == 5  # EXIT_BAD_INPUT
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_input_and_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert render.main(["--params", "default", str(tmp_path / "nothing.dng"), str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err
    assert "no such file or directory" in err and "no RAW files in this folder" in err


def test_script_help_and_run(inputs, tmp_path):
    script = REPO / "experiments" / "render.py"
    r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "--params" in r.stdout and "--run" in r.stdout and "16" in r.stdout
