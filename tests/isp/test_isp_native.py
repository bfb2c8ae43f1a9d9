"""The compiled per-pixel chain (isp.stages.native) against the torch nodes of isp.stages.fused."""
import pytest
import torch

import isp
from isp.stages import native
from isp.stages.fused import encode_tone, exposure_tone, saturate_fused

pytestmark = pytest.mark.skipif(not native.available(), reason="compiled kernel unavailable (no C compiler, a failed build or RLISP_NATIVE=0): the torch path is used")

_VALUES = (0.4, 0.3, -0.5, 0.2, 0.3, -0.2, 0.4)  # ev, highlights, shadows, saturation, vibrance, brightness, contrast


def _torch_chain(x, ev, h, s, sa, vi, a, c):
    y = exposure_tone(x, None if ev is None else torch.exp2(ev), h, s)
    if sa is not None:
        y = saturate_fused(y, sa, vi)
    return encode_tone(y, a, c)


def _native_chain(x, ev, h, s, sa, vi, a, c):
    return native.tone_chain(x, None if ev is None else torch.exp2(ev), h, s, sa, vi, a, c)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("skip", [(), (0,), (1, 2), (3, 4), (5, 6), (0, 1, 2, 3, 4, 5, 6)])
def test_tone_chain_equals_torch_nodes(dtype, tol, skip):
    g = torch.Generator().manual_seed(0)
    b = 2
    x = torch.rand(b, 3, 9, 14, generator=g, dtype=dtype)
    x[0, :, 0, :4] = 1.0  # clipped white and black: the clips' gradient conventions
    x[1, :, 1, :4] = 0.0
    x[1, 1, 2, :] = x[1, 0, 2, :]  # tied maxima/minima in the saturation
    up = torch.rand(b, 3, 9, 14, generator=g, dtype=dtype)
    results = []
    for chain in (_torch_chain, _native_chain):
        xg = x.clone().requires_grad_(True)
        ps = [None if i in skip else (torch.tensor([v, -0.6 * v], dtype=dtype)).requires_grad_(True)
              for i, v in enumerate(_VALUES)]
        pv = [None if p is None else p.reshape(-1, 1, 1, 1) for p in ps]
        out = chain(xg, *pv)
        out.backward(up)
        results.append((out.detach(), xg.grad, [None if p is None else p.grad for p in ps]))
        with torch.no_grad():
            torch.testing.assert_close(chain(x, *[None if p is None else p.detach() for p in pv]), out.detach(),
                                       rtol=0, atol=tol)
    (o1, g1, p1), (o2, g2, p2) = results
    torch.testing.assert_close(o2, o1, rtol=0, atol=tol)
    torch.testing.assert_close(g2, g1, rtol=tol, atol=tol * 10)
    for a, c in zip(p1, p2):
        assert (a is None) == (c is None)
        if a is not None:
            torch.testing.assert_close(c, a, rtol=tol, atol=tol * a.abs().max().item())


def test_pipeline_native_equals_torch_path():
    torch.manual_seed(1)
    mosaic = torch.rand(2, 1, 24, 32, dtype=torch.float64) * 0.9
    raw = isp.RawBatch(mosaic, torch.tensor([[2.0, 1.0, 1.5], [1.8, 1.0, 1.3]], dtype=torch.float64),
                       torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), torch.eye(3, dtype=torch.float64).expand(2, 3, 3),
                       ["RGGB", "GRBG"], [0, 0])
    unit = torch.linspace(-0.5, 0.6, isp.NUM_PARAMS, dtype=torch.float64).repeat(2, 1)
    outs = []
    for use in (True, False):
        p = isp.unit_to_params(unit).clone().requires_grad_(True)
        y = isp.ISP(native=use, tile_pixels=0)(raw, p)
        y.square().mean().backward()
        outs.append((y.detach(), p.grad))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=1e-12)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-10, atol=1e-12)
