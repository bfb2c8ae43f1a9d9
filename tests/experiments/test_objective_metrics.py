"""envs.judges: CIEDE2000 against published data, colour conversion, alignment."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.metrics

from envs import judges as metrics

# Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Table 1: (L1, a1, b1, L2, a2, b2, dE00).
SHARMA_2005 = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


def test_ciede2000_sharma_table():
    data = np.array(SHARMA_2005)
    assert data.shape == (34, 7)
    got = metrics.delta_e2000(data[:, 0:3], data[:, 3:6])
    np.testing.assert_allclose(got, data[:, 6], atol=5e-5)
    np.testing.assert_allclose(metrics.delta_e2000(data[:, 3:6], data[:, 0:3]), data[:, 6], atol=5e-5)


def test_mean_delta_e_image_pipeline():
    # Lab of sRGB primaries/white via the pipeline, checked against the published sRGB Lab values.
    rgb = np.array([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]]])
    lab = metrics.srgb_to_lab(rgb)[0]
    np.testing.assert_allclose(lab[3], [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab[0], [53.24, 80.09, 67.20], atol=0.05)
    np.testing.assert_allclose(lab[2], [32.30, 79.19, -107.86], atol=0.05)
    rng = np.random.default_rng(0)
    a, b = rng.random((8, 9, 3)), rng.random((8, 9, 3))
    ref = np.mean([metrics.delta_e2000(metrics.srgb_to_lab(a[i, j]), metrics.srgb_to_lab(b[i, j]))
                   for i in range(8) for j in range(9)])
    assert metrics.mean_delta_e2000(a, b) == pytest.approx(ref, rel=1e-12)
    assert metrics.mean_delta_e2000(a, a) == 0.0


def test_psnr_ssim_match_skimage():
    rng = np.random.default_rng(1)
    ref = rng.random((40, 48, 3))
    img = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1)
    assert metrics.psnr(img, ref) == pytest.approx(skimage.metrics.peak_signal_noise_ratio(ref, img, data_range=1))
    mse = np.mean((img - ref) ** 2)
    assert metrics.psnr(img, ref) == pytest.approx(10 * np.log10(1 / mse))
    s = metrics.ssim(img, ref)
    assert 0 < s < 1 and metrics.ssim(ref, ref) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in size"):
        metrics.psnr(img[:10], ref)


def test_prophoto_to_srgb_against_colour_chain():
    import colour

    rng = np.random.default_rng(2)
    pro = rng.random((5, 3)) * 0.8 + 0.1
    # Independent chain: decode ProPhoto, to XYZ (D50), Bradford D50->D65, to sRGB, encode.
    pp = colour.RGB_COLOURSPACES["ProPhoto RGB"]
    linear = pp.cctf_decoding(pro)
    xyz50 = np.einsum("ij,nj->ni", pp.matrix_RGB_to_XYZ, linear)
    cat = colour.adaptation.matrix_chromatic_adaptation_VonKries(
        colour.xy_to_XYZ(pp.whitepoint),
        colour.xy_to_XYZ(colour.RGB_COLOURSPACES["sRGB"].whitepoint),
        transform="Bradford",
    )
    xyz65 = np.einsum("ij,nj->ni", cat, xyz50)
    want = np.clip(colour.XYZ_to_sRGB(xyz65, apply_cctf_encoding=True, chromatic_adaptation_transform=None), 0, 1)
    np.testing.assert_allclose(metrics.prophoto_to_srgb(pro), want, atol=1e-6)
    # ProPhoto white stays white in sRGB (D50 -> D65 adaptation).
    np.testing.assert_allclose(metrics.prophoto_to_srgb(np.ones(3)), np.ones(3), atol=1e-3)


def test_read_tiff_and_errors(tmp_path):
    import tifffile

    img = (np.random.default_rng(3).random((6, 8, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", img, photometric="rgb")
    np.testing.assert_allclose(metrics.read_prophoto_tiff(tmp_path / "a.tif"), img / 65535.0)
    with pytest.raises(FileNotFoundError):
        metrics.read_prophoto_tiff(tmp_path / "missing.tif")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ValueError, match="expert TIFF"):
        metrics.read_prophoto_tiff(tmp_path / "bad.tif")


@pytest.mark.parametrize("k", [1, 3])
def test_align_rotates_and_resizes(k):
    yy, xx = np.mgrid[0:60, 0:90] / 90.0
    land = np.stack([xx, yy, xx * yy], -1)  # a landscape image without rotational symmetry
    ours = np.rot90(land, k)[::3, ::3]  # portrait, a third the size
    aligned = metrics.align_to(land, ours)
    assert aligned.shape == ours.shape
    assert np.abs(aligned - ours).mean() < 0.02
    wrong = metrics.align_to(land, np.rot90(land, 4 - k)[::3, ::3])
    assert np.abs(wrong - ours).mean() > 0.1
