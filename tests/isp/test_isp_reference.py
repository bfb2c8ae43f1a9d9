"""The fast pipeline (isp.ISP) against the Kornia reference (isp.reference), whole pipeline.

Everything runs in float64 on a synthetic batch of four images, one per CFA phase, with
saturated sensor samples (so the white-balance clip is exercised) and the camera matrices of the
sample set's camera models. Stated tolerances, for values in ``[0, 1]`` and about 100 floating
operations per pixel:

* image: absolute 1e-12 (measured ~2e-15);
* gradient of each of the 12 parameters: relative 1e-10 of that parameter's gradient (measured
  up to ~5e-13; the gradients are sums over ~10^4 pixels, ~1e3 in size).

Both are three orders of magnitude above float64 round-off and far below any real difference:
the smallest known one, the sRGB branch choice just below 0.0031308, is 2.9e-8
(``test_srgb_branch_difference_is_bounded``); a shift of 1e-6 in any one parameter moves the
image by more than 1e-9 (``test_comparison_is_sensitive_to_every_parameter``).
"""
from __future__ import annotations

import importlib
import inspect

import kornia
import numpy as np
import pytest
import torch

import isp
from isp.color import camera_to_srgb_matrix, srgb_encode
from isp.reference import DEMOSAIC_METHODS, ReferenceISP, reference_render
from isp.sample_data import CAMERAS

IMAGE_ATOL = 1e-12
GRAD_RTOL = 1e-10
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
H, W = 96, 48  # tall enough for tiles with the default demosaic's 20-row halo
#: tiles of 20 rows (+ the halo): 0-20, 20-40, 40-60 and a short one, 60-64
TILE_PIXELS = len(PATTERNS) * W * 20


def _batch(h: int = H, w: int = W, seed: int = 0) -> isp.RawBatch:
    """Four float64 mosaics (one per CFA phase) in [0.02, 0.92] with ~3 % saturated samples."""
    g = torch.Generator().manual_seed(seed)
    n = len(PATTERNS)
    mosaic = torch.rand(n, 1, h, w, generator=g, dtype=torch.float64) * 0.9 + 0.02
    mosaic[torch.rand(n, 1, h, w, generator=g) < 0.03] = 1.0
    as_shot = torch.rand(n, 3, generator=g, dtype=torch.float64) * 1.5 + 1.0
    as_shot[:, 1] = 1.0
    idx = torch.tensor([["RGB".index(c) for c in p] for p in PATTERNS])
    mats = [camera_to_srgb_matrix(np.linalg.inv(np.reshape(CAMERAS[i % len(CAMERAS)].xyz_to_cam, (3, 3)) / 1e4))
            for i in range(n)]
    return isp.RawBatch(mosaic, as_shot, idx, torch.tensor(np.stack(mats)), PATTERNS, [0] * n)


