"""Per-stage tests: shapes and batches, known values, independent references (colour-science,
scipy), function/module parity and float64 gradcheck on tiny inputs."""
from __future__ import annotations

import colour
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from torch.autograd import gradcheck

from isp import stages as S
from isp.color import XYZ_TO_SRGB, camera_to_srgb_matrix

D = torch.float64


def _rand(*shape, lo=0.0, hi=1.0, seed=0, dtype=D):
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)).to(dtype)


# --- colour -----------------------------------------------------------------------------------

def test_srgb_transfer_matches_colour_science():
    x = np.linspace(0.0, 1.0, 1001)
    ours = S.srgb_encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, colour.cctf_encoding(x, function="sRGB"), atol=1e-12)
    np.testing.assert_allclose(S.srgb_decode(torch.from_numpy(x)).numpy(), colour.cctf_decoding(x, function="sRGB"), atol=1e-12)


def test_camera_matrix_is_white_preserving_and_matches_srgb_primaries():
    # A camera whose sensor *is* sRGB (cam_to_xyz = sRGB -> XYZ) needs the identity matrix.
    srgb = colour.RGB_COLOURSPACES["sRGB"]
    np.testing.assert_allclose(camera_to_srgb_matrix(srgb.matrix_RGB_to_XYZ), np.eye(3), atol=1e-10)
    np.testing.assert_allclose(XYZ_TO_SRGB, srgb.matrix_XYZ_to_RGB, atol=1e-12)
    # Any camera: white-balanced camera white (1, 1, 1) goes to sRGB white.
    xyz_to_cam = np.array([4716, 603, -830, -7798, 15474, 2480, -1496, 1937, 6651]).reshape(3, 3) / 1e4
    m = camera_to_srgb_matrix(np.linalg.inv(xyz_to_cam))
    np.testing.assert_allclose(m @ np.ones(3), np.ones(3), atol=1e-10)


