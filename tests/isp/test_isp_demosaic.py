"""Demosaicing methods (bilinear, MHC, Menon) and the highlight clip: references, known values,
mixed CFA phases, gradients, the fused white-balance node, quality against a known truth."""
from __future__ import annotations

import colour
import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

import isp
import isp.reference
from isp import stages as S
from isp.stages.fused import white_balance_demosaic
from isp.reference import reference_demosaic_menon, reference_demosaic_mhc
from isp.stages.menon import MENON_PAD, MENON_RADIUS, menon_planes
from isp.stages.mhc import MHC_RADIUS, mhc_planes

D = torch.float64
PATTERNS = ["RGGB", "BGGR", "GRBG", "GBRG"]
_CH = {"R": 0, "G": 1, "B": 2}


def _rand(*shape, lo=0.0, hi=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=D)


def _cfa(patterns):
    return torch.tensor([[_CH[c] for c in p] for p in patterns])


@pytest.mark.parametrize("pattern", PATTERNS)
def test_phase_plane_paths_equal_the_full_resolution_references(pattern):
    """The phase-plane bookkeeping (the pipeline's path) equals the plain full-resolution
    formulas (masks, shifts, where / conv2d), refined or not, in every CFA phase."""
    m = _rand(2, 1, 20, 26, seed=1)
    pats = [pattern] * 2
    torch.testing.assert_close(mhc_planes(m, pattern), reference_demosaic_mhc(m, pats), atol=1e-13, rtol=0)
    for refine in (True, False):
        torch.testing.assert_close(menon_planes(m, pattern, refine), reference_demosaic_menon(m, pats, refine), atol=1e-13, rtol=0)
    assert MENON_PAD == isp.reference.MENON_PAD


@pytest.mark.parametrize("method", ["mhc", "menon"])
def test_known_values_constant_ramp_and_kept_samples(method):
    """A grey linear ramp is reproduced exactly away from the borders (bilinear's error on a ramp
    is zero too, but MHC/Menon must also keep it with their Laplacian corrections); a constant
    stays constant everywhere; measured samples are kept."""
    yy, xx = torch.meshgrid(torch.arange(32, dtype=D), torch.arange(36, dtype=D), indexing="ij")
    ramp = (0.1 + 0.01 * yy + 0.02 * xx).reshape(1, 1, 32, 36)
    r = S.DEMOSAIC_METHODS[method].radius  # the reflected border reaches this far in
    for pattern in PATTERNS:
        out = S.demosaic(ramp, pattern, method)
        torch.testing.assert_close(out[..., r:-r, r:-r], ramp.expand(1, 3, 32, 36)[..., r:-r, r:-r], atol=1e-12, rtol=0)
        const = torch.full((1, 1, 16, 18), 0.37, dtype=D)
        torch.testing.assert_close(S.demosaic(const, pattern, method), torch.full((1, 3, 16, 18), 0.37, dtype=D))
        rgb = _rand(1, 3, 16, 18, seed=2)
        masks = S.bayer_masks(pattern, 16, 18, dtype=D)
        mosaic = (rgb * masks).sum(1, keepdim=True)
        out = S.demosaic(mosaic, pattern, method)
        torch.testing.assert_close(out * masks, rgb * masks)


def test_directional_decision_follows_stripes():
    """Grey vertical stripes two pixels wide: interpolating across them (bilinear, MHC) leaves
    zipper errors, interpolating along them is exact, which the directional decision does."""
    col = torch.tensor([0.2, 0.2, 0.8, 0.8], dtype=D).repeat(8)[:30]
    grey = col.expand(1, 1, 28, 30).clone()
    err = {m: float((S.demosaic(grey, "GRBG", m) - grey)[..., 8:-8, 8:-8].abs().mean()) for m in ("bilinear", "mhc", "menon")}
    assert err["menon"] < 1e-9 and err["bilinear"] > 0.05 and err["mhc"] > 0.01, err


@pytest.mark.parametrize("method", ["mhc", "menon"])
def test_mixed_phases_in_a_batch_module_parity_and_errors(method):
    m = _rand(4, 1, 18, 20, seed=3)
    pats = ["GBRG", "RGGB", "GBRG", "BGGR"]
    both = S.demosaic(m, pats, method)
    single = torch.cat([S.demosaic(m[i : i + 1], p, method) for i, p in enumerate(pats)])
    torch.testing.assert_close(both, single, atol=0, rtol=0)
    torch.testing.assert_close(S.Demosaic(method)(m, pats), both, atol=0, rtol=0)
    with pytest.raises(ValueError, match="unknown demosaic"):
        S.demosaic(m, "RGGB", "ahd")
    with pytest.raises(ValueError, match="even"):
        S.demosaic(torch.zeros(1, 1, 17, 20), "RGGB", method)
    with pytest.raises(ValueError, match="CFA pattern"):
        S.demosaic(m[:1], "RGBG", method)