def _params(kind: str, n: int = len(PATTERNS)) -> torch.Tensor:
    if kind == "neutral":
        return isp.neutral_params(n, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    return isp.unit_to_params(torch.rand(n, isp.NUM_PARAMS, generator=g, dtype=torch.float64) * 2 - 1)


def _render_and_grad(fn, batch, p0, weights):
    p = p0.clone().requires_grad_(True)
    out = fn(batch, p)
    (out * weights).sum().backward()
    return out.detach(), p.grad


def _assert_grads_close(fast: torch.Tensor, ref: torch.Tensor) -> None:
    for j, name in enumerate(isp.PARAM_NAMES):
        scale = ref[:, j].abs().max().item()
        assert scale > 1e-6, f"{name}: no gradient to compare"
        err = (fast[:, j] - ref[:, j]).abs().max().item()
        assert err <= GRAD_RTOL * scale, f"{name}: gradient differs by {err:.3g} (scale {scale:.3g})"


@pytest.fixture(scope="module")
def batch():
    return _batch()


@pytest.fixture(scope="module")
def weights():
    return torch.rand(len(PATTERNS), 3, H, W, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


@pytest.mark.parametrize("kind", ["random", "neutral"])
@pytest.mark.parametrize("tile_pixels", [0, TILE_PIXELS], ids=["untiled", "tiled"])
def test_fast_path_equals_reference_in_image_and_gradient(batch, weights, kind, tile_pixels):
    fast = isp.ISP(tile_pixels=tile_pixels)
    assert (fast._tile_rows(batch) < H) == bool(tile_pixels)
    p0 = _params(kind)
    ref_out, ref_grad = _render_and_grad(reference_render, batch, p0, weights)
    out, grad = _render_and_grad(fast, batch, p0, weights)
    assert out.dtype == torch.float64 and out.shape == (len(PATTERNS), 3, H, W)
    torch.testing.assert_close(out, ref_out, atol=IMAGE_ATOL, rtol=0)
    _assert_grads_close(grad, ref_grad)
    # the unit box maps the same way on both paths
    u = isp.params_to_unit(p0)
    torch.testing.assert_close(fast(batch, u, unit=True).detach(), ReferenceISP()(batch, u, unit=True), atol=IMAGE_ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["random", "neutral"])
@pytest.mark.parametrize("tile_pixels", [0, TILE_PIXELS], ids=["untiled", "tiled"])
def test_inference_path_equals_reference(batch, kind, tile_pixels):
    """Without autograd the fast path skips neutral stages and works in place; same image."""
    p0 = _params(kind)
    with torch.no_grad():
        ref = reference_render(batch, p0)
    with torch.inference_mode():
        out = isp.ISP(tile_pixels=tile_pixels)(batch, p0)
    torch.testing.assert_close(out, ref, atol=IMAGE_ATOL, rtol=0)


@pytest.mark.parametrize("shape", [(6, 10), (2, 4), (10, 8)])
def test_small_images_take_the_same_border_paths(shape):
    """Images too small for the half-resolution chroma low-pass (full-resolution Gaussian) or
    for reflection padding (replication) are rendered alike."""
    h, w = shape
    batch = _batch(h, w, seed=3)
    wts = torch.rand(len(PATTERNS), 3, h, w, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    p0 = _params("random")
    ref_out, ref_grad = _render_and_grad(reference_render, batch, p0, wts)
    out, grad = _render_and_grad(isp.ISP(tile_pixels=0), batch, p0, wts)
    torch.testing.assert_close(out, ref_out, atol=IMAGE_ATOL, rtol=0)
    torch.testing.assert_close(grad, ref_grad, atol=GRAD_RTOL * ref_grad.abs().max().item(), rtol=0)


def test_comparison_is_sensitive_to_every_parameter(batch):
    """A 1e-6 error in any single parameter would show far above the image tolerance."""
    p0 = _params("random")
    with torch.no_grad():
        base = reference_render(batch, p0)
        for j, name in enumerate(isp.PARAM_NAMES):
            p = p0.clone()
            p[:, j] += 1e-6 if p0[0, j] < isp.PARAM_SPECS[j].high - 1e-5 else -1e-6
            moved = (reference_render(batch, p, validate=False) - base).abs().max().item()
            assert moved > 1e3 * IMAGE_ATOL, f"{name}: moved the image by only {moved:.3g}"


def test_srgb_branch_difference_is_bounded():
    """The fast path's ``min(linear, power)`` against Kornia's threshold at 0.0031308: equal
    except just below the threshold, where they differ by less than 3e-8."""
    x = torch.linspace(0.0, 1.0, 200001, dtype=torch.float64)
    x = torch.cat([x, torch.linspace(0.0031306, 0.0031310, 4001, dtype=torch.float64)])
    diff = (srgb_encode(x) - kornia.color.linear_rgb_to_rgb(x.expand(3, 1, -1))[0, 0]).abs()
    assert diff.max() < 3e-8
    near = (x > 0.0031308 - 2e-7) & (x <= 0.0031308)
    assert diff[near].max() > 1e-8  # the known difference is there ...
    assert diff[~near].max() < 1e-14  # ... and nowhere else


def test_reference_demosaic_is_selected_by_name(batch):
    assert "bilinear" in DEMOSAIC_METHODS
    with pytest.raises(ValueError, match="unknown reference demosaic"):
        ReferenceISP(demosaic="nope")
    with pytest.raises(ValueError, match="unknown reference demosaic"):
        reference_render(batch, demosaic="nope")
    # Kornia's bilinear demosaic equals the pipeline's on every phase, borders included
    out = DEMOSAIC_METHODS["bilinear"](batch.linear, batch.patterns)
    torch.testing.assert_close(out, isp.stages.demosaic_bilinear(batch.linear, list(batch.patterns)), atol=1e-15, rtol=0)


def test_reference_rejects_what_the_fast_path_rejects(batch):
    p = _params("random")
    p[1, isp.PARAM_INDEX["sharpen"]] = 3.0
    for fn in (reference_render, isp.ISP()):
        with pytest.raises(ValueError, match="sharpen"):
            fn(batch, p)


# ---------------------------------------------------------------------------------------------
# second-order gradients


def _autograd_functions():
    """Every torch.autograd.Function subclass defined in the isp package."""
    found = []
    for mod_name in ("isp.stages._util", "isp.stages.adjust", "isp.stages.demosaic", "isp.stages.detail",
                     "isp.stages.fused", "isp.stages.tone", "isp.stages.white_balance", "isp.color", "isp.pipeline"):
        mod = importlib.import_module(mod_name)
        found += [obj for _, obj in inspect.getmembers(mod, inspect.isclass)
                  if issubclass(obj, torch.autograd.Function) and obj.__module__ == mod_name]
    return found


def test_every_custom_autograd_function_is_marked_first_order_only():
    fns = _autograd_functions()
    assert len(fns) >= 12
    missing = [f.__name__ for f in fns if not getattr(f.backward, "first_order_only", False)]
    assert not missing, f"backward without @first_order_only: {missing}"


def test_second_order_gradient_of_the_fast_path_raises(batch, weights):
    """A gradient graph through the hand-written backward passes raises instead of giving a
    Hessian with terms missing; the reference, autograd all the way, gives one."""
    sub = batch.index([0])
    p = _params("random", 1).requires_grad_(True)
    loss = (isp.ISP(tile_pixels=0)(sub, p) * weights[:1]).sum()
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(loss, p, create_graph=True)
    # without a graph of the gradient, the same backward pass works
    assert torch.isfinite(torch.autograd.grad(loss, p)[0]).all()
    (g,) = torch.autograd.grad((reference_render(sub, p) * weights[:1]).sum(), p, create_graph=True)
    (h,) = torch.autograd.grad(g[0, isp.PARAM_INDEX["contrast"]], p)
    assert torch.isfinite(h).all() and h.abs().max() > 0


@pytest.mark.parametrize("stage", ["clamp01", "luminance", "rb_chroma", "gaussian_blur", "binomial_blur",
                                   "half_pool", "upsample", "demosaic", "wb_demosaic", "exposure_tone",
                                   "encode_tone", "saturate_fused"])
def test_second_order_gradient_of_each_custom_node_raises(stage):
    """Each custom node raises under create_graph=True, even for a loss linear in its output
    (where torch's once_differentiable alone would return the gradient without its terms)."""
    from isp.stages import _util, adjust, detail, fused
    from isp.stages.demosaic import demosaic_bilinear

    g = torch.Generator().manual_seed(5)
    x = (torch.rand(1, 3, 12, 12, generator=g, dtype=torch.float64) * 1.2 - 0.1).requires_grad_(True)
    k = torch.full((1, 1, 1, 1), 0.3, dtype=torch.float64, requires_grad=True)
    m = torch.rand(1, 1, 12, 12, generator=g, dtype=torch.float64)
    gains = torch.tensor([[1.9, 1.0, 1.4]], dtype=torch.float64, requires_grad=True)
    calls = {
        "clamp01": lambda: _util.clamp01(x),
        "luminance": lambda: adjust.luminance(x),
        "rb_chroma": lambda: adjust.rb_chroma(x),
        "gaussian_blur": lambda: detail.gaussian_blur(x, 0.8),  # reflection pad + symmetric filter
        "binomial_blur": lambda: detail.binomial_blur(x),
        "half_pool": lambda: detail._HalfPool.apply(x),
        "upsample": lambda: detail._Upsample2.apply(x),
        "demosaic": lambda: demosaic_bilinear(x[:, :1], "RGGB"),
        "wb_demosaic": lambda: fused.white_balance_demosaic(m, gains, torch.tensor([[0, 1, 1, 2]]), "RGGB"),
        "exposure_tone": lambda: fused.exposure_tone(x.clamp(0, 1), torch.exp2(k), k, -k),
        "encode_tone": lambda: fused.encode_tone(x.clamp(0, 1), k, k),
        "saturate_fused": lambda: fused.saturate_fused(x.clamp(0, 1), k, -k),
    }
    out = calls[stage]()
    inputs = [t for t in (x, k, gains) if t.requires_grad]
    w = torch.rand(out.shape, generator=g, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad((out * w).sum(), inputs, create_graph=True, allow_unused=True)