@pytest.mark.parametrize("b", [1, 3])
def test_color_matrix_per_image(b):
    x = _rand(b, 3, 5, 7)
    mats = _rand(b, 3, 3, seed=1)
    out = S.apply_color_matrix(x, mats)
    ref = torch.einsum("bij,bjhw->bihw", mats, x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(S.ColorMatrix()(x, mats), out)
    assert gradcheck(S.apply_color_matrix, (x[:, :, :2, :3].clone().requires_grad_(), mats.clone().requires_grad_()))


def test_srgb_encode_gradcheck():
    x = _rand(1, 3, 3, 3, lo=0.01, hi=0.99).requires_grad_()
    assert gradcheck(S.srgb_encode, (x,))
    assert gradcheck(S.srgb_decode, (x,))


# --- white balance ----------------------------------------------------------------------------

def test_white_balance_known_values_and_gradcheck():
    mosaic = torch.full((2, 1, 4, 4), 0.25, dtype=D)
    as_shot = torch.tensor([[2.0, 1.0, 1.5], [1.0, 1.0, 1.0]], dtype=D)
    idx = torch.tensor([[0, 1, 1, 2], [2, 1, 1, 0]])  # RGGB, BGGR
    out = S.WhiteBalance()(mosaic, as_shot, idx, torch.tensor([0.0, 1.0], dtype=D), 0.0)
    assert out.shape == mosaic.shape
    torch.testing.assert_close(out[0, 0, :2, :2], torch.tensor([[0.5, 0.25], [0.25, 0.375]], dtype=D))
    # image 1: temperature +1 -> red x 2**0.5, blue x 2**-0.5 (BGGR: blue at (0, 0))
    torch.testing.assert_close(out[1, 0, :2, :2], torch.tensor([[0.25 * 2 ** -0.5, 0.25], [0.25, 0.25 * 2 ** 0.5]], dtype=D))
    g = S.wb_gains(as_shot, 0.0, 1.0)
    torch.testing.assert_close(g[:, 1], torch.full((2,), 2 ** -0.5, dtype=D))
    t = torch.tensor([0.3, -0.2], dtype=D, requires_grad=True)
    n = torch.tensor([0.1, 0.4], dtype=D, requires_grad=True)
    m = _rand(2, 1, 4, 4, lo=0.05, hi=0.3)
    assert gradcheck(lambda t, n: S.white_balance(m, S.wb_gains(as_shot, t, n), idx), (t, n))


# --- demosaic ---------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_demosaic_keeps_samples_and_matches_scipy(pattern):
    rgb = _rand(1, 3, 8, 10, seed=3)
    masks = S.bayer_masks(pattern, 8, 10, dtype=D)
    assert masks.sum(1).eq(1).all() and masks[0, 1].sum() == 40
    mosaic = (rgb * masks).sum(1, keepdim=True)
    out = S.demosaic_bilinear(mosaic, pattern)
    assert out.shape == (1, 3, 8, 10)
    torch.testing.assert_close(out * masks, rgb * masks)  # measured samples are kept
    # independent reference: normalised convolution with scipy (mirror = torch's reflect)
    k_rb = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4.0
    k_g = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4.0
    for c, k in enumerate((k_rb, k_g, k_rb)):
        ref = ndi.convolve((mosaic[0, 0] * masks[0, c]).numpy(), k, mode="mirror")
        np.testing.assert_allclose(out[0, c].numpy(), ref, atol=1e-12)


def test_demosaic_constant_and_batch_of_patterns():
    mosaic = torch.full((2, 1, 6, 6), 0.4, dtype=D)
    out = S.Demosaic()(mosaic, ["RGGB", "GBRG"])
    torch.testing.assert_close(out, torch.full((2, 3, 6, 6), 0.4, dtype=D))
    single = torch.cat([S.demosaic_bilinear(_rand(1, 1, 6, 6, seed=s), p) for s, p in ((5, "RGGB"), (6, "GBRG"))])
    both = S.demosaic_bilinear(torch.cat([_rand(1, 1, 6, 6, seed=5), _rand(1, 1, 6, 6, seed=6)]), ["RGGB", "GBRG"])
    torch.testing.assert_close(both, single)
    with pytest.raises(ValueError, match="even"):
        S.demosaic_bilinear(torch.zeros(1, 1, 5, 6), "RGGB")
    assert gradcheck(lambda m: S.demosaic_bilinear(m, "GRBG"), (_rand(1, 1, 4, 4).requires_grad_(),))


# --- tone -------------------------------------------------------------------------------------

def test_exposure_known_values_and_gradcheck():
    x = _rand(2, 3, 4, 4, lo=0.0, hi=0.4)
    torch.testing.assert_close(S.adjust_exposure(x, 1.0), (2 * x).clamp(0, 1))
    torch.testing.assert_close(S.Exposure()(x, torch.tensor([0.0, -1.0], dtype=D)), torch.stack([x[0], x[1] / 2]))
    assert S.adjust_exposure(torch.ones(1, 3, 2, 2), 2.0).max() == 1.0
    ev = torch.tensor([0.3, -0.5], dtype=D, requires_grad=True)
    assert gradcheck(S.adjust_exposure, (x[:, :, :2, :2].clone().requires_grad_(), ev))


@pytest.mark.parametrize("fn, mod, nargs", [
    (S.adjust_brightness, S.Brightness(), 1),
    (S.adjust_contrast, S.Contrast(), 1),
    (S.adjust_highlights_shadows, S.HighlightsShadows(), 2),
])
def test_tone_curves_identity_monotonic_endpoints_gradcheck(fn, mod, nargs):
    x = torch.linspace(0, 1, 201, dtype=D).reshape(1, 1, 1, -1)
    torch.testing.assert_close(fn(x, *([0.0] * nargs)), x)
    for a in (-1.0, -0.5, 0.5, 1.0):
        for args in ([a] * nargs, [a, -a][:nargs]):
            y = fn(x, *args)
            assert (y.diff(dim=-1) >= -1e-12).all(), "curve must stay monotonic"
            assert y[..., 0].item() == pytest.approx(0.0) and y[..., -1].item() == pytest.approx(1.0)
            torch.testing.assert_close(mod(x, *args), y)
    if fn is S.adjust_contrast:  # mid-grey is the pivot
        assert fn(torch.tensor(0.5, dtype=D).reshape(1, 1, 1, 1), 1.0).item() == pytest.approx(0.5)
    xs = _rand(2, 3, 3, 3, lo=0.05, hi=0.95)
    ps = [torch.tensor([0.4, -0.7], dtype=D, requires_grad=True) for _ in range(nargs)]
    assert gradcheck(fn, (xs.clone().requires_grad_(), *ps))


# --- saturation -------------------------------------------------------------------------------

def test_saturation_greyscale_is_luminance_of_colour_science():
    x = _rand(2, 3, 4, 5, lo=0.05, hi=0.95)
    grey = S.saturate(x, -1.0, 0.0)
    xyz = colour.RGB_to_XYZ(x.permute(0, 2, 3, 1).numpy(), colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=False)
    for c in range(3):
        np.testing.assert_allclose(grey[:, c].numpy(), xyz[..., 1], atol=1e-6)
    torch.testing.assert_close(S.saturate(x, 0.0, 0.0), x)
    torch.testing.assert_close(S.luminance(x)[:, 0], torch.from_numpy(xyz[..., 1]), atol=1e-6, rtol=0)
    # more saturation -> larger chroma; vibrance boosts a muted colour more than a vivid one
    chroma = lambda y: (y - S.luminance(y)).abs().sum()  # noqa: E731
    assert chroma(S.saturate(x, 0.5, 0.0)) > chroma(x)
    muted = torch.tensor([0.45, 0.5, 0.55], dtype=D).reshape(1, 3, 1, 1)
    vivid = torch.tensor([0.1, 0.5, 0.9], dtype=D).reshape(1, 3, 1, 1)
    gain = lambda y: (chroma(S.saturate(y, 0.0, 0.5)) / chroma(y)).item()  # noqa: E731
    assert gain(muted) > gain(vivid) > 1.0
    torch.testing.assert_close(S.Saturation()(x, 0.3, 0.2), S.saturate(x, 0.3, 0.2))


def test_saturation_gradcheck():
    x = _rand(2, 3, 3, 3, lo=0.3, hi=0.6)
    s = torch.tensor([0.2, -0.3], dtype=D, requires_grad=True)
    v = torch.tensor([-0.1, 0.25], dtype=D, requires_grad=True)
    assert gradcheck(S.saturate, (x.clone().requires_grad_(), s, v))


def test_demosaic_phase_planes_equal_the_sparse_plane_filters():
    """Without autograd the demosaic runs on the four phase planes; with it, on sparse colour
    planes with a hand-written adjoint. Both give the same image for every CFA phase and for a
    batch that mixes them."""
    pats = ["RGGB", "BGGR", "GRBG", "GBRG", "RGGB"]
    m = _rand(5, 1, 10, 14, seed=16)
    with torch.no_grad():
        fast = S.demosaic_bilinear(m, pats)
    ref = S.demosaic_bilinear(m.clone().requires_grad_(True), pats).detach()
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=0)
    for i, p in enumerate(pats):
        with torch.no_grad():
            torch.testing.assert_close(S.demosaic_bilinear(m[i : i + 1], p), ref[i : i + 1], atol=1e-12, rtol=0)


