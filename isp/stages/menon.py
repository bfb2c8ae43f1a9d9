"""Directional demosaicing after Menon, Andriani and Calvagno, "Demosaicing with directional
filtering and a posteriori decision" (IEEE TIP 2007, DDFAPD), with its refining step.

1. Green at red/blue pixels is estimated twice, horizontally and vertically, with the
   gradient-corrected filter ``G = (G_-1 + G_+1) / 2 + (2 X_0 - X_-2 - X_+2) / 4``.
2. The colour differences ``X - G`` of each estimate are compared with the same difference two
   pixels on (``D = |C_0 - C_+2|``) and summed over a 5x5 neighbourhood along the direction
   (weights 3 on the pixel's own row/column, 1 on the neighbouring ones); the direction with the
   smaller sum wins (the *a posteriori decision*, a 0/1 mask per red/blue pixel).
3. Red and blue at green pixels: bilinear interpolation of the colour difference ``X - G`` from
   the two neighbours of that colour; red at blue (blue at red): the difference ``R - B`` from
   the two neighbours along the decided direction.
4. Refining: green at red/blue recomputed from the 3-tap mean of ``X - G`` along the decided
   direction, red/blue at green again from the new green, red at blue (blue at red) from the
   3-tap mean of ``R - B`` along the direction.

Given the decision masks the method is linear in the mosaic, and the masks are piecewise
constant, so the gradient with respect to the mosaic (or white-balance gains) is the linear
map's adjoint; :func:`menon_fields` accepts precomputed masks for that
(:mod:`isp.stages.fused`). :func:`menon_planes` runs on the four phase planes;
:func:`isp.reference.reference_demosaic_menon` is a plain full-resolution version (shifts and
``torch.where`` on masks, after the formulas above) that it is tested against.
"""
from __future__ import annotations

import torch

from ._phase import Planes, sites

#: Reflection padding (even) of both implementations: the margin that the phase-plane steps use
#: up (7 plane samples); the values at the image centre do not depend on it.
MENON_PAD = 14
#: Reach of the method in pixels: an output pixel depends on mosaic samples at most this far away
#: (8 measured by perturbing single samples, decisions included; tested).
MENON_RADIUS = 8

_H, _V = (0, 1), (1, 0)


def _neg(d):
    return (-d[0], -d[1])


def _add(*ds):
    return (sum(d[0] for d in ds), sum(d[1] for d in ds))


def _scale(k, d):
    return (k * d[0], k * d[1])


