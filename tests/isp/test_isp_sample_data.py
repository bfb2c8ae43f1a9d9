"""The sample RAW set (make_sample_set, ensure_sample_set, the CLI) and isp.save_image."""
from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import colour
import numpy as np
import pytest
import rawpy
import tifffile
import torch
from PIL import Image, ImageCms

import isp
from isp import sample_data as sd

REPO = Path(__file__).resolve().parents[2]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_set")
    paths = sd.make_sample_set(root, n_images=13, seed=0, max_side=64)
    return root, paths


def test_layout_and_rawpy_opens_every_dng(tiny_set):
    root, paths = tiny_set
    assert len(paths) == 13 and paths == sorted(paths)
    assert all(p.parent == root / "raw_photos" / "HQa1to700" / "photos" for p in paths)
    assert [p.name[:5] for p in paths] == [f"a{i:04d}" for i in range(1, 14)]
    for p in paths:
        with rawpy.imread(str(p)) as r:
            assert r.raw_type == rawpy.RawType.Flat and r.num_colors == 3
            assert r.raw_pattern.shape == (2, 2)
            assert 2**11 < r.white_level < 2**14  # a 12- to 14-bit ADC (saturation may sit below 2**bits - 1)
            img = r.raw_image_visible
            assert img.max() <= r.white_level and img.min() < np.max(r.black_level_per_channel) + 50
        tif = root / "tiff16_c" / f"{p.stem}.tif"
        assert tif.is_file()


def test_dng_tags_of_a_camera_file(tiny_set):
    _, paths = tiny_set
    makes = set()
    for p in paths:
        with tifffile.TiffFile(p) as tf:
            tags = tf.pages[0].tags
            for code in (271, 272, 33421, 33422, 50706, 50714, 50717, 50721, 50728, 50778):
                assert code in tags, f"{p.name}: DNG tag {code} missing"
            assert tags[50778].value == 21  # D65
            assert tags[33421].value == (2, 2)
            makes.add(tags[272].value)
        raw = isp.read_raw(p)
        cam = next(c for c in sd.CAMERAS if c.model == raw.model)
        np.testing.assert_allclose(np.linalg.inv(raw.cam_to_xyz), np.reshape(cam.xyz_to_cam, (3, 3)) / 1e4, atol=1e-4)
        # as-shot multipliers are the inverse of the white-balance gains drawn by unprocess
        assert 1.69 < raw.as_shot_wb[0] < 2.41 and raw.as_shot_wb[1] == 1.0 and 1.29 < raw.as_shot_wb[2] < 2.01
    assert len(makes) == len(sd.CAMERAS)


def test_expert_c_tiffs_are_16bit_prophoto_of_the_photo(tiny_set):
    root, paths = tiny_set
    p = paths[0]
    arr = tifffile.imread(root / "tiff16_c" / f"{p.stem}.tif")
    assert arr.dtype == np.uint16 and arr.ndim == 3 and arr.shape[2] == 3
    # converting back to sRGB (colour-science) gives the packaged photograph, resized as the set is
    src, _ = sd.load_source(0)
    expected = sd._resize(src, 64).astype(np.float64) / 255.0
    back = colour.RGB_to_RGB(arr / 65535.0, colour.RGB_COLOURSPACES["ProPhoto RGB"], colour.RGB_COLOURSPACES["sRGB"],
                             chromatic_adaptation_transform="Bradford", apply_cctf_decoding=True, apply_cctf_encoding=True)
    assert back.shape == expected.shape
    assert np.abs(back - expected).mean() < 2e-3
    # ProPhoto is wider than sRGB: the ProPhoto code values are not the sRGB ones
    assert np.abs(arr / 65535.0 - expected).mean() > 0.01


def test_licenses_are_written(tiny_set):
    root, paths = tiny_set
    text = (root / "LICENSES.md").read_text()
    for name, pkg, _ in sd.SOURCES:
        assert f"## {name} (shipped with {pkg})" in text
    assert "Creative Commons" in text and "NOT MIT-Adobe-5K" in text
    assert paths[-1].stem in text  # the crop is attributed to its source


def test_deterministic_for_a_seed(tmp_path, tiny_set):
    root, _ = tiny_set
    a = sd.make_sample_set(tmp_path / "a", n_images=3, seed=0, max_side=64)
    b = sd.make_sample_set(tmp_path / "b", n_images=3, seed=1, max_side=64)
    ref = _digest(root)
    got = _digest(tmp_path / "a")
    for k, v in got.items():
        if k != "LICENSES.md":
            assert ref[k] == v, f"{k} differs between two runs with seed 0"
    other = _digest(tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b]
    dng = str(a[0].relative_to(tmp_path / "a"))
    assert other[dng] != got[dng]


