"""Malvar-He-Cutler demosaicing (ICASSP 2004): bilinear interpolation corrected by the Laplacian
of the colour that was measured at the pixel ("gradient-corrected linear interpolation").

Each missing value is a fixed 5x5 linear combination of mosaic samples, with the published
coefficients (in eighths):

* green at red/blue: centre 4, direct neighbours 2, samples two away -1,
* red at green in a red row (blue in a blue row): centre 5, left/right 4, two left/right -1,
  diagonals -1, two up/down 1/2; in the other row type the same kernel transposed,
* red at blue (blue at red): centre 6, diagonals 2, two away in each direction -3/2.

It is linear in the mosaic, so its gradient is its adjoint. :func:`mhc_planes` evaluates it on
the four phase planes (the pipeline's path); :func:`isp.reference.reference_demosaic_mhc` is the
plain full-resolution convolution it is tested against.
"""
from __future__ import annotations

import torch

from ._phase import Planes, sites

#: Reach of the stencils in pixels (pad at least this much).
MHC_RADIUS = 2
#: Reflection padding of the phase-plane path (even, >= radius).
MHC_PAD = 2

_G_AT_RB = {(0, 0): 4 / 8, (-1, 0): 2 / 8, (1, 0): 2 / 8, (0, -1): 2 / 8, (0, 1): 2 / 8,
            (-2, 0): -1 / 8, (2, 0): -1 / 8, (0, -2): -1 / 8, (0, 2): -1 / 8}
#: Colour measured left and right of the green pixel (its transpose: above and below).
_ROW = {(0, 0): 5 / 8, (0, -1): 4 / 8, (0, 1): 4 / 8, (0, -2): -1 / 8, (0, 2): -1 / 8,
        (-1, -1): -1 / 8, (-1, 1): -1 / 8, (1, -1): -1 / 8, (1, 1): -1 / 8, (-2, 0): 0.5 / 8, (2, 0): 0.5 / 8}
_COL = {(dx, dy): w for (dy, dx), w in _ROW.items()}
_DIAG = {(0, 0): 6 / 8, (-1, -1): 2 / 8, (-1, 1): 2 / 8, (1, -1): 2 / 8, (1, 1): 2 / 8,
         (-2, 0): -1.5 / 8, (2, 0): -1.5 / 8, (0, -2): -1.5 / 8, (0, 2): -1.5 / 8}


def mhc_fields(pl: Planes, pattern: str) -> tuple[dict, int]:
    """MHC on phase planes: returns the channel fields ``{0: R, 1: G, 2: B}`` and their margin."""
    s = sites(pattern)
    m0, m = pl.field, 1
    r, b, gr, gb = s["r"], s["b"], s["gr"], s["gb"]
    same = lambda p: (pl.at(m0, p, 0, 0, m), m)  # noqa: E731
    red = {r: same(r), gr: (pl.stencil(m0, gr, _ROW, m), m), gb: (pl.stencil(m0, gb, _COL, m), m),
           b: (pl.stencil(m0, b, _DIAG, m), m)}
    blue = {b: same(b), gb: (pl.stencil(m0, gb, _ROW, m), m), gr: (pl.stencil(m0, gr, _COL, m), m),
            r: (pl.stencil(m0, r, _DIAG, m), m)}
    green = {gr: same(gr), gb: same(gb), r: (pl.stencil(m0, r, _G_AT_RB, m), m), b: (pl.stencil(m0, b, _G_AT_RB, m), m)}
    return {0: red, 1: green, 2: blue}, m


def mhc_planes(mosaic: torch.Tensor, pattern: str) -> torch.Tensor:
    """MHC demosaic of ``(B, 1, H, W)`` mosaics sharing one CFA ``pattern`` -> ``(B, 3, H, W)``
    (reflection-padded borders; differentiable through autograd)."""
    pl = Planes(mosaic, MHC_PAD)
    rgb, _ = mhc_fields(pl, pattern)
    return pl.interleave(rgb, pl.margin)