# --- detail -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_gaussian_blur_matches_scipy(sigma):
    x = _rand(1, 2, 20, 24, seed=7)
    out = S.gaussian_blur(x, sigma)
    for c in range(2):
        ref = ndi.gaussian_filter(x[0, c].numpy(), sigma, mode="mirror", truncate=3.0)
        np.testing.assert_allclose(out[0, c].numpy(), ref, atol=1e-10)


@pytest.mark.parametrize("steps", [2, 4, 6, 8])
def test_binomial_blur_matches_scipy_and_its_adjoint(steps):
    from scipy.special import comb

    x = _rand(1, 2, 20, 24, seed=11)
    out = S.binomial_blur(x, steps)
    k = comb(steps, np.arange(steps + 1)) / 2.0**steps  # a row of Pascal's triangle
    assert np.isclose((k * (np.arange(steps + 1) - steps / 2) ** 2).sum(), steps / 4)  # variance
    for c in range(2):
        ref = ndi.convolve1d(ndi.convolve1d(x[0, c].numpy(), k, axis=1, mode="mirror"), k, axis=0, mode="mirror")
        np.testing.assert_allclose(out[0, c].numpy(), ref, atol=1e-12)
    assert gradcheck(lambda t: S.binomial_blur(t, steps), (_rand(1, 1, 9, 11, seed=12).requires_grad_(),))


def test_lowpass_picks_the_binomial_kernel_of_the_same_sigma():
    x = _rand(1, 1, 16, 16, seed=13)
    torch.testing.assert_close(S.lowpass(x, 1.0), S.binomial_blur(x, 4))
    torch.testing.assert_close(S.lowpass(x, 2.0**0.5), S.binomial_blur(x, 8))
    torch.testing.assert_close(S.lowpass(x, 0.8), S.gaussian_blur(x, 0.8))  # no binomial of that sigma
    with pytest.raises(ValueError, match="steps"):
        S.binomial_blur(x, 3)


def test_denoise_and_sharpen_known_behaviour_and_gradcheck():
    flat = torch.full((1, 3, 12, 12), 0.3, dtype=D)
    torch.testing.assert_close(S.denoise(flat, 1.0, 1.0), flat)
    torch.testing.assert_close(S.sharpen(flat, 2.0), flat)
    noisy = _rand(2, 3, 16, 16, lo=0.3, hi=0.7, seed=8)
    torch.testing.assert_close(S.denoise(noisy, 0.0, 0.0), noisy)
    torch.testing.assert_close(S.sharpen(noisy, 0.0), noisy)
    assert S.denoise(noisy, 1.0, 1.0).std() < noisy.std()  # smoothing lowers the variance
    assert S.sharpen(noisy, 0.5).std() > noisy.std()
    # luma-only denoise keeps the chroma x - Y, chroma-only keeps the luminance
    y0 = S.luminance(noisy)
    torch.testing.assert_close(S.luminance(S.denoise(noisy, 0.0, 1.0)), y0)
    d = S.denoise(noisy, 1.0, 0.0)
    torch.testing.assert_close(d - S.luminance(d), noisy - y0)
    torch.testing.assert_close(S.Denoise()(noisy, 0.4, 0.6), S.denoise(noisy, 0.4, 0.6))
    torch.testing.assert_close(S.Sharpen()(noisy, 0.7), S.sharpen(noisy, 0.7))
    x = _rand(2, 3, 8, 8, lo=0.4, hi=0.6, seed=9).requires_grad_()
    a = torch.tensor([0.3, 0.8], dtype=D, requires_grad=True)
    c = torch.tensor([0.6, 0.1], dtype=D, requires_grad=True)
    assert gradcheck(S.denoise, (x, a, c))
    assert gradcheck(S.sharpen, (x, torch.tensor([0.2, 0.1], dtype=D, requires_grad=True)))