def menon_fields(pl: Planes, pattern: str, masks: dict | None = None, refine: bool = True):
    """The method on phase planes.

    Args:
        pl: the phase planes of the padded mosaic.
        pattern: CFA string.
        masks: ``{phase: (mask, margin)}`` decision masks (1 = horizontal) at the red and blue
            phases, as returned by an earlier call; None = decide from this mosaic.
        refine: run the refining step.

    Returns:
        ``(rgb, margin, masks)``: channel fields ``{0: R, 1: G, 2: B}``, their margin, the masks.
    """
    s = sites(pattern)
    r, b, gr, gb = s["r"], s["b"], s["gr"], s["gb"]
    M = pl.field
    at = pl.at

    def g_est(p, d, m):
        n = at(M, p, *_neg(d), m) + at(M, p, *d, m)
        f = at(M, p, *_scale(-2, d), m) + at(M, p, *_scale(2, d), m)
        return n.add_(at(M, p, 0, 0, m)).mul_(0.5).sub_(f, alpha=0.25)  # (n + 2 X) / 2 - f / 4, n = G sum

    gh = {p: (g_est(p, _H, 1), 1) for p in (r, b)}
    gv = {p: (g_est(p, _V, 1), 1) for p in (r, b)}
    if masks is None:
        masks = {}
        dsum = {}
        for name, d, e, g in (("h", _H, _V, gh), ("v", _V, _H, gv)):
            c = {p: (torch.sub(at(M, p, 0, 0, 1), g[p][0]), 1) for p in (r, b)}
            dd = {p: (torch.sub(at(c, p, 0, 0, 2), at(c, p, *_scale(2, d), 2)).abs_(), 2) for p in (r, b)}
            taps3 = ((0, 0), _scale(-2, d))
            taps1 = (_scale(-2, e), _scale(2, e), _add(_scale(-2, e), _scale(-2, d)), _add(_scale(2, e), _scale(-2, d)),
                     _add(_neg(e), _neg(d)), _add(e, _neg(d)))
            out = {}
            for p in (r, b):
                acc = torch.add(at(dd, p, *taps3[0], 3), at(dd, p, *taps3[1], 3)).mul_(3.0)
                for t in taps1:
                    acc.add_(at(dd, p, *t, 3))
                out[p] = acc
            dsum[name] = out
        for p in (r, b):
            masks[p] = (torch.ge(dsum["v"][p], dsum["h"][p], out=torch.empty_like(dsum["h"][p])), 3)

    def pick(p, m, h, v):
        """``mask ? h : v`` at phase ``p`` and margin ``m`` (linear in h and v)."""
        return v.add_(at(masks, p, 0, 0, m) * (h - v))

    # 1-2. green at red and blue along the decided direction
    green = {gr: (M[gr][0], 0), gb: (M[gb][0], 0)}
    for p in (r, b):
        green[p] = (pick(p, 3, at(gh, p, 0, 0, 3), at(gv, p, 0, 0, 3).clone()), 3)

    def red_blue_at_green(green, m_in):
        """Red and blue at the green phases from the colour differences ``X - G`` (margin m + 1)."""
        m = m_in + 1
        kr = {r: (torch.sub(at(M, r, 0, 0, m_in), at(green, r, 0, 0, m_in)), m_in)}
        kb = {b: (torch.sub(at(M, b, 0, 0, m_in), at(green, b, 0, 0, m_in)), m_in)}

        def mean2(k, p, d):
            return torch.add(at(k, p, *_neg(d), m), at(k, p, *d, m)).mul_(0.5)

        red = {gr: (mean2(kr, gr, _H).add_(at(M, gr, 0, 0, m)), m), gb: (mean2(kr, gb, _V).add_(at(M, gb, 0, 0, m)), m)}
        blue = {gb: (mean2(kb, gb, _H).add_(at(M, gb, 0, 0, m)), m), gr: (mean2(kb, gr, _V).add_(at(M, gr, 0, 0, m)), m)}
        return red, blue, kr, kb

    red, blue, kr, kb = red_blue_at_green(green, 3)
    # 3. red at blue and blue at red from R - B at the green neighbours along the direction
    rb = {p: (torch.sub(at(red, p, 0, 0, 4), at(blue, p, 0, 0, 4)), 4) for p in (gr, gb)}

    def dir_mean(k, p, m, n):
        """Mean of ``k`` over the two neighbours (``n = 2``) or the pixel and its two neighbours
        (``n = 3``) along the decided direction, at phase ``p``, margin ``m``."""
        h = torch.add(at(k, p, 0, -1, m), at(k, p, 0, 1, m))
        v = torch.add(at(k, p, -1, 0, m), at(k, p, 1, 0, m))
        out = pick(p, m, h, v)
        if n == 3:
            out.add_(at(k, p, 0, 0, m))
        return out.mul_(1.0 / n)

    red[b] = (dir_mean(rb, b, 5, 2).add_(at(M, b, 0, 0, 5)), 5)
    blue[r] = (torch.sub(at(M, r, 0, 0, 5), dir_mean(rb, r, 5, 2)), 5)
    red[r], blue[b] = (M[r][0], 0), (M[b][0], 0)
    if not refine:
        return {0: red, 1: green, 2: blue}, 5, masks
    # 4a. green at red/blue from the 3-tap mean of X - G along the direction
    xg_r = {r: kr[r], gr: (torch.sub(at(red, gr, 0, 0, 4), at(M, gr, 0, 0, 4)), 4),
            gb: (torch.sub(at(red, gb, 0, 0, 4), at(M, gb, 0, 0, 4)), 4)}
    xg_b = {b: kb[b], gr: (torch.sub(at(blue, gr, 0, 0, 4), at(M, gr, 0, 0, 4)), 4),
            gb: (torch.sub(at(blue, gb, 0, 0, 4), at(M, gb, 0, 0, 4)), 4)}
    green2 = {gr: green[gr], gb: green[gb],
              r: (torch.sub(at(M, r, 0, 0, 5), dir_mean(xg_r, r, 5, 3)), 5),
              b: (torch.sub(at(M, b, 0, 0, 5), dir_mean(xg_b, b, 5, 3)), 5)}
    # 4b. red/blue at green from the new green
    red2, blue2, _, _ = red_blue_at_green(green2, 5)
    # 4c. red at blue, blue at red from the 3-tap mean of R - B (old estimates at red/blue)
    rb2 = {gr: (torch.sub(at(red2, gr, 0, 0, 6), at(blue2, gr, 0, 0, 6)), 6),
           gb: (torch.sub(at(red2, gb, 0, 0, 6), at(blue2, gb, 0, 0, 6)), 6),
           b: (torch.sub(at(red, b, 0, 0, 5), at(M, b, 0, 0, 5)), 5),
           r: (torch.sub(at(M, r, 0, 0, 5), at(blue, r, 0, 0, 5)), 5)}
    red2[b] = (dir_mean(rb2, b, 7, 3).add_(at(M, b, 0, 0, 7)), 7)
    blue2[r] = (torch.sub(at(M, r, 0, 0, 7), dir_mean(rb2, r, 7, 3)), 7)
    red2[r], blue2[b] = (M[r][0], 0), (M[b][0], 0)
    return {0: red2, 1: green2, 2: blue2}, 7, masks


def menon_planes(mosaic: torch.Tensor, pattern: str, refine: bool = True) -> torch.Tensor:
    """Directional demosaic of ``(B, 1, H, W)`` mosaics sharing one CFA ``pattern`` ->
    ``(B, 3, H, W)`` (reflection-padded borders; differentiable through autograd)."""
    pl = Planes(mosaic, MENON_PAD)
    rgb, _, _ = menon_fields(pl, pattern, refine=refine)
    return pl.interleave(rgb, pl.margin)
