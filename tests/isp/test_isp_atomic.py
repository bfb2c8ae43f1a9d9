"""isp._atomic.atomic_path: the one temp-file-and-rename helper of isp."""
from __future__ import annotations

import numpy as np
import pytest

import isp
from isp._atomic import atomic_path


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "split.txt"
    target.write_text("old\n")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".split.") and tmp.suffix == ".txt"
        tmp.write_text("new\n")
        assert target.read_text() == "old\n"  # readers see the old file until the block ends
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.txt"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "img.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]


def test_raw_save_and_save_image_go_through_it(tmp_path):
    raw = isp.RawImage(mosaic=np.full((4, 6), 100.0, dtype=np.float32), cfa_pattern="RGGB",
                       black_level=np.zeros(4), white_level=1000.0, as_shot_wb=np.ones(3), cam_to_xyz=np.eye(3))
    raw.save(tmp_path / "r.npz")
    isp.save_image(np.zeros((3, 4, 6)), tmp_path / "i.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.png", "r.npz"]
    assert isp.RawImage.load(tmp_path / "r.npz").shape == (4, 6)
