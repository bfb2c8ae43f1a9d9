"""isp.fivek: indexing, pairing by id, splits (no RAW decoding needed except cached_preview)."""
from __future__ import annotations

import os

import pytest

from isp import fivek


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _layout(root, ids, tiff_ids=None, group="HQa1to700"):
    tiff_ids = ids if tiff_ids is None else tiff_ids
    for i in ids:
        _touch(root / "raw_photos" / group / "photos" / f"a{i:04d}-img{i}.dng")
    for i in tiff_ids:
        _touch(root / "tiff16_c" / f"a{i:04d}-img{i}.tif")
    return root


def test_index_pairs_by_id_not_listing_order(tmp_path):
    # Files created in reverse order and spread over two groups; expert names pair by id.
    for i in (9, 3, 1):
        _touch(tmp_path / "raw_photos" / ("HQa1to700" if i < 5 else "HQa701to1400") / "photos" / f"a{i:04d}-n{i}.dng")
    for i in (1, 9, 3):
        _touch(tmp_path / "tiff16_c" / f"a{i:04d}-n{i}.tif")
    entries = fivek.index(tmp_path)
    assert [e.id for e in entries] == ["a0001", "a0003", "a0009"]
    for e in entries:
        assert e.expert_c is not None and e.expert_c.stem == e.dng.stem == e.name
        assert e.id in e.dng.name and e.id in e.expert_c.name


def test_scan_reports_anomalies(tmp_path):
    _layout(tmp_path, [1, 2, 3], tiff_ids=[1, 3, 7])
    _touch(tmp_path / "raw_photos" / "HQa1to700" / "photos" / "holiday.dng")
    _touch(tmp_path / "tiff16_c" / "a0003-other.tif")  # duplicate id 3
    result = fivek.scan(tmp_path)
    assert [e.id for e in result.entries] == ["a0001", "a0002", "a0003"]
    assert [e.id for e in result.missing_expert] == ["a0002"]
    assert [p.name for p in result.orphan_tiffs] == ["a0007-img7.tif"]
    assert [p.name for p in result.bad_names] == ["holiday.dng"]
    assert list(result.duplicates) == ["a0003"]


def test_not_a_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an MIT-Adobe-5K root"):
        fivek.index(tmp_path)
    (tmp_path / "raw_photos").mkdir()
    with pytest.raises(FileNotFoundError, match="no RAW files"):
        fivek.index(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fivek.index(tmp_path / "nope")


@pytest.mark.parametrize("n,n_test", [(1, 1), (3, 1), (8, 2), (12, 3)])
def test_auto_split_small(tmp_path, n, n_test):
    _layout(tmp_path, range(1, n + 1))
    split = fivek.load_split(tmp_path)
    ids = [f"a{i:04d}" for i in range(1, n + 1)]
    assert [e.id for e in split["test"]] == ids[n - n_test:]
    assert [e.id for e in split["train"]] == ids[: n - n_test]


def test_auto_split_full_dataset_uses_official_test(tmp_path):
    # 5,000 empty files in the official grouping.
    for lo in range(1, 5001, 700):
        hi = min(lo + 699, 5000)
        photos = tmp_path / "raw_photos" / f"HQa{lo}to{hi}" / "photos"
        photos.mkdir(parents=True)
        for i in range(lo, hi + 1):
            (photos / f"a{i:04d}-x.dng").touch()
    split = fivek.load_split(tmp_path)
    assert [e.id for e in split["test"]] == list(fivek.OFFICIAL_TEST_IDS)
    assert len(split["train"]) == 4500 and split["train"][-1].id == "a4500"


def test_named_and_random_splits(tmp_path):
    _layout(tmp_path, range(1, 9))
    fivek.write_split_file(tmp_path / "splits" / "mine.txt", ["a0001", "a0002"], ["a0005"], comment="test")
    split = fivek.load_split(tmp_path, "mine")
    assert [e.id for e in split["train"]] == ["a0001", "a0002"]
    assert [e.id for e in split["test"]] == ["a0005"]
    # id-only file: listed ids are test, the rest train
    (tmp_path / "splits" / "ids.txt").write_text("a0008\na0007  # comment\n")
    split = fivek.load_split(tmp_path, "ids")
    assert [e.id for e in split["test"]] == ["a0007", "a0008"]
    assert len(split["train"]) == 6
    r0 = fivek.load_split(tmp_path, "random", seed=0)
    assert fivek.load_split(tmp_path, "random", seed=0) == r0
    assert len(r0["test"]) == 2 and not {e.id for e in r0["test"]} & {e.id for e in r0["train"]}
    seeds = {tuple(e.id for e in fivek.load_split(tmp_path, "random", seed=s)["test"]) for s in range(6)}
    assert len(seeds) > 1
    with pytest.raises(FileNotFoundError, match="prepare_fivek"):
        fivek.load_split(tmp_path, "absent")
    (tmp_path / "splits" / "bad.txt").write_text("a0099 test\n")
    with pytest.raises(ValueError, match="does not have"):
        fivek.load_split(tmp_path, "bad")
    (tmp_path / "splits" / "bad2.txt").write_text("a0001 val\n")
    with pytest.raises(ValueError, match="unknown subset"):
        fivek.load_split(tmp_path, "bad2")


def test_cached_preview_decodes_once(sample_root, tmp_path, monkeypatch):
    import isp

    dng = fivek.index(sample_root)[0].dng
    calls = []
    real = isp.read_raw

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(isp, "read_raw", counting)
    a = fivek.cached_preview(dng, 64, cache_dir=tmp_path)
    b = fivek.cached_preview(dng, 64, cache_dir=tmp_path)
    assert len(calls) == 1
    assert max(a.mosaic.shape) <= 64 and a.mosaic.shape == b.mosaic.shape
    assert (a.mosaic == b.mosaic).all() and a.cfa_pattern == b.cfa_pattern
    assert str(b.path) == str(dng)
    ref = real(dng).preview(64)
    assert (ref.mosaic == b.mosaic).all()
    # Another max_side is another entry; touching the file invalidates the entry.
    fivek.cached_preview(dng, 32, cache_dir=tmp_path)
    assert len(calls) == 2
    st = os.stat(dng)
    os.utime(dng, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    fivek.cached_preview(dng, 64, cache_dir=tmp_path)
    assert len(calls) == 3
    assert not list(tmp_path.glob(".*tmp*"))
