"""The whole pipeline: neutral rendering vs a LibRaw reference, batching, gradients, validation."""
from __future__ import annotations

import colour
import numpy as np
import pytest
import rawpy
import torch

import isp

#: Stated accuracy of the neutral rendering against LibRaw (bilinear demosaic, camera WB, linear
#: 16-bit sRGB output, then the sRGB transfer): mean CIEDE2000 per image.
MAX_MEAN_DE2000 = 0.25
MAX_P99_DE2000 = 1.0


def _libraw_reference(path) -> np.ndarray:
    """LibRaw's rendering of ``path``: ``(H, W, 3)`` float64 sRGB-encoded in [0, 1], oriented."""
    with rawpy.imread(str(path)) as r:
        lin = r.postprocess(
            demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR,
            use_camera_wb=True,
            output_color=rawpy.ColorSpace.sRGB,
            gamma=(1, 1),
            no_auto_bright=True,
            output_bps=16,
            # LibRaw replaces the file's white level by the data maximum when that exceeds 75 %
            # of it; the pipeline honours the declared white level, so switch the heuristic off.
            adjust_maximum_thr=0.0,
        )
    return colour.cctf_encoding(lin.astype(np.float64) / 65535.0, function="sRGB")


def _de2000(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lab = lambda x: colour.XYZ_to_Lab(colour.RGB_to_XYZ(x, colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=True))  # noqa: E731
    return colour.delta_E(lab(a), lab(b), method="CIE 2000")


def _render_bilinear(raw, params=None) -> np.ndarray:
    """Neutral rendering with the bilinear demosaic (LibRaw LINEAR's), oriented, (H, W, 3)."""
    with torch.inference_mode():
        out = isp.ISP(demosaic="bilinear")(isp.RawBatch.from_raws([raw]), params)[0]
    return isp.apply_orientation(out, raw.orientation).permute(1, 2, 0).double().numpy()


def test_neutral_rendering_matches_libraw(sample_dngs):
    """Every sample DNG (4 CFA phases, 5 cameras, 3 orientations) within the stated ΔE2000 of
    LibRaw's rendering with the matching demosaic (bilinear = LINEAR; the default method is held
    against the truth and LibRaw's AHD in test_isp_demosaic.py)."""
    worst = []
    for path in sample_dngs:
        ours = _render_bilinear(isp.read_raw(path))
        ref = _libraw_reference(path)
        assert ours.shape == ref.shape, f"{path.name}: orientation/size differs from LibRaw"
        de = _de2000(ours, ref)
        worst.append((float(de.mean()), float(np.percentile(de, 99)), path.name))
    for mean, p99, name in worst:
        assert mean < MAX_MEAN_DE2000, f"{name}: mean dE2000 {mean:.3f}"
        assert p99 < MAX_P99_DE2000, f"{name}: 99th percentile dE2000 {p99:.3f}"


def test_reference_comparison_can_fail(sample_dngs):
    """The ΔE check is sensitive: half a stop of exposure is far outside the tolerance."""
    path = sample_dngs[0]
    p = isp.params_from_dict({"exposure": 0.5}).unsqueeze(0)
    ours = _render_bilinear(isp.read_raw(path), p)
    assert _de2000(ours, _libraw_reference(path)).mean() > 5 * MAX_MEAN_DE2000


@pytest.fixture(scope="module")
def small_batch(sample_dngs):
    raws = [isp.read_raw(p).preview(96).center_crop(48, 64) for p in sample_dngs[:3]]
    return raws, isp.RawBatch.from_raws(raws)


def test_output_shape_range_and_batch_equals_singles(small_batch):
    raws, batch = small_batch
    g = torch.Generator().manual_seed(0)
    params = isp.unit_to_params(torch.rand(3, isp.NUM_PARAMS, generator=g) * 2 - 1)
    out = isp.ISP()(batch, params)
    assert out.shape == (3, 3, 48, 64) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    for i, r in enumerate(raws):
        single = isp.ISP()(isp.RawBatch.from_raws([r]), params[i : i + 1])
        torch.testing.assert_close(out[i : i + 1], single, atol=1e-5, rtol=0)
    # a shared (P,) vector broadcasts; unit=True maps the unit box first
    shared = isp.ISP()(batch, params[0])
    torch.testing.assert_close(shared[0], out[0], atol=1e-5, rtol=0)
    unit = isp.params_to_unit(params)
    torch.testing.assert_close(isp.ISP()(batch, unit, unit=True), out, atol=1e-5, rtol=0)
    sub = batch.index([2, 0])
    torch.testing.assert_close(isp.ISP()(sub, params[[2, 0]]), out[[2, 0]], atol=1e-5, rtol=0)


def test_each_parameter_changes_the_output(small_batch):
    _, batch = small_batch
    base = isp.ISP()(batch, None)
    for i, s in enumerate(isp.PARAM_SPECS):
        p = isp.neutral_params(len(batch))
        p[:, i] = s.high if s.high != s.neutral else s.low
        diff = (isp.ISP()(batch, p) - base).abs().mean().item()
        assert diff > 1e-3, f"{s.name} has no visible effect"


@pytest.mark.parametrize("where", ["neutral", "interior"])
def test_every_parameter_gets_a_finite_nonzero_gradient(small_batch, where):
    _, batch = small_batch
    if where == "neutral":
        p = isp.neutral_params(len(batch))
    else:
        g = torch.Generator().manual_seed(1)
        p = isp.unit_to_params(torch.rand(len(batch), isp.NUM_PARAMS, generator=g) * 1.2 - 0.6)
    p.requires_grad_(True)
    out = isp.ISP()(batch, p)
    w = torch.rand(out.shape, generator=torch.Generator().manual_seed(2))
    (out * w).sum().backward()
    assert torch.isfinite(p.grad).all()
    zero = [isp.PARAM_NAMES[j] for j in range(isp.NUM_PARAMS) if (p.grad[:, j].abs() < 1e-8).any()]
    assert not zero, f"parameters without gradient: {zero}"
    # the gradient through the unit box is finite and non-zero as well
    u = torch.zeros(len(batch), isp.NUM_PARAMS, requires_grad=True)
    (isp.ISP()(batch, u, unit=True) * w).sum().backward()
    assert torch.isfinite(u.grad).all() and (u.grad.abs() > 1e-8).all()


def test_pipeline_gradient_matches_finite_differences(small_batch):
    """Autograd vs central differences of the whole pipeline, float64 colour matrix path."""
    _, batch = small_batch
    sub = batch.index([0])
    p0 = isp.unit_to_params(torch.full((1, isp.NUM_PARAMS), 0.2)).double()
    w = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    f = lambda p: (isp.ISP()(sub, p.float(), validate=False).double() * w).sum()  # noqa: E731
    p = p0.clone().requires_grad_(True)
    f(p).backward()
    for i in (isp.PARAM_INDEX["exposure"], isp.PARAM_INDEX["contrast"], isp.PARAM_INDEX["saturation"]):
        e = torch.zeros_like(p0)
        e[0, i] = 1e-2
        fd = (f(p0 + e) - f(p0 - e)).item() / 2e-2
        assert p.grad[0, i].item() == pytest.approx(fd, rel=0.05, abs=1e-2), isp.PARAM_NAMES[i]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_pipeline_rejects_non_finite_params(small_batch, bad):
    _, batch = small_batch
    p = isp.neutral_params(len(batch))
    p[1, isp.PARAM_INDEX["contrast"]] = bad
    with pytest.raises(ValueError, match="contrast.*finite"):
        isp.ISP()(batch, p)
    u = torch.zeros(len(batch), isp.NUM_PARAMS)
    u[0, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        isp.ISP()(batch, u, unit=True)


def test_pipeline_rejects_out_of_range_and_bad_shapes(small_batch):
    _, batch = small_batch
    p = isp.neutral_params(len(batch))
    p[0, isp.PARAM_INDEX["sharpen"]] = -0.5
    with pytest.raises(ValueError, match="sharpen.*outside its range"):
        isp.ISP()(batch, p)
    with pytest.raises(ValueError, match=r"\(B, P\)"):
        isp.ISP()(batch, isp.neutral_params(2))
    with pytest.raises(ValueError, match="same shape"):
        isp.RawBatch.from_raws([batch_raw.center_crop(32, 32) for batch_raw in small_batch[0][:1]] + [small_batch[0][1]])
    with pytest.raises(ValueError, match="at least one"):
        isp.RawBatch.from_raws([])


def test_apply_orientation_matches_numpy():
    img = torch.arange(24.0).reshape(1, 4, 6)
    a = img[0].numpy()
    np.testing.assert_array_equal(isp.apply_orientation(img, 0)[0].numpy(), a)
    np.testing.assert_array_equal(isp.apply_orientation(img, 3)[0].numpy(), a[::-1, ::-1])
    np.testing.assert_array_equal(isp.apply_orientation(img, 5)[0].numpy(), np.rot90(a, 1))
    np.testing.assert_array_equal(isp.apply_orientation(img, 6)[0].numpy(), np.rot90(a, -1))
    with pytest.raises(ValueError):
        isp.apply_orientation(img, 2)


def test_render_preview_and_module_buffers(sample_dngs):
    raw = isp.read_raw(sample_dngs[4])  # orientation 6: displayed rotated
    out = isp.render(raw, max_side=64)
    assert out.shape[0] == 3 and max(out.shape[1:]) <= 64
    small = raw.preview(64)
    assert out.shape[1:] == (small.shape[1], small.shape[0])  # rotated by 90 degrees
    m = isp.ISP()
    assert all(t.device.type == "cpu" for t in list(m.parameters()) + list(m.buffers()))


def test_row_tiles_give_the_untiled_result_and_gradient(sample_dngs):
    """Tiling (with its halo) is exact: same image and same parameter gradient as one pass."""
    raws = [isp.read_raw(p).preview(192).center_crop(96, 96) for p in sample_dngs[6:8]]
    batch = isp.RawBatch.from_raws(raws)
    g = torch.Generator().manual_seed(4)
    p0 = isp.unit_to_params(torch.rand(2, isp.NUM_PARAMS, generator=g) * 1.6 - 0.8)
    w = torch.rand(2, 3, 96, 96, generator=g)
    outs, grads = [], []
    for tile_pixels in (0, 2 * 96 * 20):  # untiled, and tiles of 20 rows (+ halo)
        m = isp.ISP(tile_pixels=tile_pixels)
        assert (m._tile_rows(batch) < 96) == bool(tile_pixels)
        p = p0.clone().requires_grad_(True)
        out = m(batch, p)
        (out * w).sum().backward()
        outs.append(out.detach())
        grads.append(p.grad)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-3, rtol=1e-4)


def test_bench_isp_runs_on_a_tiny_file():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "experiments" / "bench_isp.py"
    r = subprocess.run([sys.executable, str(script), "--width", "64", "--height", "48", "--repeats", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("isp_forward_vs_rawpy_ahd=") and float(lines[-1].split("=")[1]) > 0
    assert any(line.startswith("isp_forward_backward_vs_rawpy_ahd=") for line in lines)
    assert any(line.startswith("rawpy_linear") for line in lines)


def test_tune_allocator_reuses_freed_memory_without_page_faults():
    import resource
    import sys

    from isp.cpu import tune_allocator

    tuned = tune_allocator()
    assert tune_allocator() is tuned  # idempotent
    if not tuned:
        assert not sys.platform.startswith("linux") or pytest.skip("not glibc")
        return
    n = (8 << 20) // 4  # an 8 MiB block: above glibc's default mmap threshold
    torch.empty(n).fill_(1.0)  # allocated, touched, freed
    faults = []
    for _ in range(3):  # the same size again: reused from the heap (the minimum skips heap growth)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(n).fill_(2.0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert min(faults) < 512, f"{faults} page faults for a reused 8 MiB block (2048 pages if fresh)"


def test_inference_path_equals_the_autograd_path(sample_dngs):
    """Without autograd the pipeline takes other code paths (phase-plane demosaic, in-place
    clips, stages overwriting their fresh inputs, views of the rows a tile keeps); the image must
    be the same, tiled or not."""
    raws = [isp.read_raw(p).preview(128).center_crop(64, 64) for p in sample_dngs[:3]]
    batch = isp.RawBatch.from_raws(raws)
    g = torch.Generator().manual_seed(5)
    params = isp.unit_to_params(torch.rand(3, isp.NUM_PARAMS, generator=g) * 1.8 - 0.9)
    slow = isp.ISP(tile_pixels=0)(batch, params.clone().requires_grad_(True)).detach()
    for tile_pixels in (0, 3 * 64 * 16):  # untiled, and tiles of 16 rows (+ halo)
        with torch.inference_mode():
            fast = isp.ISP(tile_pixels=tile_pixels)(batch, params)
        torch.testing.assert_close(fast, slow, atol=2e-6, rtol=0)