def test_unprocess_statistics():
    """Mosaic follows the CFA, black level and noise are present, WB is recorded."""
    rng = np.random.default_rng(0)
    grey = np.full((32, 32, 3), 128, dtype=np.uint8)
    cam = sd.CAMERAS[0]
    mosaic, info = sd.unprocess(grey, cam, rng, cfa="GRBG")
    assert mosaic.dtype == np.uint16 and mosaic.shape == (32, 32) and info["cfa"] == "GRBG"
    assert mosaic.std() > 0  # noise
    # after white balance (AsShotNeutral) and black subtraction, the grey patch is neutral in camera RGB
    black = info["black"].reshape(2, 2)
    planes = {(i, j): (mosaic[i::2, j::2].mean() - black[i, j]) for i in range(2) for j in range(2)}
    neutral = info["as_shot_neutral"]
    r, g, b = planes[(0, 1)] / neutral[0], planes[(0, 0)] / neutral[1], planes[(1, 0)] / neutral[2]
    assert r == pytest.approx(g, rel=0.05) and b == pytest.approx(g, rel=0.05)


def test_ensure_sample_set_generates_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RLISP_CACHE", str(tmp_path / "cache"))
    assert sd.default_root() == tmp_path / "cache" / "sample_fivek"
    calls = []
    real = sd.make_sample_set
    monkeypatch.setattr(sd, "make_sample_set", lambda root, **kw: calls.append(kw) or real(root, **{**kw, "max_side": 48}))
    root = sd.ensure_sample_set(n_images=2)
    assert root == sd.default_root() and "SAMPLE" in capsys.readouterr().err
    assert len(list(root.rglob("*.dng"))) == 2
    sd.ensure_sample_set(n_images=2)
    assert len(calls) == 1


def test_make_sample_data_cli(tmp_path, capsys):
    script = REPO / "experiments" / "make_sample_data.py"
    r = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "s"), "--n-images", "2", "--max-side", "48", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "wrote 2 sample DNGs" in r.stdout
    assert len(list((tmp_path / "s" / "tiff16_c").glob("*.tif"))) == 2
    sys.path.insert(0, str(REPO))
    from experiments import make_sample_data

    assert make_sample_data.main(["--out", str(tmp_path / "t"), "--n-images", "0"]) == 2
    assert "n-images" in capsys.readouterr().err and not (tmp_path / "t").exists()


# --- save_image -------------------------------------------------------------------------------

def _png16_pixels(data: bytes) -> tuple[np.ndarray, bytes]:
    """Minimal reader for the 16-bit PNGs we write (filter 0): pixels and the ICC profile."""
    pos, idat, icc, size = 8, b"", b"", None
    while pos < len(data):
        n, = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0]
        if tag == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        elif tag == b"iCCP":
            icc = zlib.decompress(body[body.index(b"\0") + 2 :])
        pos += 12 + n
    w, h = size
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + 6 * w)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].copy().view(">u2").reshape(h, w, 3).astype(np.uint16), icc


def _icc_name(icc: bytes) -> str:
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))


@pytest.fixture(scope="module")
def gradient_img():
    h, w = 20, 30
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([x, y, (x + y) / 2])


def test_save_image_8bit(tmp_path, gradient_img):
    expected = np.rint(gradient_img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    isp.save_image(gradient_img, tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "RGB" and im.size == (30, 20)
        np.testing.assert_array_equal(np.asarray(im), expected)
        assert "sRGB" in _icc_name(im.info["icc_profile"])
    isp.save_image(gradient_img, tmp_path / "a.jpg")
    with Image.open(tmp_path / "a.jpg") as im:
        assert np.abs(np.asarray(im).astype(int) - expected).mean() < 3
        assert "sRGB" in _icc_name(im.info["icc_profile"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_save_image_16bit(tmp_path, gradient_img):
    expected = np.rint(gradient_img.permute(1, 2, 0).numpy().astype(np.float64) * 65535).astype(np.uint16)
    isp.save_image(gradient_img, tmp_path / "a.tif", bits=16)
    with tifffile.TiffFile(tmp_path / "a.tif") as tf:
        got = tf.asarray()
        assert got.dtype == np.uint16 and np.abs(got.astype(int) - expected).max() <= 1  # float32 rounding
        assert "sRGB" in _icc_name(tf.pages[0].tags[34675].value)
    isp.save_image(gradient_img, tmp_path / "a.png", bits=16)
    pix, icc = _png16_pixels((tmp_path / "a.png").read_bytes())
    np.testing.assert_array_equal(pix, got)
    assert "sRGB" in _icc_name(icc)
    with Image.open(tmp_path / "a.png") as im:
        im.verify()


def test_save_image_rejects_bad_input(tmp_path, gradient_img):
    with pytest.raises(ValueError, match="16-bit"):
        isp.save_image(gradient_img, tmp_path / "a.jpg", bits=16)
    with pytest.raises(ValueError, match="8-bit"):
        isp.save_image(gradient_img, tmp_path / "a.tif", bits=8)
    bad = gradient_img.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        isp.save_image(bad, tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        isp.save_image(gradient_img[:2], tmp_path / "c.png")
    assert not list(tmp_path.iterdir())
