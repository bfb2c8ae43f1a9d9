"""Fixtures of the isp tests: small DNGs written on the fly, including broken ones."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from isp.sample_data import CAMERAS, unprocess, write_dng


def _base_tags(model: str):
    cm = tuple(v for x in CAMERAS[0].xyz_to_cam for v in (x, 10000))
    return [
        (271, "s", 0, "Test", True),
        (272, "s", 0, model, True),
        (50706, "B", 4, bytes([1, 4, 0, 0]), True),
        (50717, "I", 1, 4095, True),
        (50721, "2i", 9, cm, True),
    ]


def _patch_photometric(path: Path, value: int) -> None:
    """tifffile refuses a one-sample LinearRaw image, so write greyscale and patch tag 262."""
    with tifffile.TiffFile(path) as tf:
        off = tf.pages[0].tags[262].valueoffset
    data = bytearray(path.read_bytes())
    data[off : off + 2] = value.to_bytes(2, "little")
    path.write_bytes(bytes(data))


@pytest.fixture(scope="session")
def raw_files(tmp_path_factory) -> dict[str, Path]:
    """A valid DNG plus one file per error case."""
    d = tmp_path_factory.mktemp("raw_cases")
    rng = np.random.default_rng(0)
    img = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    mosaic, info = unprocess(img, CAMERAS[1], rng, cfa="GBRG")
    ok = write_dng(d / "ok.dng", mosaic, CAMERAS[1], info)
    data = ok.read_bytes()
    (d / "truncated.dng").write_bytes(data[: len(data) // 2])
    from PIL import Image

    Image.fromarray(img).save(d / "photo.png")
    shutil.copy(d / "photo.png", d / "png_renamed.dng")
    (d / "empty.dng").write_bytes(b"")
    grey = (rng.random((48, 64)) * 4000).astype(np.uint16)
    tifffile.imwrite(d / "mono.dng", grey, photometric="minisblack", extratags=_base_tags("Mono"), metadata=None, subfiletype=0)
    _patch_photometric(d / "mono.dng", 34892)
    tifffile.imwrite(d / "linear.dng", (rng.random((48, 64, 3)) * 4000).astype(np.uint16), photometric=34892,
                     extratags=_base_tags("Linear"), metadata=None, subfiletype=0)
    xtrans = bytes([1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1, 1, 1, 2, 1, 1, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 2, 0, 1])
    tifffile.imwrite(d / "xtrans.dng", (rng.random((48, 72)) * 4000).astype(np.uint16), photometric=32803,
                     extratags=_base_tags("XTrans") + [(33421, "H", 2, (6, 6), True), (33422, "B", 36, xtrans, True),
                                                       (50710, "B", 3, bytes([0, 1, 2]), True)],
                     metadata=None, subfiletype=0)
    tifffile.imwrite(d / "cmyg.dng", (rng.random((48, 64)) * 4000).astype(np.uint16), photometric=32803,
                     extratags=_base_tags("CMYG") + [(33421, "H", 2, (2, 2), True), (33422, "B", 4, bytes([0, 1, 2, 3]), True),
                                                     (50710, "B", 4, bytes([3, 4, 5, 1]), True)],
                     metadata=None, subfiletype=0)
    return {p.stem: p for p in d.iterdir()}


@pytest.fixture(scope="session")
def sample_dngs(sample_root) -> list[Path]:
    return sorted((sample_root / "raw_photos").rglob("*.dng"))
