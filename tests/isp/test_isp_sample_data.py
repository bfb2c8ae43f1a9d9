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
from isp import fivek
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


@pytest.fixture(scope="module")
def grid_set(tmp_path_factory):
    """The full grid (every scene under every condition), small."""
    root = tmp_path_factory.mktemp("grid_set")
    sd.make_sample_set(root, seed=0, max_side=256)
    return root


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
            black = np.max(r.black_level_per_channel)
            assert img.max() <= r.white_level and np.percentile(img, 0.1) < black + 0.25 * (r.white_level - black)
        tif = root / "tiff16_c" / f"{p.stem}.tif"
        assert tif.is_file()


def test_dng_tags_of_a_camera_file(tiny_set):
    root, paths = tiny_set
    rows = sd.read_conditions(root)
    makes = set()
    for p in paths:
        with tifffile.TiffFile(p) as tf:
            tags = tf.pages[0].tags
            for code in (271, 272, 274, 33421, 33422, 50706, 50714, 50717, 50721, 50728, 50778):
                assert code in tags, f"{p.name}: DNG tag {code} missing"
            assert tags[50778].value == 21  # D65
            assert tags[33421].value == (2, 2)
            makes.add(tags[272].value)
        raw = isp.read_raw(p)
        row = rows[p.name[:5]]
        cam = next(c for c in sd.CAMERAS if c.model == raw.model)
        assert row["camera"] == cam.model and row["cfa"] == raw.cfa_pattern
        np.testing.assert_allclose(np.linalg.inv(raw.cam_to_xyz), np.reshape(cam.xyz_to_cam, (3, 3)) / 1e4, atol=1e-4)
        # the recorded multipliers are the scene's (R in [1.7, 2.4], B in [1.4, 2.0]) times the WB error
        wb = float(row["wb_error"])
        r_gain, b_gain = raw.as_shot_wb[0] / 2 ** (wb / 2), raw.as_shot_wb[2] * 2 ** (wb / 2)
        assert raw.as_shot_wb[1] == 1.0 and 1.69 < r_gain < 2.41 and 1.39 < b_gain < 2.01
    assert len(makes) == len(sd.CAMERAS)


def test_scene_catalogue_is_data():
    names = [s.name for s in sd.SCENES]
    assert len(names) == len(set(names)) >= 8
    assert set(sd.TEST_SCENES) == {"rocket", "flower", "coffee"} and set(sd.TEST_SCENES) <= set(names)
    assert not {"hubble_deep_field", "immunohistochemistry", "retina"} & set(names)
    moto = next(s for s in sd.SCENES if s.name == "motorcycle")
    assert len(moto.views) == 2 and "stereo" in moto.relation
    for s in sd.SCENES:
        assert s.license and s.package
        for v in range(len(s.views)):
            img = sd.load_scene(s.name, v)
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
            assert img.std(axis=(0, 1)).min() > 10  # a colour photograph, not a flat or grey image
            assert np.abs(img[..., 0].astype(int) - img[..., 2]).mean() > 3


def test_conditions_csv_and_grid(grid_set):
    rows = sd.read_conditions(grid_set)
    with open(grid_set / "conditions.csv", newline="") as fh:
        header = next(iter(fh)).strip().split(",")
    assert tuple(header) == sd.CONDITIONS_CSV_FIELDS
    assert len(rows) == len(sd.SCENES) * len(sd.CONDITIONS) >= 40
    pairs = {(r["scene"], r["condition"]) for r in rows.values()}
    assert pairs == {(s.name, c.name) for s in sd.SCENES for c in sd.CONDITIONS}
    for r in rows.values():
        assert r["subset"] == ("test" if r["scene"] in sd.TEST_SCENES else "train")
        ev, wb = float(r["ev_error"]), float(r["wb_error"])
        cond = next(c for c in sd.CONDITIONS if c.name == r["condition"])
        assert cond.ev_error[0] <= ev <= cond.ev_error[1] and cond.wb_error[0] <= wb <= cond.wb_error[1]
        assert r["iso_class"] == cond.iso_class
    assert {r["camera"] for r in rows.values()} == {c.model for c in sd.CAMERAS}
    assert {r["cfa"] for r in rows.values()} == set(isp.BAYER_PATTERNS)
    assert {r["orientation"] for r in rows.values()} == {"1", "3", "6"}
    assert {r["view"] for r in rows.values() if r["scene"] == "motorcycle"} == {"0", "1"}
    hi = [float(r["shot_noise"]) for r in rows.values() if r["iso_class"] == "high"]
    lo = [float(r["shot_noise"]) for r in rows.values() if r["iso_class"] == "base"]
    assert min(hi) > 10 * max(lo)


