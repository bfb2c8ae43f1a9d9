"""The bad-input corpus: generated broken files run through every CLI as a subprocess.

Each case asserts the exit code (``rlisp_common.exit_codes``), one
``error:`` line on stderr naming the file and the real cause, no traceback, no marker file from a
poisoned payload, and that the good files given beside the bad ones were processed.

"Permission denied" as root, the subprocess runner and the poisoned payloads: see
``tests/bad_inputs.py``.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bad_inputs import cli, error_lines, line_for, poisoned_torch_bytes, unreadable


# -- render.py ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def raw_corpus(sample_root, tmp_path_factory):
    d = tmp_path_factory.mktemp("raw_corpus")
    good = sorted(Path(sample_root).rglob("*.dng"))[0]
    shutil.copy(good, d / "a-good.dng")
    (d / "b-empty.dng").write_bytes(b"")
    (d / "c-truncated.dng").write_bytes(good.read_bytes()[:4096])
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, format="JPEG")
    (d / "d-renamed-jpeg.dng").write_bytes(buf.getvalue())
    (d / "e-folder.dng").mkdir()
    shutil.copy(good, d / "f-unreadable.dng")
    unreadable(d / "f-unreadable.dng")
    os.mkfifo(d / "g-fifo.dng")
    return d


def test_render_bad_raws_one_line_each_good_rendered(raw_corpus, tmp_path):
    d = raw_corpus
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a-good.1234.deadbeef.tmp.png"  # what a killed earlier run leaves
    stale.write_bytes(b"partial")
    inputs = [d / "h-missing.dng", d / "a-good.dng", d / "b-empty.dng", d / "c-truncated.dng", d / "d-renamed-jpeg.dng",
              d / "e-folder.dng", d / "f-unreadable.dng", d / "g-fifo.dng"]
    proc = cli("experiments/render.py", "--params", "default", *inputs, "--out", out, "--max-side", "64", "--quiet")
    expect = {"h-missing": ("no such file", 3), "b-empty": ("empty", 5), "c-truncated": ("corrupt", 5),
              "d-renamed-jpeg": ("not a RAW", 5), "e-folder": ("folder", 5), "f-unreadable": ("permission denied", 4),
              "g-fifo": ("not a regular file", 5)}
    for name, (cause, _) in expect.items():
        assert cause in line_for(proc.stderr, name), (name, proc.stderr)
    assert len(error_lines(proc.stderr)) == len(expect)
    first = error_lines(proc.stderr)[0]
    assert proc.returncode == next(c for n, (_, c) in expect.items() if n in first)
    assert (out / "a-good.png").is_file() and not stale.exists()
    assert "rendered 1" in proc.stdout


@pytest.mark.parametrize("content, cause", [
    ('{"exposure": NaN}', "NaN"),
    ('{"exposure": 1e999}', "inf"),
    ('{"exposure": 99.0}', "outside its range"),
    ('{"no_such_param": 1.0}', "no_such_param"),
    ('{"exposure": ', "invalid JSON"),
])
def test_render_bad_params_file(content, cause, raw_corpus, tmp_path):
    bad = tmp_path / "params.json"
    bad.write_text(content)
    proc = cli("experiments/render.py", "--params", bad, raw_corpus / "a-good.dng", "--out", tmp_path / "o", "--quiet")
    assert proc.returncode == 5
    (line,) = error_lines(proc.stderr)
    assert str(bad) in line and cause in line
    assert not (tmp_path / "o" / "a-good.png").exists()


# -- poisoned / broken run folders: render --run, export --run, train --resume ---------------------
def _poison_zip(agent_zip: Path, marker: Path, member: str = "policy.pth") -> None:
    with zipfile.ZipFile(agent_zip) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members[member] = poisoned_torch_bytes(marker)
    with zipfile.ZipFile(agent_zip, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


@pytest.fixture()
def broken_run(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    return run


@pytest.mark.parametrize("case", ["pickled_policy", "pickled_optimizer", "tagged_yaml", "truncated_yaml", "random_zip"])
def test_run_folder_faults(case, broken_run, raw_corpus, sample_root, tmp_path):
    import hashlib

    run, marker = broken_run, tmp_path / "MARKER"
    ckpt = sorted((run / "checkpoints").glob("step_*"))[-1]
    if case in ("pickled_policy", "pickled_optimizer"):
        member = "policy.pth" if case == "pickled_policy" else "actor.optimizer.pth"
        for z in (run / "agent.zip", ckpt / "agent.zip"):
            _poison_zip(z, marker, member)
        # the checkpoint's manifest is rewritten too: a deliberate tamper, not a torn save
        manifest = json.loads((ckpt / "MANIFEST.json").read_text())
        data = (ckpt / "agent.zip").read_bytes()
        manifest["files"]["agent.zip"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        (ckpt / "MANIFEST.json").write_text(json.dumps(manifest))
        at_fault, code, cause = "agent.zip", 6, "refused"
    elif case == "tagged_yaml":
        (run / "config.yaml").write_text(f"algo: !!python/object/apply:os.system ['touch {marker}']\n")
        at_fault, code, cause = "config.yaml", 6, "YAML tag"
    elif case == "truncated_yaml":
        text = (run / "config.yaml").read_text()
        (run / "config.yaml").write_text(text[: len(text) // 2] + "\n  crop: [64,\n")
        at_fault, code, cause = "config.yaml", 5, "invalid YAML"
    else:
        for z in (run / "agent.zip",):
            z.write_bytes(os.urandom(2048))
        at_fault, code, cause = "agent.zip", 5, "corrupt"
    commands = [
        ("experiments/render.py", "--run", run, raw_corpus / "a-good.dng", "--out", tmp_path / "r", "--quiet"),
        ("experiments/export_pairs.py", "--run", run, "--fivek", sample_root, "--out", tmp_path / "e", "--no-mos",
         "--no-progress"),
    ]
    if case != "random_zip" and case != "pickled_optimizer":
        commands.append(("rl/train_agent.py", "--run-dir", run, "--resume", "--no-eval", "--threads", "1"))
    if case == "pickled_optimizer":  # only the trainer reads optimizer states
        commands = [("rl/train_agent.py", "--run-dir", run, "--resume", "--no-eval", "--threads", "1")]
    for args in commands:
        proc = cli(*args)
        assert proc.returncode == code, (args[0], proc.returncode, proc.stderr[-2000:])
        (line,) = error_lines(proc.stderr)
        assert at_fault in line and cause in line, (args[0], line)
        assert not marker.exists()


# -- prepare_fivek.py --decode ---------------------------------------------------------------------
def test_prepare_fivek_decode_reports_each_bad_dng(sample_root, tmp_path):
    root = tmp_path / "fivek"
    shutil.copytree(sample_root, root)
    dngs = sorted(root.rglob("*.dng"))
    unreadable(dngs[0])
    dngs[1].write_bytes(dngs[1].read_bytes()[:2048])
    proc = cli("experiments/prepare_fivek.py", root, "--decode", "--no-progress", "--report", tmp_path / "r.json")
    assert proc.returncode == 4  # the first bad file is the unreadable one
    assert "permission denied" in line_for(proc.stderr, dngs[0].name)
    assert "truncated" in line_for(proc.stderr, dngs[1].name)
    assert len(error_lines(proc.stderr)) == 3  # two files + the summary line
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_usable"] == len(dngs) - 2  # the others were checked and used
    assert (root / "splits").is_dir()


# -- training on a --data root with bad files ----------------------------------------------------------
def test_train_skips_bad_dngs_with_report(sample_root, tmp_path):
    root = tmp_path / "fivek"
    shutil.copytree(sample_root, root)
    dngs = sorted(root.rglob("*.dng"))
    dngs[0].write_bytes(b"")
    unreadable(dngs[1])
    env = {**os.environ, "RLISP_CACHE": str(tmp_path / "cache")}  # no cached previews of the good copies
    os.environ, saved = env, os.environ
    try:
        proc = cli("rl/train_agent.py", "--reward", "analytic", "--data", root, "--run-dir", tmp_path / "run", "--no-eval",
                   "--total-timesteps", "16", "--n-envs", "4", "--threads", "1", "--hyperparams", "env.crop=[64,64]",
                   "env.preview_side=128", "env.thumb_size=4", "algo_kwargs.learning_starts=8")
    finally:
        os.environ = saved
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "empty" in line_for(proc.stderr, dngs[0].name, "[envs] skipped")
    assert "permission denied" in line_for(proc.stderr, dngs[1].name, "[envs] skipped")
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("[envs] skipped")]) == 2
    assert (tmp_path / "run" / "agent.zip").is_file()


# -- python -m attiqa score ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_corpus(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("image_corpus")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(d / "a-good.png")
    Image.fromarray(rng.integers(0, 255, (48, 48, 4), dtype=np.uint8), "RGBA").save(d / "b-rgba.png")
    Image.fromarray(rng.integers(0, 65535, (40, 56), dtype=np.uint16)).save(d / "c-16bit.png")
    Image.fromarray(rng.integers(0, 255, (40, 3000, 3), dtype=np.uint8)).save(d / "d-wide.png")  # downscaled to 2048
    Image.new("RGB", (1, 1)).save(d / "e-1x1.png")
    (d / "f-empty.png").write_bytes(b"")
    (d / "g-truncated.png").write_bytes((d / "a-good.png").read_bytes()[:200])
    (d / "h-renamed.jpg").write_bytes(b"II*\x00" + os.urandom(300))
    (d / "i-folder.png").mkdir()
    shutil.copy(d / "a-good.png", d / "j-unreadable.png")
    unreadable(d / "j-unreadable.png")
    return d


def test_score_bad_images(image_corpus, tiny_attiqa_checkpoint):
    d = image_corpus
    names = ["k-missing.png", "a-good.png", "b-rgba.png", "c-16bit.png", "d-wide.png", "e-1x1.png", "f-empty.png",
             "g-truncated.png", "h-renamed.jpg", "i-folder.png", "j-unreadable.png"]
    proc = cli("-m", "attiqa", "score", *[d / n for n in names], "--json", "--checkpoint", tiny_attiqa_checkpoint)
    scored = [json.loads(ln)["path"] for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert [Path(p).name for p in scored] == ["a-good.png", "b-rgba.png", "c-16bit.png", "d-wide.png"]
    expect = {"k-missing": ("no such file", 3), "e-1x1": ("below the minimum side of 32", 5), "f-empty": ("", 5),
              "g-truncated": ("", 5), "h-renamed": ("", 5), "i-folder": ("folder", 5), "j-unreadable": ("permission denied", 4)}
    prefix = "attiqa score: error:"
    for name, (cause, _) in expect.items():
        assert cause in line_for(proc.stderr, name, prefix)
    assert len(error_lines(proc.stderr, prefix)) == len(expect)
    assert proc.returncode == 3  # the first failure: the missing path


@pytest.mark.parametrize("case", ["random", "pickled", "missing"])
def test_score_bad_checkpoint(case, image_corpus, tmp_path):
    ckpt, marker = tmp_path / "model.pt", tmp_path / "MARKER"
    if case == "random":
        ckpt.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "pickled":
        ckpt.write_bytes(poisoned_torch_bytes(marker))
    proc = cli("-m", "attiqa", "score", image_corpus / "a-good.png", "--checkpoint", ckpt)
    code, cause = {"random": (5, "corrupt"), "pickled": (6, "refused"), "missing": (3, "not found")}[case]
    assert proc.returncode == code, proc.stderr
    (line,) = error_lines(proc.stderr, "attiqa score: error:")
    assert str(ckpt) in line and cause in line and "objects other than tensors" not in line
    assert not marker.exists()
