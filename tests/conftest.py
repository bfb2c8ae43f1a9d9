"""Fixtures shared by every test package.

Heavy artefacts (the sample RAW set, a tiny ATTIQA checkpoint) are built once per test session
into a temporary folder; each test package may add its own fixtures in its own conftest.py.
"""
from __future__ import annotations

import os

import pytest

# Two pytest-xdist workers share CI's two cores: one intra-op thread each.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """A small sample set in the MIT-Adobe-5K layout (DNGs + 16-bit Expert C TIFFs)."""
    from isp.sample_data import make_sample_set

    root = tmp_path_factory.mktemp("fivek_sample")
    make_sample_set(root, n_images=12, seed=0, max_side=384)
    return root


@pytest.fixture(scope="session")
def tiny_attiqa_checkpoint(tmp_path_factory):
    """A tiny ATTIQA checkpoint with the starter's architecture, built in seconds."""
    from attiqa.starter import StarterConfig, build_starter

    path = tmp_path_factory.mktemp("attiqa") / "tiny_starter.pt"
    build_starter(path, StarterConfig.tiny(), progress=False)
    return path


def write_mixed_raw_folder(root):
    """Write a folder of mixed RAW files, as a user's card dump might hold, and say what is in it.

    Good files: DNGs from two writers in two layouts (``isp.sample_data.write_dng``: tifffile
    strips, 14-bit levels, ``.dng``; pidng: one 12-bit tile, upper-case ``.DNG``) in nested folders. Bad files: a truncated DNG, a JPEG named ``.nef``, an empty ``.ARW`` and a folder named
    ``.dng``. Also a non-RAW file (``notes.txt``) that must be ignored, and expert renderings for
    two of the good files (a 16-bit ProPhoto TIFF and an 8-bit sRGB PNG) in ``root/experts``.

    Args:
        root: the folder to create (its ``raws`` subfolder holds the RAW files).

    Returns:
        dict: ``raws`` (the RAW folder), ``experts`` (the expert folder), ``good`` and ``bad``
        (relative paths under ``raws``, sorted), ``photo`` (``{relative path: sRGB uint8 scene}``).
    """
    from pathlib import Path

    import numpy as np
    from PIL import Image
    from pidng.core import RAW2DNG
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, Orientation, PhotometricInterpretation
    from pidng.dng import DNGTags, Tag

    from isp import sample_data as sd

    root = Path(root)
    raws, experts = root / "raws", root / "experts"
    good, photo = [], {}
    for k, (scene, cam) in enumerate((("astronaut", 0), ("chelsea", 2), ("china", 3), ("grace_hopper", 1))):
        img = sd.scene_image(scene, max_side=96)
        rel = f"card{k % 2}/IMG_{k:04d}.dng"
        mosaic, info = sd.unprocess(img, sd.CAMERAS[cam], np.random.default_rng(k), ev_error=-0.5 * k)
        sd.write_dng(raws / rel, mosaic, sd.CAMERAS[cam], info)
        good.append(rel)
        photo[rel] = img
    # pidng: one 12-bit BGGR tile (its lossless-JPEG option needs a C extension broken on Python 3.10+)
    img = sd.scene_image("motorcycle", max_side=96)
    cam = sd.CAMERAS[1]
    mosaic, info = sd.unprocess(img, cam, np.random.default_rng(9), cfa="BGGR")
    m12 = np.clip(np.rint(mosaic.astype(np.float64) * 4095.0 / cam.white), 0, 4095).astype(np.uint16)
    h, w = m12.shape
    t = DNGTags()
    for tag, value in ((Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.TileWidth, w), (Tag.TileLength, h),
                       (Tag.Orientation, Orientation.Horizontal),
                       (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
                       (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 12), (Tag.CFARepeatPatternDim, [2, 2]),
                       (Tag.CFAPattern, CFAPattern.BGGR), (Tag.BlackLevel, 0), (Tag.WhiteLevel, 4095),
                       (Tag.ColorMatrix1, [[v, 10000] for v in cam.xyz_to_cam]),
                       (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
                       (Tag.AsShotNeutral, [[int(round(v * 10000)), 10000] for v in info["as_shot_neutral"]]),
                       (Tag.Make, "pidng"), (Tag.Model, "pidng test camera"), (Tag.DNGVersion, DNGVersion.V1_4),
                       (Tag.DNGBackwardVersion, DNGVersion.V1_2)):
        t.set(tag, value)
    writer = RAW2DNG()
    writer.options(t, path="", compress=False)
    rel = "card1/deep/PIDNG_0001.DNG"
    (raws / rel).parent.mkdir(parents=True, exist_ok=True)
    (raws / rel).write_bytes(bytes(writer.convert(m12)))
    good.append(rel)
    photo[rel] = img
    # bad files
    data = (raws / good[0]).read_bytes()
    (raws / "card0/TRUNC_0001.dng").write_bytes(data[: len(data) // 3])
    Image.fromarray(photo[good[0]]).save(raws / "card0/holiday.nef", format="JPEG")
    (raws / "card1/EMPTY.ARW").write_bytes(b"")
    (raws / "card1/folder.dng").mkdir()
    (raws / "notes.txt").write_text("not a raw file\n")
    bad = sorted(["card0/TRUNC_0001.dng", "card0/holiday.nef", "card1/EMPTY.ARW", "card1/folder.dng"])
    # experts: by stem, one 16-bit ProPhoto TIFF (same relative path), one 8-bit sRGB PNG (flat)
    sd.write_prophoto_tiff(experts / "card0" / "IMG_0000.tif", photo[good[0]])
    experts.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo[good[1]]).save(experts / "IMG_0001.png")
    return {"raws": raws, "experts": experts, "good": sorted(good), "bad": bad, "photo": photo}


@pytest.fixture(scope="session")
def mixed_raw_folder(tmp_path_factory):
    """:func:`write_mixed_raw_folder` in a session temporary folder (do not modify it)."""
    return write_mixed_raw_folder(tmp_path_factory.mktemp("mixed_raws"))


# -- tests that cannot skip unseen --------------------------------------------------------------
# Under CI=true a skipped browser or distributed test is a failure: a missing Chromium or a torch
# build without gloo must turn the run red, not into a quiet "s". Mark such tests with
# @pytest.mark.browser / @pytest.mark.distributed (registered in pyproject.toml).
MUST_RUN_IN_CI = ("browser", "distributed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and report.skipped:
        marks = [m for m in MUST_RUN_IN_CI if item.get_closest_marker(m)]
        if marks:
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
            report.outcome = "failed"
            report.longrepr = f"CI=true: the {marks[0]} test {item.nodeid} was skipped ({reason}); it must run in CI"
