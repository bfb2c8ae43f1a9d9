"""The fused stage chains (isp.stages.fused) equal the plain stage functions, forward and
backward (the plain ones are autograd's reference), and pass float64 gradcheck."""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from isp import stages as S
from isp.stages.fused import encode_tone, exposure_tone, saturate_fused, white_balance_demosaic

D = torch.float64


def _rand(*shape, lo=0.0, hi=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=D)


def _per_image(*values):
    return torch.tensor(values, dtype=D).reshape(-1, 1, 1, 1).requires_grad_(True)


def _grads(out, inputs, seed=1):
    g = _rand(*out.shape, seed=seed)
    return torch.autograd.grad(out, inputs, g)


def _image_with_ties(seed=0):
    """Random linear RGB with grey pixels, two equal channels, exact 0 and 1 (clip and tie cases)."""
    x = _rand(2, 3, 6, 7, seed=seed)
    x[:, :, 0, :3] = 0.5  # grey: max = min
    x[:, 1, 1] = x[:, 0, 1]  # two channels tied
    x[:, :, 2, 0] = 0.0
    x[:, :, 2, 1] = 1.0
    return x.requires_grad_(True)


@pytest.mark.parametrize("active", ["all", "exposure", "curve"])
def test_exposure_tone_matches_stages(active):
    x = _image_with_ties()
    ev, h, s = _per_image(0.7, -0.4), _per_image(0.3, -0.6), _per_image(-0.2, 0.5)
    gain = torch.exp2(ev) if active in ("all", "exposure") else None
    hh, ss = (h, s) if active in ("all", "curve") else (None, None)
    ours = exposure_tone(x, gain, hh, ss)
    ref = x
    if gain is not None:
        ref = S.adjust_exposure(ref, ev.flatten())
    if hh is not None:
        ref = S.adjust_highlights_shadows(ref, h.flatten(), s.flatten())
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    inputs = [x] + [t for t in (ev if gain is not None else None, hh, ss) if t is not None]
    for a, b in zip(_grads(ours, inputs), _grads(ref, inputs)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("active", ["both", "brightness", "contrast", "none"])
def test_encode_tone_matches_stages(active):
    x = _image_with_ties(seed=3)
    a, c = _per_image(0.4, -0.7), _per_image(-0.3, 0.8)
    aa = a if active in ("both", "brightness") else None
    cc = c if active in ("both", "contrast") else None
    ours = encode_tone(x, aa, cc)
    ref = S.srgb_encode(x)
    if aa is not None:
        ref = S.adjust_brightness(ref, a.flatten())
    if cc is not None:
        ref = S.adjust_contrast(ref, c.flatten())
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    inputs = [x] + [t for t in (aa, cc) if t is not None]
    for g1, g2 in zip(_grads(ours, inputs), _grads(ref, inputs)):
        torch.testing.assert_close(g1, g2, atol=1e-10, rtol=1e-10)


def test_saturate_fused_matches_stage_including_ties_and_clipping():
    x = _image_with_ties(seed=5)
    s, v = _per_image(0.6, -0.5), _per_image(0.8, -0.9)  # strong enough to clip
    ours = saturate_fused(x, s, v)
    ref = S.saturate(x, s.flatten(), v.flatten())
    assert (ref == 1.0).any() or (ref == 0.0).any()
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    for g1, g2 in zip(_grads(ours, [x, s, v]), _grads(ref, [x, s, v])):
        torch.testing.assert_close(g1, g2, atol=1e-10, rtol=1e-10)


def test_fused_gradcheck_float64():
    x = _rand(2, 3, 4, 5, lo=0.01, hi=0.99, seed=7).requires_grad_(True)
    ev, h, s = _per_image(0.3, -0.5), _per_image(0.4, -0.2), _per_image(-0.3, 0.6)
    a, c = _per_image(0.2, -0.5), _per_image(0.5, -0.4)
    assert gradcheck(lambda x, e, h, s: exposure_tone(x, torch.exp2(e), h, s), (x, ev, h, s))
    assert gradcheck(lambda x, a, c: encode_tone(x, a, c), (x, a, c))
    assert gradcheck(lambda x, a, b: saturate_fused(x, a, b), (x, a, c))
    # 0-dim parameters (one value for the whole batch)
    k0 = torch.tensor(1.3, dtype=D, requires_grad=True)
    assert gradcheck(lambda x, k: exposure_tone(x, k), (x, k0))
    assert gradcheck(lambda x, k: encode_tone(x, k, None), (x, k0))


@pytest.mark.parametrize("clipped", [False, True])
def test_white_balance_demosaic_matches_stages(clipped):
    """The gains-only node equals white balance -> demosaic through autograd, with and without
    clipped samples (gradient blocked there, passed at exactly 1), for a batch of different
    CFA phases; float64 gradcheck."""
    mosaic = _rand(3, 1, 6, 8, lo=0.05, hi=0.4 if not clipped else 0.95, seed=5)
    gains = torch.tensor([[2.0, 1.0, 1.5], [1.2, 0.9, 2.4], [1.7, 1.1, 1.3]], dtype=D, requires_grad=True)
    patterns = ["RGGB", "GBRG", "BGGR"]
    cfa = torch.tensor([[{"R": 0, "G": 1, "B": 2}[c] for c in p] for p in patterns])
    if clipped:  # one red sample lands exactly on 1 (gradient passes), others above 1 (blocked)
        mosaic[0, 0, 0, 0] = 0.5
    # LibRaw's per-channel clip at 1 (the bilinear node's own path; the neutral highlight clip
    # and the other methods: test_isp_demosaic.py)
    ref = S.demosaic_bilinear(S.white_balance(mosaic, gains, cfa, "channel"), patterns)
    ours = white_balance_demosaic(mosaic, gains, cfa, patterns, "bilinear", "channel")
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    assert ((S.white_balance(mosaic, gains, cfa, "channel") >= 1.0).any()) == clipped
    for a, b in zip(_grads(ours, [gains]), _grads(ref, [gains])):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    mosaic[0, 0, 0, 0] = 0.3  # gradcheck's finite differences need a distance from the kink at 1
    assert gradcheck(lambda g: white_balance_demosaic(mosaic, g, cfa, patterns, "bilinear", "channel"), (gains,))


def test_exposure_tone_rejects_half_curve():
    with pytest.raises(ValueError, match="together"):
        exposure_tone(_rand(1, 3, 2, 2), None, _per_image(0.1), None)


def test_hand_written_adjoints_match_autograd():
    """Pooling, upsampling and reflection padding with hand-written backward equal autograd's."""
    import torch.nn.functional as F

    from isp.stages.detail import _HalfPool, _ReflectPad, _Upsample2

    x = _rand(2, 2, 5, 7, seed=11).requires_grad_(True)
    up_ref = F.interpolate(x, size=(10, 14), mode="bilinear", align_corners=False)
    torch.testing.assert_close(_Upsample2.apply(x), up_ref, atol=1e-12, rtol=0)
    for a, b in zip(_grads(_Upsample2.apply(x), [x]), _grads(up_ref, [x])):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    y = _rand(2, 2, 10, 14, seed=12).requires_grad_(True)
    for a, b in zip(_grads(_HalfPool.apply(y), [y]), _grads(F.avg_pool2d(y, 2), [y])):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    for dim, pad in ((-1, (3, 3, 0, 0)), (-2, (0, 0, 3, 3))):
        ours, ref = _ReflectPad.apply(y, 3, dim), F.pad(y, pad, mode="reflect")
        torch.testing.assert_close(ours, ref, atol=0, rtol=0)
        for a, b in zip(_grads(ours, [y]), _grads(ref, [y])):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert gradcheck(_Upsample2.apply, (x,)) and gradcheck(_HalfPool.apply, (y,))


def test_overwrite_gives_the_same_result_without_autograd():
    """The pipeline lets the fused chains use their (fresh) input as scratch when no gradient is
    recorded; the result must not change."""
    x = _rand(2, 3, 5, 6, seed=3)
    k, h, s = _per_image(1.3, 0.8).detach(), _per_image(0.4, -0.2).detach(), _per_image(-0.3, 0.5).detach()
    a, c = _per_image(0.3, -0.4).detach(), _per_image(-0.2, 0.6).detach()
    with torch.no_grad():
        for fn in (lambda t, **kw: exposure_tone(t, k, h, s, **kw), lambda t, **kw: saturate_fused(t, a, c, **kw),
                   lambda t, **kw: encode_tone(t, a, c, **kw)):
            ref = fn(x.clone())
            torch.testing.assert_close(fn(x.clone(), overwrite=True), ref)