@pytest.mark.parametrize("method", ["mhc", "menon"])
def test_gradcheck_with_respect_to_the_mosaic(method):
    m = _rand(2, 1, 16, 18, seed=4).requires_grad_(True)
    assert gradcheck(lambda t: S.demosaic(t, ["RGGB", "GRBG"], method), (m,))


@pytest.mark.parametrize("method,radius", [("mhc", MHC_RADIUS), ("menon", MENON_RADIUS)])
def test_declared_radius_is_the_reach(method, radius):
    """Perturbing one sample changes outputs at most ``radius`` pixels away (decisions included),
    and for some perturbation exactly that far: the pipeline's tile halo relies on it."""
    assert S.DEMOSAIC_METHODS[method].radius == radius
    reach = 0
    for seed in range(6):
        m = _rand(1, 1, 48, 48, seed=seed)
        base = S.demosaic(m, "GRBG", method)
        for y, x in ((24, 24), (23, 25), (24, 23)):
            m2 = m.clone()
            m2[0, 0, y, x] += 0.6 if seed % 2 else -0.4
            ys, xs = torch.nonzero((S.demosaic(m2, "GRBG", method) - base).abs().amax(1)[0] > 1e-12, as_tuple=True)
            reach = max(reach, int((ys - y).abs().max()), int((xs - x).abs().max()))
    assert reach == radius


# --- white balance + highlight clip + demosaic --------------------------------------------


@pytest.mark.parametrize("method", ["bilinear", "mhc", "menon"])
@pytest.mark.parametrize("highlight", ["neutral", "channel"])
def test_fused_white_balance_demosaic_equals_the_stages(method, highlight):
    """The gains-only node (tangent images from the forward pass) equals white balance ->
    demosaic through autograd, output and gains gradient, for mixed CFA phases, clipped samples
    and gains below 1 (the clip level follows the smallest gain); float64 gradcheck."""
    mosaic = _rand(3, 1, 20, 22, lo=0.02, hi=0.98, seed=5)
    pats = ["RGGB", "GBRG", "BGGR"]
    cfa = _cfa(pats)
    gains = torch.tensor([[2.0, 1.05, 1.5], [1.2, 0.9, 2.4], [1.7, 1.1, 0.8]], dtype=D, requires_grad=True)
    ref = S.demosaic(S.white_balance(mosaic, gains, cfa, highlight), pats, method)
    ours = white_balance_demosaic(mosaic, gains, cfa, pats, method, highlight)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    w = _rand(*ref.shape, seed=6)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), gains)
    (g_ours,) = torch.autograd.grad((ours * w).sum(), gains)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-9, rtol=1e-9)
    assert gradcheck(lambda g: white_balance_demosaic(mosaic, g, cfa, pats, method, highlight), (gains,))


def test_clip_level_and_highlight_modes():
    g = torch.tensor([[2.0, 1.0, 1.6], [1.8, 0.7, 1.3], [1.5, 1.2, 0.9]])
    torch.testing.assert_close(S.clip_level(g, "neutral"), torch.tensor([1.0, 0.7, 0.9]))
    torch.testing.assert_close(S.clip_level(g, "channel"), torch.ones(3))
    ones = torch.ones(3, 1, 2, 2)
    wb = S.white_balance(ones, g, _cfa(["RGGB"] * 3), "neutral")
    assert torch.equal(wb.amax(dim=(1, 2, 3)), wb.amin(dim=(1, 2, 3)))  # saturated -> all equal
    with pytest.raises(ValueError, match="highlight"):
        S.white_balance(ones, g, _cfa(["RGGB"] * 3), "blend")
    with pytest.raises(ValueError, match="highlight"):
        isp.ISP(highlight="magenta")


def _overexposed_batch():
    """A 48 x 48 RGGB mosaic of a grey scene (camera WB 2, 1, 1.3) with a blown-out patch where
    every sample is at the white level."""
    from isp.color import camera_to_srgb_matrix
    from isp.sample_data import CAMERAS
    from isp.stages.white_balance import cfa_rows

    cfa = torch.tensor([[0, 1, 1, 2]])
    grey = cfa_rows(torch.tensor([[0.3 / 2.0, 0.3, 0.3 / 1.3]]), cfa, 48)  # (1, 1, 2, 48)
    lin = grey.expand(1, 24, 2, 48).reshape(1, 1, 48, 48).clone()
    lin[..., 12:36, 12:36] = 1.0
    cam_to_xyz = np.linalg.inv(np.asarray(CAMERAS[0].xyz_to_cam, dtype=np.float64).reshape(3, 3) / 10000)
    mat = torch.from_numpy(camera_to_srgb_matrix(cam_to_xyz)).float().unsqueeze(0)
    return isp.RawBatch(lin, torch.tensor([[2.0, 1.0, 1.3]]), cfa, mat, ["RGGB"], [0])


def _lab(srgb: torch.Tensor) -> np.ndarray:
    x = srgb[0].permute(1, 2, 0).double().numpy()
    return colour.XYZ_to_Lab(colour.RGB_to_XYZ(x, colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=True))