def test_first_captures_cover_scenes_conditions_and_test_scenes():
    plan = sd.capture_plan(12)
    assert {c.scene for c in plan} == {s.name for s in sd.SCENES}
    assert {c.condition for c in plan} == {c.name for c in sd.CONDITIONS}
    assert {c.scene for c in plan if c.subset == "test"} == set(sd.TEST_SCENES)
    for subset in ("train", "test"):  # files that need turning on both sides
        assert {c.orientation for c in plan if c.subset == subset} == {1, 3, 6}
    assert [c.name for c in sd.capture_plan(12)] == [c.name for c in sd.capture_plan()[:12]]
    with pytest.raises(ValueError, match="n_images"):
        sd.capture_plan(0)


def test_expert_c_tiffs_are_16bit_prophoto_of_the_photo(grid_set):
    rows = sd.read_conditions(grid_set)
    row = next(r for r in rows.values() if r["scene"] == "chelsea")
    arr = tifffile.imread(grid_set / "tiff16_c" / f"{row['name']}.tif")
    assert arr.dtype == np.uint16 and arr.ndim == 3 and arr.shape[2] == 3
    # converting back to sRGB (colour-science) gives the packaged photograph as the sensor sees it
    expected = sd.scene_image("chelsea", 0, 256).astype(np.float64) / 255.0
    back = colour.RGB_to_RGB(arr / 65535.0, colour.RGB_COLOURSPACES["ProPhoto RGB"], colour.RGB_COLOURSPACES["sRGB"],
                             chromatic_adaptation_transform="Bradford", apply_cctf_decoding=True, apply_cctf_encoding=True)
    assert back.shape == expected.shape and max(back.shape[:2]) <= 256
    assert np.abs(back - expected).mean() < 2e-3
    # ProPhoto is wider than sRGB: the ProPhoto code values are not the sRGB ones
    assert np.abs(arr / 65535.0 - expected).mean() > 0.01
    # scene_image is the photograph itself, resampled (not another picture)
    photo = sd.load_scene("chelsea").astype(np.float64) / 255.0
    small = np.asarray(Image.fromarray(np.uint8(expected * 255)).resize(photo.shape[1::-1], Image.Resampling.LANCZOS)) / 255.0
    assert np.abs(small - photo).mean() < 0.06
    # every capture of a scene view has the same Expert C
    same = [r["name"] for r in rows.values() if r["scene"] == "chelsea"]
    assert len({(grid_set / "tiff16_c" / f"{n}.tif").read_bytes() for n in same}) == 1


def test_licenses_are_written(tiny_set):
    root, paths = tiny_set
    text = (root / "LICENSES.md").read_text()
    for s in sd.SCENES:
        assert f"## {s.name} (shipped with {s.package})" in text
        assert s.license in text
    assert "Creative Commons" in text and "NOT MIT-Adobe-5K" in text and "public domain" in text
    assert all(p.stem in text for p in paths)


def test_deterministic_for_a_seed(tmp_path, tiny_set):
    root, _ = tiny_set
    a = sd.make_sample_set(tmp_path / "a", n_images=3, seed=0, max_side=64)
    b = sd.make_sample_set(tmp_path / "b", n_images=3, seed=1, max_side=64)
    ref = _digest(root)
    got = _digest(tmp_path / "a")
    for k, v in got.items():
        if k not in ("LICENSES.md", "conditions.csv"):
            assert ref[k] == v, f"{k} differs between two runs with seed 0"
    other = _digest(tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b]
    dng = str(a[0].relative_to(tmp_path / "a"))
    assert other[dng] != got[dng]


