"""RAW decoding against rawpy, the error cases, RawImage helpers."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import rawpy

import isp


def test_read_raw_matches_rawpy(sample_dngs):
    for path in sample_dngs[:6]:
        raw = isp.read_raw(path)
        with rawpy.imread(str(path)) as ref:
            vis = ref.raw_image_visible.astype(np.float32)
            np.testing.assert_array_equal(raw.mosaic, vis)
            colors = ref.raw_colors_visible
            desc = ref.color_desc.decode()
            for pos in range(4):
                i, j = divmod(pos, 2)
                assert raw.cfa_pattern[pos] == desc[colors[i, j]]
                assert raw.black_level[pos] == ref.black_level_per_channel[colors[i, j]]
            assert raw.white_level == ref.white_level
            wb = np.asarray(ref.camera_whitebalance[:3])
            np.testing.assert_allclose(raw.as_shot_wb, wb / wb[1], rtol=1e-6)
            np.testing.assert_allclose(raw.cam_to_xyz @ ref.rgb_xyz_matrix[:3], np.eye(3), atol=1e-5)
            assert raw.orientation == ref.sizes.flip
        assert raw.make and raw.model
        assert raw.path == str(path)


def test_sample_set_varies_cfa_and_camera(sample_dngs):
    raws = [isp.read_raw(p) for p in sample_dngs]
    assert len({r.cfa_pattern for r in raws}) == 4
    assert len({r.model for r in raws}) >= 3
    assert {r.orientation for r in raws} >= {0, 3, 6}


@pytest.mark.parametrize(
    "name, error",
    [
        ("missing", isp.RawFileNotFoundError),
        ("png_renamed", isp.NotRawError),
        ("empty", isp.NotRawError),
        ("truncated", isp.CorruptRawError),
        ("mono", isp.MonochromeError),
        ("linear", isp.NonBayerError),
        ("xtrans", isp.NonBayerError),
        ("cmyg", isp.NonBayerError),
    ],
)
def test_read_raw_errors(raw_files, name, error):
    path = raw_files.get(name, raw_files["ok"].with_name("missing.dng"))
    with pytest.raises(error) as info:
        isp.read_raw(path)
    assert isinstance(info.value, isp.RawError) and isinstance(info.value, ValueError)
    assert str(path) in str(info.value)


def test_error_messages_name_the_problem(raw_files):
    with pytest.raises(isp.RawError, match="X-Trans"):
        isp.read_raw(raw_files["xtrans"])
    with pytest.raises(isp.RawError, match="monochrome"):
        isp.read_raw(raw_files["mono"])
    with pytest.raises(isp.RawError, match="truncated"):
        isp.read_raw(raw_files["truncated"])


def test_rawimage_is_immutable_and_copied(raw_files):
    raw = isp.read_raw(raw_files["ok"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        raw.white_level = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        raw.mosaic[0, 0] = 1.0
    assert raw.mosaic.flags.owndata or raw.mosaic.base is not None


def test_preview_keeps_cfa_statistics(sample_dngs):
    raw = isp.read_raw(sample_dngs[0])
    small = raw.preview(96)
    assert max(small.shape) <= 96 and small.shape[0] % 2 == 0 and small.shape[1] % 2 == 0
    assert small.cfa_pattern == raw.cfa_pattern and small.white_level == raw.white_level
    k = raw.shape[1] // small.shape[1]
    # each CFA plane is a box average: plane means agree with the full-size planes (same crop)
    for i in range(2):
        for j in range(2):
            full = raw.mosaic[i : small.shape[0] * k : 2, j : small.shape[1] * k : 2].mean()
            assert small.mosaic[i::2, j::2].mean() == pytest.approx(full, rel=1e-4)
    assert raw.preview(10_000) is raw


def test_center_crop_keeps_phase(sample_dngs):
    raw = isp.read_raw(sample_dngs[1])
    crop = raw.center_crop(101, 64)
    assert crop.shape == (100, 64)
    top = ((raw.shape[0] - 100) // 2) // 2 * 2
    left = ((raw.shape[1] - 64) // 2) // 2 * 2
    np.testing.assert_array_equal(crop.mosaic, raw.mosaic[top : top + 100, left : left + 64])
    with pytest.raises(ValueError):
        raw.center_crop(raw.shape[0] + 2, 10)


def test_save_load_roundtrip(tmp_path, sample_dngs):
    raw = isp.read_raw(sample_dngs[2])
    raw.save(tmp_path / "r.npz")
    back = isp.RawImage.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(back.mosaic, raw.mosaic)
    for f in ("cfa_pattern", "white_level", "orientation", "path", "make", "model"):
        assert getattr(back, f) == getattr(raw, f)
    for f in ("black_level", "as_shot_wb", "cam_to_xyz"):
        np.testing.assert_array_equal(getattr(back, f), getattr(raw, f))
    with np.load(tmp_path / "r.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