@pytest.mark.parametrize("edit", [{"wb_temperature": 1.0}, {"wb_tint": 1.0}, {"wb_temperature": 0.6, "wb_tint": 0.8, "exposure": -1.0}])
def test_clipped_white_patch_renders_neutral(edit):
    """A patch at the white level renders grey (|a*|, |b*| < 2) whatever the white balance does to
    the gains; clipping each channel at 1 instead (``channel``, LibRaw's clip) turns it yellow or
    magenta when a gain drops below 1, so the check can fail."""
    batch = _overexposed_batch()
    p = isp.params_from_dict(edit).unsqueeze(0)
    casts = {}
    for mode in ("neutral", "channel"):
        for method in ("menon", "bilinear"):
            with torch.inference_mode():
                out = isp.ISP(demosaic=method, highlight=mode)(batch, p)
            lab = _lab(out)[16:32, 16:32]
            casts[mode, method] = float(np.abs(lab[..., 1:]).max())
    assert casts["neutral", "menon"] < 2.0 and casts["neutral", "bilinear"] < 2.0, casts
    assert casts["channel", "menon"] > 4.0, casts


def test_highlight_gradients_stay_finite_and_nonzero():
    """Over-exposed input: every parameter still gets a finite gradient, and the white-balance
    and exposure controls a non-zero one (through the clip level where a gain is below 1)."""
    batch = _overexposed_batch()
    p = isp.params_from_dict({"wb_temperature": 0.9, "wb_tint": 0.7, "exposure": -0.5, "contrast": 0.2}).unsqueeze(0)
    p = p.clone().requires_grad_(True)
    out = isp.ISP(highlight="neutral")(batch, p)
    (out[..., 12:36, 12:36].mean() + 0.1 * out.mean()).backward()
    assert torch.isfinite(p.grad).all()
    for name in ("wb_temperature", "wb_tint", "exposure"):
        assert p.grad[0, isp.PARAM_INDEX[name]] != 0, name


# --- quality against a known truth (the benchmark's construction) --------------------------


def test_default_demosaic_against_the_truth_and_libraw(tmp_path):
    """On DNGs whose truth is known (a packaged photo through a linear camera model, clean and
    noisy), the default method is far above bilinear (which equals LibRaw LINEAR) and MHC, has
    a lower mean CIEDE2000 than LibRaw's AHD and a PSNR within 0.3 dB of it (the benchmark's
    mean over seven scenes, four phases, two noise levels is above AHD's: docs/isp.md)."""
    from experiments.bench_demosaic import metrics, render_all, truth_dng
    from isp.sample_data import load_source

    img, _ = load_source(0)  # astronaut (a training scene)
    img = img[128:384, 128:384]
    res = {}
    for cfa, noise in (("GBRG", False), ("RGGB", True)):
        path, truth = truth_dng(tmp_path, "astronaut", img, cfa, noise=noise)
        for col, out in render_all(path, ["bilinear", "mhc", isp.stages.DEFAULT_DEMOSAIC]).items():
            res.setdefault(col, []).append(metrics(out, truth))
    psnr = {k: float(np.mean([v[0] for v in vs])) for k, vs in res.items()}
    de = {k: float(np.mean([v[1] for v in vs])) for k, vs in res.items()}
    ours = f"ours {isp.stages.DEFAULT_DEMOSAIC}"
    assert abs(psnr["ours bilinear"] - psnr["LibRaw LINEAR"]) < 0.05, psnr
    assert psnr[ours] > psnr["ours mhc"] + 1.0 and psnr[ours] > psnr["ours bilinear"] + 3.0, psnr
    assert psnr[ours] > psnr["LibRaw AHD"] - 0.3, psnr
    assert de[ours] < de["LibRaw AHD"], de


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_menon_adjoint_is_the_transpose(pattern):
    """<D x, g> = <x, D^T g> for the frozen-decision Menon map on the padded phase planes (the
    white-balance gradient of the default demosaic runs through menon_adjoint)."""
    from isp.stages._phase import Planes
    from isp.stages.menon import MENON_PAD, menon_adjoint, menon_fields

    gen = torch.Generator().manual_seed(3)
    mosaic = torch.rand(2, 1, 20, 26, generator=gen, dtype=torch.float64)
    _, _, masks = menon_fields(Planes(mosaic, MENON_PAD), pattern)
    x = torch.rand(2, 1, 20, 26, generator=gen, dtype=torch.float64)
    px = Planes(x, MENON_PAD)
    rgb, _, _ = menon_fields(px, pattern, masks)
    y = px.interleave(rgb, px.margin)
    g = torch.rand(y.shape, generator=gen, dtype=torch.float64)
    adj = menon_adjoint(g, pattern, masks)
    rhs = sum((px.field[q][0] * a).sum() for q, a in adj.items())
    assert abs((y * g).sum().item() - rhs.item()) < 1e-10 * abs(rhs.item())