def test_unprocess_statistics():
    """Mosaic follows the CFA, black level and noise are present, the scene's WB is recorded."""
    rng = np.random.default_rng(0)
    grey = np.full((32, 32, 3), 128, dtype=np.uint8)
    cam = sd.CAMERAS[0]
    mosaic, info = sd.unprocess(grey, cam, rng, cfa="GRBG")
    assert mosaic.dtype == np.uint16 and mosaic.shape == (32, 32) and info["cfa"] == "GRBG"
    assert mosaic.std() > 0  # noise
    np.testing.assert_allclose(info["as_shot_neutral"], info["scene_neutral"])
    # after white balance (AsShotNeutral) and black subtraction, the grey patch is neutral in camera RGB
    black = info["black"].reshape(2, 2)
    planes = {(i, j): (mosaic[i::2, j::2].mean() - black[i, j]) for i in range(2) for j in range(2)}
    neutral = info["as_shot_neutral"]
    r, g, b = planes[(0, 1)] / neutral[0], planes[(0, 0)] / neutral[1], planes[(1, 0)] / neutral[2]
    assert r == pytest.approx(g, rel=0.05) and b == pytest.approx(g, rel=0.05)
    # a WB error changes only what is recorded, and in the documented direction (+ = warmer render)
    _, warm = sd.unprocess(grey, cam, np.random.default_rng(0), wb_error=0.6)
    ratio = (warm["scene_neutral"] / warm["as_shot_neutral"])  # recorded gains / scene gains
    np.testing.assert_allclose(np.log2(ratio[0] / ratio[2]), 0.6, atol=1e-9)
    # over-exposure clips photosites at the white level, as a real file does
    over, oi = sd.unprocess(np.full((32, 32, 3), 250, np.uint8), cam, np.random.default_rng(0), ev_error=1.0)
    assert (over == cam.white).mean() > 0.2 and over.max() == cam.white
    with pytest.raises(ValueError, match="iso_class"):
        sd.unprocess(grey, cam, rng, iso_class="extreme")


def _lab(x):
    return colour.XYZ_to_Lab(colour.RGB_to_XYZ(x, colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=True))


def _de(a, b) -> float:
    return float(colour.delta_E(_lab(a), _lab(b), method="CIE 2000").mean())


@pytest.fixture(scope="module")
def renders(grid_set):
    """Per capture: the photograph, its neutral rendering and the rendering with the correction."""
    out = {}
    for e in fivek.load_split(grid_set)["train"] + fivek.load_split(grid_set)["test"]:
        raw = isp.read_raw(e.dng)
        photo = sd.scene_image(e.scene, int(e.meta["view"]), 256).astype(np.float64) / 255.0
        neutral = isp.render(raw).permute(1, 2, 0).double().numpy()
        fixed = isp.render(raw, isp.params_from_dict(sd.correction(e.meta))).permute(1, 2, 0).double().numpy()
        out[e.id] = (e, photo, neutral, fixed)
    return out


def test_correct_capture_renders_back_to_the_photo(renders):
    """The unprocessing inverts the neutral rendering: only mosaic, demosaic and noise remain."""
    de = [_de(n, p) for e, p, n, _ in renders.values() if e.condition == "correct"]
    assert len(de) == len(sd.SCENES) and np.mean(de) < 3.5 and max(de) < 6
    # the comparison can fail: the rendering upside down, or half a stop brighter, is far off
    e0, p0, n0, _ = next(v for v in renders.values() if v[0].condition == "correct")
    assert _de(n0[::-1], p0) > 10 and _de(np.clip(n0 * 2**0.25, 0, 1), p0) > 2 * de[0]


