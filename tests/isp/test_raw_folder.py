"""Any folder of RAW files as a dataset (isp.raw_folder), the layout dispatcher (isp.datasets) and
the sample set's scene-disjoint split (isp.fivek.load_split on a root with conditions.csv)."""
from __future__ import annotations

import shutil

import colour
import numpy as np
import pytest
import rawpy

import isp
from envs.judges import load_expert_srgb
from isp import datasets, fivek, raw_folder
from isp import sample_data as sd


def _lab(x):
    return colour.XYZ_to_Lab(colour.RGB_to_XYZ(x, colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=True))


def _rel(entries, folder):
    return sorted(e.dng.relative_to(folder).as_posix() for e in entries)


def test_listing_is_recursive_sorted_and_case_insensitive(mixed_raw_folder):
    raws = mixed_raw_folder["raws"]
    listed = [p.relative_to(raws).as_posix() for p in raw_folder.list_raw_files(raws)]
    assert listed == sorted(mixed_raw_folder["good"] + mixed_raw_folder["bad"])
    assert "notes.txt" not in listed and "card1/deep/PIDNG_0001.DNG" in listed and "card1/EMPTY.ARW" in listed
    with pytest.raises(FileNotFoundError, match="nowhere"):
        raw_folder.list_raw_files(raws / "nowhere")


def test_both_dng_writers_give_real_raw_files(mixed_raw_folder):
    """rawpy opens each good file as a Bayer RAW and its neutral rendering is the photograph."""
    raws = mixed_raw_folder["raws"]
    makes = set()
    for rel in mixed_raw_folder["good"]:
        with rawpy.imread(str(raws / rel)) as r:
            assert r.raw_type == rawpy.RawType.Flat and r.raw_pattern.shape == (2, 2)
        raw = isp.read_raw(raws / rel)
        makes.add(raw.make)
        if rel.startswith("card0/IMG_0000") or rel.endswith(".DNG"):  # exposure error 0
            ours = isp.render(raw).permute(1, 2, 0).double().numpy()
            de = colour.delta_E(_lab(ours), _lab(mixed_raw_folder["photo"][rel] / 255.0), method="CIE 2000").mean()
            assert de < 8, (rel, de)
    assert "pidng" in makes and len(makes) >= 3


def test_split_reports_bad_files_by_name_once(mixed_raw_folder, capsys):
    raws = mixed_raw_folder["raws"]
    raw_folder._REPORTED.clear()
    split = raw_folder.load_split(raws)
    got = _rel(split["train"] + split["test"], raws)
    assert got == mixed_raw_folder["good"] and split["train"] and split["test"]
    assert not set(_rel(split["train"], raws)) & set(_rel(split["test"], raws))
    err = capsys.readouterr().err
    causes = {"TRUNC_0001.dng": "truncated", "holiday.nef": "not a RAW file", "EMPTY.ARW": "empty", "folder.dng": "folder"}
    for name, cause in causes.items():
        line = next(ln for ln in err.splitlines() if name in ln)
        assert cause in line, line
    assert [p.relative_to(raws).as_posix() for p, _ in split.skipped] == mixed_raw_folder["bad"]
    raw_folder.load_split(raws)
    assert capsys.readouterr().err == ""  # reported once per process
    e = split["train"][0]
    assert e.dng.is_file() and e.condition == "as_shot" and e.scene == e.id and "/" not in e.id
    assert e.meta["relative_path"] == e.dng.relative_to(raws).as_posix()


def test_hash_split_is_deterministic_stable_and_about_a_quarter(mixed_raw_folder, tmp_path):
    names = [f"d{i // 100}/IMG_{i:05d}.CR2" for i in range(2000)]
    frac = np.mean([raw_folder.hash_subset(n) == "test" for n in names])
    assert 0.22 < frac < 0.28
    assert [raw_folder.hash_subset(n, seed=1) for n in names] != [raw_folder.hash_subset(n) for n in names]
    # adding files keeps every earlier file's subset
    folder = tmp_path / "raws"
    shutil.copytree(mixed_raw_folder["raws"], folder)
    before = {e.id: k for k, v in raw_folder.load_split(folder, quiet=True).items() for e in v}
    assert before == {e.id: k for k, v in raw_folder.load_split(folder, quiet=True).items() for e in v}
    (folder / "new").mkdir()
    for i in range(6):
        shutil.copy(folder / mixed_raw_folder["good"][0], folder / "new" / f"NEW_{i}.dng")
    after = {e.id: k for k, v in raw_folder.load_split(folder, quiet=True).items() for e in v}
    assert len(after) == len(before) + 6 and all(after[i] == k for i, k in before.items())