def test_per_image_parameter_shape_is_checked():
    with pytest.raises(ValueError, match="per-image"):
        S.adjust_brightness(torch.rand(2, 3, 4, 4), torch.zeros(3))


def test_clamp01_gradient_matches_torch_clamp():
    from isp.stages._util import clamp01

    x = torch.tensor([-0.5, 0.0, 0.3, 1.0, 1.5], dtype=D, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    clamp01(x).backward(torch.arange(1.0, 6.0, dtype=D))
    y.clamp(0.0, 1.0).backward(torch.arange(1.0, 6.0, dtype=D))
    torch.testing.assert_close(x.grad, y.grad)
    assert gradcheck(clamp01, (_rand(2, 3, lo=0.1, hi=0.9).requires_grad_(),))


@pytest.mark.parametrize("shape", [(1, 2, 6, 10), (2, 1, 2, 4), (1, 3, 9, 1)])
def test_half_pool_and_upsample2_equal_torch_kernels(shape):
    import torch.nn.functional as F

    from isp.stages.detail import half_pool, upsample2

    x = _rand(*shape, seed=14)
    torch.testing.assert_close(upsample2(x), F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    big = _rand(shape[0], shape[1], 2 * shape[2], 2 * shape[3], seed=15)
    torch.testing.assert_close(half_pool(big), F.avg_pool2d(big, 2))


def test_half_resolution_chroma_lowpass():
    from isp.stages.detail import smooth_half_res

    flat = torch.full((1, 2, 32, 32), 0.2, dtype=D)
    torch.testing.assert_close(smooth_half_res(flat, 2.0), flat)
    impulse = torch.zeros(1, 1, 64, 64, dtype=D)
    impulse[0, 0, 32, 32] = 1.0
    resp = smooth_half_res(impulse, 2.0)[0, 0]
    assert resp.sum().item() == pytest.approx(1.0, abs=1e-6)  # mass preserved away from borders
    r = torch.arange(64, dtype=D)
    cy = (resp.sum(1) * r).sum()
    var = (resp.sum(1) * (r - cy) ** 2).sum()
    assert 2.0 < var.sqrt().item() < 2.6  # about 1.1 x sigma
    assert gradcheck(lambda t: smooth_half_res(t, 2.0), (_rand(1, 1, 8, 8).requires_grad_(),))


def test_luminance_and_chroma_adjoints():
    from isp.stages.adjust import rb_chroma

    x = _rand(2, 3, 4, 5, lo=0.1, hi=0.9).requires_grad_()
    assert gradcheck(S.luminance, (x,))
    assert gradcheck(rb_chroma, (x,))
    torch.testing.assert_close(rb_chroma(x.detach()), x.detach()[:, 0::2] - S.luminance(x.detach()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_write_pairs_interleaves_like_stack(dtype):
    """The complex-view fast path (float32/64) and the plain fallback (float16, or an odd
    offset) both interleave like torch.stack along a new last axis, into views as used."""
    from isp.stages._util import write_pairs

    a, b = _rand(2, 3, 5, 7, seed=1, dtype=dtype), _rand(2, 3, 5, 7, seed=2, dtype=dtype)
    ref = torch.stack([a, b], dim=-1)
    out = torch.full((2, 3, 5, 7, 2), float("nan"), dtype=dtype)
    assert write_pairs(out, a, b) is out
    assert torch.equal(out, ref)
    big = torch.full((2, 3, 5, 2, 7, 2), float("nan"), dtype=dtype)  # odd rows of a 2x2-phase layout
    write_pairs(big[:, :, :, 1], a, b)
    assert torch.equal(big[:, :, :, 1], ref) and big[:, :, :, 0].isnan().all()
    flat = torch.zeros(1 + 2 * 3 * 5 * 7 * 2, dtype=dtype)[1:].view(2, 3, 5, 7, 2)  # odd storage offset
    assert torch.equal(write_pairs(flat, a, b), ref)