def _stats(img):
    return {"mean": img.mean(), "rb": img[..., 0].mean() / img[..., 2].mean(), "clip": (img.max(-1) >= 0.98).mean()}


@pytest.mark.parametrize("condition", ["under", "over", "wb_warm", "wb_cool", "high_iso"])
def test_each_condition_moves_the_rendering_its_own_way_and_its_parameter_undoes_it(renders, condition):
    cases = [v for v in renders.values() if v[0].condition == condition]
    assert len(cases) == len(sd.SCENES)
    more_clipped = 0
    for e, photo, neutral, fixed in cases:
        s, p = _stats(neutral), _stats(photo)
        correct = next(v for v in renders.values() if v[0].condition == "correct" and v[0].scene == e.scene)
        d_neutral, d_fixed = _de(neutral, photo), _de(fixed, photo)
        if condition == "under":
            assert s["mean"] < p["mean"] - 0.05, e.name
        elif condition == "over":
            assert s["mean"] > p["mean"] + 0.03 and s["clip"] >= p["clip"], e.name
            more_clipped += s["clip"] > p["clip"] + 0.005  # a dim scene may have no highlight to lose
        elif condition == "wb_warm":
            assert s["rb"] > 1.1 * p["rb"], e.name
        elif condition == "wb_cool":
            assert s["rb"] < p["rb"] / 1.1, e.name
        else:  # high ISO: same tone and colour, far more pixel noise than the correct capture
            noise = lambda x: np.abs(np.diff(x, axis=1)).mean()  # noqa: E731
            assert noise(neutral) > 1.5 * noise(correct[2]) and abs(s["mean"] - p["mean"]) < 0.03, e.name
            continue
        # the parameter brings the rendering back near the correct capture's floor (demosaic, noise);
        # clipped highlights stay lost, so an over-exposure is only partly undone
        floor = _de(correct[2], correct[1])
        assert d_neutral > 4 and d_fixed < d_neutral - 1, (e.name, floor, d_neutral, d_fixed)
        if condition != "over":  # brightening an under-exposure also amplifies its noise
            assert d_fixed < floor + (2.0 if condition == "under" else 1.0), (e.name, floor, d_neutral, d_fixed)
    if condition == "over":
        assert more_clipped >= len(cases) - 2


def test_ensure_sample_set_generates_once_and_rebuilds_old_versions(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RLISP_CACHE", str(tmp_path / "cache"))
    assert sd.default_root() == tmp_path / "cache" / "sample_fivek"
    calls = []
    real = sd.make_sample_set
    monkeypatch.setattr(sd, "make_sample_set", lambda root, **kw: calls.append(kw) or real(root, **{**kw, "max_side": 48}))
    root = sd.ensure_sample_set(n_images=2)
    assert root == sd.default_root() and "SAMPLE" in capsys.readouterr().err
    assert len(list(root.rglob("*.dng"))) == 2
    assert (root / ".complete").read_text().split() == ["version", str(sd.SAMPLE_SET_VERSION)]
    sd.ensure_sample_set(n_images=2)
    assert len(calls) == 1
    # a version-1 cache (marker "ok", other file names) is replaced, not mixed with the new files
    (root / ".complete").write_text("ok\n")
    stale = root / "raw_photos" / "HQa1to700" / "photos" / "a0001-astronaut.dng"
    stale.write_bytes(b"old")
    sd.ensure_sample_set(n_images=3)
    assert len(calls) == 2 and "version 1" in capsys.readouterr().err
    assert not stale.exists() and len(list(root.rglob("*.dng"))) == 3
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no build folder left


def test_make_sample_data_cli(tmp_path, capsys):
    script = REPO / "experiments" / "make_sample_data.py"
    r = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "s"), "--n-images", "2", "--max-side", "48", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "wrote 2 sample DNGs" in r.stdout
    assert len(list((tmp_path / "s" / "tiff16_c").glob("*.tif"))) == 2
    assert (tmp_path / "s" / "conditions.csv").is_file()
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