def test_expert_pairing_and_colour_space(mixed_raw_folder):
    raws, experts = mixed_raw_folder["raws"], mixed_raw_folder["experts"]
    split = raw_folder.load_split(raws, expert_dir=experts, quiet=True)
    by_rel = {e.meta["relative_path"]: e for v in split.values() for e in v}
    tif, png = by_rel["card0/IMG_0000.dng"], by_rel["card1/IMG_0001.dng"]
    assert tif.expert_c == experts / "card0" / "IMG_0000.tif" and tif.meta["expert_space"] == "prophoto"
    assert png.expert_c == experts / "IMG_0001.png" and png.meta["expert_space"] == "srgb"
    assert sum(e.expert_c is not None for e in by_rel.values()) == 2
    for e in (tif, png):  # both decode back to the photograph (ProPhoto through colour-science)
        photo = mixed_raw_folder["photo"][e.meta["relative_path"]] / 255.0
        assert np.abs(load_expert_srgb(e.expert_c) - photo).mean() < 2e-3
    with pytest.raises(FileNotFoundError, match="no_experts"):
        raw_folder.load_split(raws, expert_dir=raws / "no_experts", quiet=True)


def test_too_few_usable_files_is_one_clear_error(mixed_raw_folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="empty"):
        raw_folder.load_split(empty)
    one = tmp_path / "one_good"
    one.mkdir()
    shutil.copy(mixed_raw_folder["raws"] / mixed_raw_folder["good"][0], one / "a.dng")
    shutil.copy(mixed_raw_folder["raws"] / "card0" / "holiday.nef", one / "b.nef")
    with pytest.raises(ValueError, match=r"one_good.*1 usable RAW file\(s\) of 2"):
        raw_folder.load_split(one, quiet=True)
    # two usable files always give a train and a test file, whatever the hash says
    shutil.copy(one / "a.dng", one / "c.dng")
    split = raw_folder.load_split(one, quiet=True)
    assert len(split["train"]) == 1 and len(split["test"]) == 1
    with pytest.raises(ValueError, match="auto"):
        raw_folder.load_split(one, split="random")


@pytest.fixture(scope="module")
def grid_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid32")
    sd.make_sample_set(root, seed=0, max_side=32)
    return root


def test_default_sample_split_is_scene_disjoint_and_covers_every_condition(grid_root):
    split = datasets.load_split(grid_root)
    train_scenes = {e.scene for e in split["train"]}
    test_scenes = {e.scene for e in split["test"]}
    assert test_scenes == set(sd.TEST_SCENES) and not train_scenes & test_scenes
    assert train_scenes | test_scenes == {s.name for s in sd.SCENES}
    for scene in sd.TEST_SCENES:
        assert {e.condition for e in split["test"] if e.scene == scene} == {c.name for c in sd.CONDITIONS}
    # both views of the stereo pair are on one side, with their scene name
    assert {e.meta["view"] for e in split["train"] if e.scene == "motorcycle"} == {"0", "1"}
    # no test image's photograph (Expert C) is any training image's
    train_tiffs = {e.expert_c.read_bytes() for e in split["train"]}
    assert not any(e.expert_c.read_bytes() in train_tiffs for e in split["test"])
    # the random split draws whole scenes too
    for seed in range(3):
        r = fivek.load_split(grid_root, "random", seed=seed)
        assert not {e.scene for e in r["train"]} & {e.scene for e in r["test"]}


def test_dispatcher_recognises_each_layout(grid_root, mixed_raw_folder, tmp_path):
    assert datasets.detect_layout(grid_root) == "sample"
    assert datasets.detect_layout(mixed_raw_folder["raws"]) == "raw_folder"
    plain = tmp_path / "fivek"
    shutil.copytree(grid_root / "raw_photos", plain / "raw_photos")
    assert datasets.detect_layout(plain) == "fivek"
    split = datasets.load_split(plain)  # no conditions.csv: the last 25 % by id, each photo its own scene
    assert [e.id for e in split["test"]] == [f"a{i:04d}" for i in range(37, 49)]
    assert all(e.scene == e.id and e.condition == "as_shot" for e in split["test"])
    assert fivek.FiveKEntry("a0001", "a0001-x", plain / "x.dng", None).scene == "a0001"  # old constructor calls
    rf = datasets.load_split(mixed_raw_folder["raws"], expert_dir=mixed_raw_folder["experts"])
    assert isinstance(rf, raw_folder.Split) and len(rf["train"]) + len(rf["test"]) == len(mixed_raw_folder["good"])
    with pytest.raises(ValueError, match="expert_dir"):
        datasets.load_split(grid_root, expert_dir=mixed_raw_folder["experts"])
    with pytest.raises(FileNotFoundError, match="missing"):
        datasets.load_split(tmp_path / "missing")


def test_conditions_csv_missing_a_row_is_an_error(grid_root, tmp_path):
    root = tmp_path / "s"
    shutil.copytree(grid_root, root)
    lines = (root / "conditions.csv").read_text().splitlines()
    (root / "conditions.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"conditions.csv has no row.*a0048"):
        fivek.load_split(root)


def test_image_set_loads_a_mixed_raw_folder(mixed_raw_folder, capsys):
    from envs.core import load_image_set

    raw_folder._REPORTED.clear()
    train = load_image_set(mixed_raw_folder["raws"], "train", preview_side=64, crop=(32, 32))
    test = load_image_set(mixed_raw_folder["raws"], "test", preview_side=64, crop=(32, 32))
    assert len(train) + len(test) == len(mixed_raw_folder["good"])
    err = capsys.readouterr().err
    assert all(p.split("/")[-1] in err for p in mixed_raw_folder["bad"])
    assert err.count("holiday.nef") == 1
