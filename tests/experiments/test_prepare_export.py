"""prepare_fivek.py on the sample set and on a miniature with planted faults; export_pairs.py."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from envs import judges as M
from isp import fivek

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "experiments" / script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)


@pytest.fixture()
def faulty_root(sample_root, tmp_path):
    """A copy of the sample set with a truncated DNG, a missing TIFF and unpaired names."""
    root = tmp_path / "faulty"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("splits"))
    entries = fivek.index(root)
    truncated = entries[1]
    data = truncated.dng.read_bytes()
    truncated.dng.write_bytes(data[: len(data) // 2])
    entries[2].expert_c.unlink()
    (entries[0].dng.parent / "holiday.dng").write_bytes(entries[0].dng.read_bytes())
    shutil.copy(entries[0].expert_c, root / "tiff16_c" / "a0999-orphan.tif")
    return root, truncated.id, entries[2].id


def test_prepare_sample_set(sample_root, tmp_path):
    root = tmp_path / "sample"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("splits"))
    proc = run("prepare_fivek.py", root, "--seeds", 0, 1, "--report", tmp_path / "r.json", "--no-progress",
               "--cache-previews", "--max-side", 64, "--cache-dir", tmp_path / "cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = len(fivek.index(root))
    assert f"usable pairs        {n}" in proc.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["errors"] == [] and report["n_pairs"] == n
    s0, s1 = (fivek.load_split(root, f"random_seed{s}") for s in (0, 1))
    for s in (s0, s1):
        assert len(s["test"]) == round(n * 0.25) and len(s["train"]) + len(s["test"]) == n
    assert [e.id for e in s0["test"]] != [e.id for e in s1["test"]]
    assert not (root / "splits" / "test500.txt").exists()
    # One preview per image, each loadable and no larger than --max-side.
    assert len(list((tmp_path / "cache").glob("*.npz"))) == n
    raw = fivek.cached_preview(fivek.index(root)[0].dng, 64, cache_dir=tmp_path / "cache")
    assert max(raw.mosaic.shape) <= 64


def test_prepare_planted_faults(faulty_root, tmp_path, capsys):
    root, bad_id, no_tiff_id = faulty_root
    proc = run("prepare_fivek.py", root, "--report", tmp_path / "r.json", "--no-progress")
    assert proc.returncode == 5, proc.stdout + proc.stderr  # rlisp_common.exit_codes.EXIT_BAD_INPUT
    report = json.loads((tmp_path / "r.json").read_text())
    errors = {(e["kind"], e.get("id")) for e in report["errors"]}
    assert errors == {("bad_dng", bad_id)}
    assert "truncated" in report["errors"][0]["problem"]
    kinds = sorted(w["kind"] for w in report["warnings"])
    assert kinds == ["bad_name", "missing_expert_c", "orphan_expert_c"]
    assert any(w["kind"] == "missing_expert_c" and w["id"] == no_tiff_id for w in report["warnings"])
    assert "ERROR" in proc.stdout and "Traceback" not in proc.stderr
    split = fivek.load_split(root, "random_seed0")
    ids = {e.id for e in split["train"] + split["test"]}
    assert bad_id not in ids and no_tiff_id in ids
    # --decode agrees with the structural check; --allow-errors makes the exit status 0 (in-process).
    from experiments import prepare_fivek as P

    rc = P.main([str(root), "--decode", "--allow-errors", "--no-progress", "--report", str(tmp_path / "r2.json")])
    assert rc == 0
    assert {e["id"] for e in json.loads((tmp_path / "r2.json").read_text())["errors"]} == {bad_id}
    capsys.readouterr()
    assert P.main([str(tmp_path / "nowhere")]) == 3  # rlisp_common.exit_codes.EXIT_MISSING
    assert "does not exist" in capsys.readouterr().err


def test_prepare_full_layout_writes_test500(tmp_path, capsys):
    """5,000 DNG names in the official groups: test500.txt holds a4501-a5000 (files are tiny TIFFs)."""
    import io

    import tifffile

    from experiments import prepare_fivek as P

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((4, 4), np.uint16))
    tiny = buf.getvalue()
    root = tmp_path / "fivek"
    for start in range(1, 5001, 700):
        end = min(start + 699, 5000)
        photos = root / "raw_photos" / f"HQa{start}to{end}" / "photos"
        photos.mkdir(parents=True)
        for i in range(start, end + 1):
            (photos / f"a{i:04d}-x{i}.dng").write_bytes(tiny)
    rc = P.main([str(root), "--no-progress", "--seeds", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "DNG files           5000" in out and "RAW groups          8" in out
    split = fivek.load_split(root, "test500")
    assert [e.id for e in split["test"]] == [f"a{i:04d}" for i in range(4501, 5001)]
    assert len(split["train"]) == 4500
    rnd = fivek.read_split_file(root / "splits" / "random_seed3.txt")
    assert len(rnd["test"]) == 1250 and len(rnd["train"]) == 3750 and not set(rnd["test"]) & set(rnd["train"])


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def test_export_pairs_default_params(sample_root, tiny_attiqa_checkpoint, tmp_path, best_rotation):
    out = tmp_path / "export"
    args = ["--params", "default", "--fivek", sample_root, "--out", out, "--max-side", 96,
            "--attiqa-checkpoint", tiny_attiqa_checkpoint, "--study-default", "--no-progress"]
    proc = run("export_pairs.py", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    test = fivek.load_split(sample_root)["test"]
    import isp

    # The sample set's test split holds DNGs that need turning (orientation 3 and 6).
    assert {isp.read_raw(e.dng).orientation for e in test} >= {3, 6}
    manifest = _read_csv(out / "manifest.csv")
    assert [r["id"] for r in manifest] == [e.id for e in test]
    key = _read_csv(out / "key.csv")
    assert len(key) == 2 * len(test) and sorted(int(k["pair"]) for k in key) == list(range(1, len(key) + 1))
    for row in manifest:
        agent, default, expert = (_png(out / row[f"{m}_image"]) for m in ("agent", "default", "expert_c"))
        assert 48 < max(agent.shape[:2]) <= 96 and agent.shape == expert.shape == default.shape
        # Orientation: the rendering stands the same way up as the (upright) Expert C photograph.
        assert best_rotation(agent, M.load_expert_srgb(row["expert_c_tiff"])) == 0, row["id"]
        assert best_rotation(expert, agent) == 0, row["id"]
        # With default params the agent is the default rendering.
        np.testing.assert_array_equal(agent, default)
        # Metrics recomputed independently with scikit-image / colour-science from the written files.
        import colour
        import skimage.metrics

        assert float(row["psnr_agent"]) == pytest.approx(
            skimage.metrics.peak_signal_noise_ratio(expert, agent, data_range=1), rel=1e-5)
        lab = lambda x: colour.XYZ_to_Lab(colour.sRGB_to_XYZ(x))  # noqa: E731  (D65 default)
        assert float(row["delta_e2000_agent"]) == pytest.approx(
            colour.delta_E(lab(agent), lab(expert), method="CIE 2000").mean(), rel=1e-5)
        assert 0 < float(row["ssim_agent"]) <= 1
        # Expert C: ProPhoto TIFF -> sRGB, aligned with our rendering.
        ref = M.align_to(M.load_expert_srgb(row["expert_c_tiff"]), agent)
        assert np.abs(ref - expert).max() <= 1 / 255 + 1e-9
        assert float(row["mos_agent"]) == pytest.approx(float(row["mos_default"]), abs=1e-5)
        assert json.loads(row["params"])  # physical parameters by name
    # Pair files hold the renderings the key says, on the side it says.
    by_id = {r["id"]: r for r in manifest}
    for k in key:
        for side, num in (("left", 1), ("right", 2)):
            pair_img = _png(out / "pairs" / f"pair-{int(k['pair']):04d}-{num}.jpg")
            want = _png(out / by_id[k["id"]][f"{k[side]}_image"])
            other_method = k["right"] if side == "left" else k["left"]
            other = _png(out / by_id[k["id"]][f"{other_method}_image"])
            assert np.abs(pair_img - want).mean() < 0.02
            if not np.array_equal(want, other):
                assert np.abs(pair_img - want).mean() < np.abs(pair_img - other).mean()
        assert float(k["mos_left"]) == pytest.approx(float(by_id[k["id"]][f"mos_{k['left']}"]), rel=1e-6)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["n_images"] == len(test) and summary["n_pairs"] == len(key)
    assert summary["vs_expert_c"]["agent"]["psnr"]["mean"] == pytest.approx(
        np.mean([float(r["psnr_agent"]) for r in manifest]), rel=1e-5)
    html = (out / "study.html").read_text()
    assert summary["study_id"] in html and "data:image/jpeg;base64," in html
    for e in test:
        assert e.id not in html and e.name not in html
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.height > 96
    # Same seed -> same key (the page can be regenerated); the rerun reuses per-image results.
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "per_image").iterdir()}
    from experiments import export_pairs as E

    assert E.main([str(a) for a in args]) == 0
    assert _read_csv(out / "key.csv") == key
    assert {p.name: p.stat().st_mtime_ns for p in (out / "per_image").iterdir()} == stamp


def test_export_pairs_bad_inputs(sample_root, tmp_path, capsys):
    bad = tmp_path / "nan.json"
    bad.write_text('{"exposure": NaN}')
    proc = run("export_pairs.py", "--params", bad, "--fivek", sample_root, "--out", tmp_path / "o", "--no-mos")
    assert proc.returncode == 5 and "error:" in proc.stderr and "nan.json" in proc.stderr and "Traceback" not in proc.stderr
    # The other cases in-process (same main(), no interpreter start-up).
    from experiments import export_pairs as E

    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"no_such_param": 1.0}')
    cases = [  # exit codes of rlisp_common.exit_codes: 5 invalid input, 3 missing path
        (["--params", str(unknown), "--fivek", str(sample_root)], "no_such_param", 5),
        (["--params", "default", "--fivek", str(tmp_path)], "MIT-Adobe-5K", 3),
        (["--run", str(tmp_path / "no_run"), "--fivek", str(sample_root)], "no_run", 3),
    ]
    for argv, msg, code in cases:
        capsys.readouterr()
        assert E.main([*argv, "--out", str(tmp_path / "o"), "--no-mos", "--no-progress"]) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("error:") and msg in err, err
    assert not (tmp_path / "o" / "manifest.csv").exists()


def test_build_pairs_randomises_sides_and_keeps_key_apart():
    from experiments import export_pairs as E

    records = [{"id": f"a{i:04d}", "mos": {"agent": 0.6, "default": 0.5, "expert_c": 0.4}} for i in range(1, 201)]
    study_id, key = E.build_pairs(records, ["agent_vs_expert_c"], seed=0)
    assert sorted(k["pair"] for k in key) == list(range(1, 201))
    assert sorted(k["id"] for k in key) == [r["id"] for r in records]
    assert [k["id"] for k in key] != [r["id"] for r in records]  # presentation order is shuffled
    on_left = sum(k["left"] == "agent" for k in key)
    # Sides drawn by a fair coin: 200 draws land well inside 70-130 (> 4 standard deviations).
    assert 70 < on_left < 130
    for k in key:
        assert {k["left"], k["right"]} == {"agent", "expert_c"}
        assert k["mos_left"] == records[0]["mos"][k["left"]] and k["study_id"] == study_id
    # Same seed, same study; another seed, another order and another study id.
    assert E.build_pairs(records, ["agent_vs_expert_c"], seed=0) == (study_id, key)
    other_id, other = E.build_pairs(records, ["agent_vs_expert_c"], seed=1)
    assert other_id != study_id and [k["left"] for k in other] != [k["left"] for k in key]
