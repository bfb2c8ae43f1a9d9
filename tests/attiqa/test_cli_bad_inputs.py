"""Bad inputs through every ``python -m attiqa`` subcommand, each run as a subprocess.

Each case asserts the shared exit code (``rlisp_common.exit_codes``: 3 missing, 4 permission
denied, 5 invalid, 6 refused pickled code), exactly one ``attiqa <subcommand>: error:`` line per bad
input naming the file, no traceback (``bad_inputs.cli`` checks it) and, for poisoned files, that
the marker file their unpickling would create does not exist. Nothing here builds the starter
model: every command gets explicit tiny paths. ``attiqa score`` is covered in
``tests/experiments/test_bad_inputs.py``.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from bad_inputs import cli, error_lines, line_for, poisoned_torch_bytes, unreadable


def attiqa(sub: str, *args):
    return cli("-m", "attiqa", sub, *args, timeout=120)


def one_line(proc, sub: str, name, code: int, cause: str = "") -> str:
    """The single error line of ``proc``: it names ``name``, says ``cause``; the exit code is ``code``."""
    prefix = f"attiqa {sub}: error:"
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    (line,) = error_lines(proc.stderr, prefix)
    assert str(name) in line and cause in line, line
    return line


def write_png(path, seed: int = 0, side: int = 40):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def mos_csv(tmp_path):
    """A generic MOS dataset of two tiny images (``NAME=FILE.csv`` or a bare CSV)."""
    for i in range(2):
        write_png(tmp_path / "ds" / f"img{i}.png", seed=i)
    path = tmp_path / "ds" / "mos.csv"
    path.write_text("path,mos\nimg0.png,1.0\nimg1.png,2.0\n")
    return path


@pytest.fixture()
def poisoned(tmp_path):
    """``(checkpoint, marker)``: a torch file whose unpickling would create ``marker``."""
    ckpt, marker = tmp_path / "poisoned.pt", tmp_path / "MARKER"
    ckpt.write_bytes(poisoned_torch_bytes(marker))
    return ckpt, marker


# -- select-prompts --------------------------------------------------------------------------------
def test_select_prompts_missing_adjectives(tmp_path):
    missing = tmp_path / "nope.yaml"
    one_line(attiqa("select-prompts", "--adjectives", missing, "--out-dir", tmp_path / "o"), "select-prompts",
             missing, 3, "not found")


def test_select_prompts_refuses_python_tag_in_yaml(tmp_path):
    marker = tmp_path / "MARKER"
    yml = tmp_path / "adjectives.yaml"
    yml.write_text(f"sharpness: !!python/object/apply:os.system ['touch {marker}']\n")
    one_line(attiqa("select-prompts", "--adjectives", yml, "--out-dir", tmp_path / "o"), "select-prompts", yml, 6,
             "YAML tag")
    assert not marker.exists()


def test_select_prompts_unreadable_adjectives(tmp_path):
    yml = tmp_path / "adjectives.yaml"
    yml.write_text("sharpness: {positive: [sharp], negative: [blurry]}\n")
    unreadable(yml)
    one_line(attiqa("select-prompts", "--adjectives", yml, "--out-dir", tmp_path / "o"), "select-prompts", yml, 4,
             "permission denied")


# -- pseudo-label ----------------------------------------------------------------------------------
def test_pseudo_label_missing_folder(tmp_path):
    missing = tmp_path / "nothing"
    one_line(attiqa("pseudo-label", "--images", missing, "--out", tmp_path / "l.csv", "--teacher", "analytic"),
             "pseudo-label", missing, 3, "not found")


def test_pseudo_label_reports_each_bad_image_and_labels_the_others(tmp_path):
    root = tmp_path / "imgs"
    write_png(root / "a-good.png")
    (root / "b-corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    unreadable(write_png(root / "c-unreadable.png", seed=1))
    out = tmp_path / "labels.csv"
    proc = attiqa("pseudo-label", "--images", root, "--out", out, "--teacher", "analytic", "--size", "16",
                  "--workers", "0", "--no-progress")
    assert proc.returncode == 5, proc.stderr[-2000:]  # the first bad image is the corrupt one
    prefix = "attiqa pseudo-label: error:"
    assert "not a readable image" in line_for(proc.stderr, "b-corrupt.png", prefix)
    assert "permission denied" in line_for(proc.stderr, "c-unreadable.png", prefix)
    assert len(error_lines(proc.stderr, prefix)) == 2
    with open(out, newline="") as f:
        assert [r["path"] for r in csv.DictReader(f)] == ["a-good.png"]


# -- pretrain ----------------------------------------------------------------------------------------
def test_pretrain_missing_folder(tmp_path):
    missing = tmp_path / "nothing"
    one_line(attiqa("pretrain", "--images", missing, "--out-dir", tmp_path / "run"), "pretrain", missing, 3,
             "not found")


def test_pretrain_refuses_pickled_backbone_weights(tmp_path, poisoned):
    ckpt, marker = poisoned
    for i in range(2):
        write_png(tmp_path / "imgs" / f"{i}.png", seed=i)
    proc = attiqa("pretrain", "--images", tmp_path / "imgs", "--out-dir", tmp_path / "run", "--weights", ckpt,
                  "--resize", "32", "--crop", "32", "--steps", "1", "--workers", "0", "--device", "cpu",
                  "--no-progress")
    one_line(proc, "pretrain", ckpt, 6, "refused")
    assert not marker.exists()


# -- finetune ----------------------------------------------------------------------------------------
def test_finetune_missing_dataset(tmp_path, poisoned):
    missing = tmp_path / "nope.csv"
    one_line(attiqa("finetune", "--pretrained", poisoned[0], "--dataset", missing, "--out", tmp_path / "q.pt"),
             "finetune", missing, 3, "not found")


def test_finetune_refuses_pickled_checkpoint(tmp_path, mos_csv, poisoned):
    ckpt, marker = poisoned
    one_line(attiqa("finetune", "--pretrained", ckpt, "--dataset", f"csv={mos_csv}", "--out", tmp_path / "q.pt"),
             "finetune", ckpt, 6, "refused")
    assert not marker.exists() and not (tmp_path / "q.pt").exists()


def test_finetune_unreadable_checkpoint(tmp_path, mos_csv, poisoned):
    ckpt = unreadable(poisoned[0])
    one_line(attiqa("finetune", "--pretrained", ckpt, "--dataset", mos_csv, "--out", tmp_path / "q.pt"),
             "finetune", ckpt, 4, "permission denied")


# -- evaluate ----------------------------------------------------------------------------------------
def test_evaluate_reports_every_bad_input(tmp_path, mos_csv, poisoned):
    ckpt, marker = poisoned
    missing = tmp_path / "nope.csv"
    proc = attiqa("evaluate", "--pretrained", f"p={ckpt}", "--dataset", f"a={missing}", "--dataset", f"b={mos_csv}",
                  "--out-dir", tmp_path / "res")
    assert proc.returncode == 3, proc.stderr[-2000:]  # the first failure: the missing dataset
    prefix = "attiqa evaluate: error:"
    assert "not found" in line_for(proc.stderr, str(missing), prefix)
    assert "refused" in line_for(proc.stderr, str(ckpt), prefix)
    assert len(error_lines(proc.stderr, prefix)) == 2 and not marker.exists()


def test_evaluate_refuses_pickled_checkpoint(tmp_path, mos_csv, poisoned):
    ckpt, marker = poisoned
    one_line(attiqa("evaluate", "--pretrained", f"p={ckpt}", "--dataset", f"a={mos_csv}", "--out-dir", tmp_path / "r"),
             "evaluate", ckpt, 6, "refused")
    assert not marker.exists()


# -- build-starter (only --report and a folder as --out: nothing is built) ------------------------------
def test_build_starter_report_missing(tmp_path):
    missing = tmp_path / "starter.pt"
    one_line(attiqa("build-starter", "--report", "--out", missing), "build-starter", missing, 3, "not found")
    assert not missing.exists()


def test_build_starter_report_refuses_pickled_checkpoint(poisoned):
    ckpt, marker = poisoned
    one_line(attiqa("build-starter", "--report", "--out", ckpt), "build-starter", ckpt, 6, "refused")
    assert not marker.exists()


def test_build_starter_folder_as_out(tmp_path):
    folder = tmp_path / "starter.pt"
    folder.mkdir()
    one_line(attiqa("build-starter", "--out", folder), "build-starter", folder, 5, "not a regular file")


# -- preference --------------------------------------------------------------------------------------
def test_preference_missing_pairs(tmp_path, poisoned):
    missing = tmp_path / "pairs.csv"
    one_line(attiqa("preference", missing, "--checkpoint", poisoned[0]), "preference", missing, 3, "not found")


def test_preference_refuses_pickled_checkpoint(tmp_path, poisoned):
    ckpt, marker = poisoned
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png", seed=1)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("image_a,image_b,choice\na.png,b.png,a\n")
    one_line(attiqa("preference", pairs, "--checkpoint", ckpt), "preference", ckpt, 6, "refused")
    assert not marker.exists()


def test_preference_scores_the_good_pairs_beside_a_missing_image(tmp_path, tiny_attiqa_checkpoint):
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        write_png(tmp_path / name, seed=i, side=48)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("image_a,image_b,choice\na.png,b.png,a\nc.png,gone.png,a\nb.png,c.png,b\n")
    proc = attiqa("preference", pairs, "--checkpoint", tiny_attiqa_checkpoint, "--json")
    one_line(proc, "preference", tmp_path / "gone.png", 3)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["n_pairs"] == 2


# -- the shared wrapper, in process --------------------------------------------------------------------
def test_reports_errors_keeps_bugs_and_maps_ctrl_c(capsys):
    from attiqa.cli.common import reports_errors

    @reports_errors("attiqa x")
    def interrupted(argv=None):
        raise KeyboardInterrupt

    @reports_errors("attiqa x")
    def buggy(argv=None):
        raise AttributeError("a bug")

    assert interrupted([]) == 130 and "attiqa x: interrupted" in capsys.readouterr().err
    with pytest.raises(AttributeError, match="a bug"):
        buggy([])
