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
        return v.lerp_(h, at(masks, p, 0, 0, m))  # v + mask (h - v) in one pass; exact at mask 0 and 1

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


# ---------------------------------------------------------------------------------------------
# The adjoint: with the decisions frozen the method is a linear map of the mosaic's phase planes.
# Its steps are recorded below as a program of "valid" stencils, ``dst = sum_t w_t [mask] src_t``
# (the same steps as :func:`menon_fields`, which stays the forward pass), and the adjoint runs
# the program backwards, adding each term's share into a slice of its source's gradient.


class _Program:
    """A linear program on phase-plane fields; nodes are integers, fields dicts phase -> node."""

    def __init__(self, hp: int, wp: int):
        self.hp, self.wp = hp, wp
        self.margin: dict[int, int] = {}
        self.ops: list = []  # (dst, margin, [((src, y0, x0), w, mask)]), mask None / "h" / "v"

    def node(self, m: int) -> int:
        k = len(self.margin)
        self.margin[k] = m
        return k

    def at(self, field: dict, p, dy: int, dx: int, m: int):
        py, px = p
        src = field[((py + dy) % 2, (px + dx) % 2)]
        y0 = m - self.margin[src] + (py + dy) // 2
        x0 = m - self.margin[src] + (px + dx) // 2
        if y0 < 0 or x0 < 0:
            raise ValueError("offset reaches outside the source field")
        return (src, y0, x0)

    def lin(self, m: int, terms) -> int:
        dst = self.node(m)
        self.ops.append((dst, m, list(terms)))
        return dst


def _menon_program(hp: int, wp: int, pattern: str):
    """The linear part of :func:`menon_fields` (refined, decisions given) as a :class:`_Program`;
    returns ``(program, leaves, outputs, mask_phase)``: the mosaic's nodes per phase, the output
    nodes ``{channel: {phase: node}}`` (read at margin 7) and, per op, the phase whose decision
    mask its masked terms use."""
    s = sites(pattern)
    r, b, gr, gb = s["r"], s["b"], s["gr"], s["gb"]
    pr = _Program(hp, wp)
    M = {(py, px): pr.node(0) for py in range(2) for px in range(2)}
    at = pr.at
    phase_of: dict[int, tuple] = {}

    def lin(p, m, terms):
        k = pr.lin(m, terms)
        phase_of[k] = p
        return k

    def g_est(p, d, m):
        return lin(p, m, [(at(M, p, *_neg(d), m), 0.5, None), (at(M, p, *d, m), 0.5, None), (at(M, p, 0, 0, m), 0.5, None),
                          (at(M, p, *_scale(-2, d), m), -0.25, None), (at(M, p, *_scale(2, d), m), -0.25, None)])

    gh = {p: g_est(p, _H, 1) for p in (r, b)}
    gv = {p: g_est(p, _V, 1) for p in (r, b)}
    green = {gr: M[gr], gb: M[gb]}
    for p in (r, b):
        green[p] = lin(p, 3, [(at(gh, p, 0, 0, 3), 1.0, "h"), (at(gv, p, 0, 0, 3), 1.0, "v")])

    def red_blue_at_green(green, m_in):
        m = m_in + 1
        kr = {r: lin(r, m_in, [(at(M, r, 0, 0, m_in), 1.0, None), (at(green, r, 0, 0, m_in), -1.0, None)])}
        kb = {b: lin(b, m_in, [(at(M, b, 0, 0, m_in), 1.0, None), (at(green, b, 0, 0, m_in), -1.0, None)])}

        def mean2(k, p, d):
            return [(at(k, p, *_neg(d), m), 0.5, None), (at(k, p, *d, m), 0.5, None), (at(M, p, 0, 0, m), 1.0, None)]

        red = {gr: lin(gr, m, mean2(kr, gr, _H)), gb: lin(gb, m, mean2(kr, gb, _V))}
        blue = {gb: lin(gb, m, mean2(kb, gb, _H)), gr: lin(gr, m, mean2(kb, gr, _V))}
        return red, blue, kr, kb

    def diff(p, m, f1, f2):
        return lin(p, m, [(at(f1, p, 0, 0, m), 1.0, None), (at(f2, p, 0, 0, m), -1.0, None)])

    def dir_mean(k, p, m, n, sign):
        t = [(at(k, p, 0, -1, m), sign / n, "h"), (at(k, p, 0, 1, m), sign / n, "h"),
             (at(k, p, -1, 0, m), sign / n, "v"), (at(k, p, 1, 0, m), sign / n, "v")]
        if n == 3:
            t.append((at(k, p, 0, 0, m), sign / n, None))
        return t

    red, blue, kr, kb = red_blue_at_green(green, 3)
    rb = {p: diff(p, 4, red, blue) for p in (gr, gb)}
    red[b] = lin(b, 5, dir_mean(rb, b, 5, 2, 1.0) + [(at(M, b, 0, 0, 5), 1.0, None)])
    blue[r] = lin(r, 5, [(at(M, r, 0, 0, 5), 1.0, None)] + dir_mean(rb, r, 5, 2, -1.0))
    red[r], blue[b] = M[r], M[b]
    xg_r = {r: kr[r], gr: diff(gr, 4, red, M), gb: diff(gb, 4, red, M)}
    xg_b = {b: kb[b], gr: diff(gr, 4, blue, M), gb: diff(gb, 4, blue, M)}
    green2 = {gr: green[gr], gb: green[gb],
              r: lin(r, 5, [(at(M, r, 0, 0, 5), 1.0, None)] + dir_mean(xg_r, r, 5, 3, -1.0)),
              b: lin(b, 5, [(at(M, b, 0, 0, 5), 1.0, None)] + dir_mean(xg_b, b, 5, 3, -1.0))}
    red2, blue2, _, _ = red_blue_at_green(green2, 5)
    rb2 = {gr: diff(gr, 6, red2, blue2), gb: diff(gb, 6, red2, blue2), b: diff(b, 5, red, M), r: diff(r, 5, M, blue)}
    red2[b] = lin(b, 7, dir_mean(rb2, b, 7, 3, 1.0) + [(at(M, b, 0, 0, 7), 1.0, None)])
    blue2[r] = lin(r, 7, [(at(M, r, 0, 0, 7), 1.0, None)] + dir_mean(rb2, r, 7, 3, -1.0))
    red2[r], blue2[b] = M[r], M[b]
    return pr, M, {0: red2, 1: green2, 2: blue2}, phase_of


def menon_adjoint(grad: torch.Tensor, pattern: str, masks: dict, pad: int = MENON_PAD) -> dict:
    """Adjoint of the refined method with frozen decisions: ``grad`` ``(B, 3, H, W)`` with respect
    to the output -> the gradient with respect to the padded mosaic's phase planes,
    ``{phase: (B, hp, wp)}`` (the planes of :class:`Planes` of the same mosaic and ``pad``).

    ``masks`` are the decisions :func:`menon_fields` returned for this mosaic.
    """
    b, _, h, w = grad.shape
    hp, wp = (h + 2 * pad) // 2, (w + 2 * pad) // 2
    pr, leaves, outputs, phase_of = _menon_program(hp, wp, pattern)
    out_m = pad // 2
    grads: dict[int, torch.Tensor] = {}

    def acc(src, y0, x0, m, g, alpha):
        mm = pr.margin[src]
        buf = grads.get(src)
        full = (y0 == 0 and x0 == 0 and mm == m)
        if buf is None:
            if full:
                grads[src] = g * alpha if alpha != 1.0 else g.clone()
                return
            buf = grads[src] = g.new_zeros(b, hp - 2 * mm, wp - 2 * mm)
        buf[:, y0 : y0 + hp - 2 * m, x0 : x0 + wp - 2 * m].add_(g, alpha=alpha)

    for ch, field in outputs.items():  # the interleave's adjoint: the output's phase planes
        for (py, px), node in field.items():
            src, y0, x0 = pr.at(field, (py, px), 0, 0, out_m)
            acc(src, y0, x0, out_m, grad[:, ch, py::2, px::2], 1.0)
    for dst, m, terms in reversed(pr.ops):
        g = grads.pop(dst, None)
        if g is None:
            continue
        gm = gv = None
        if any(t[2] is not None for t in terms):
            mt, mm = masks[phase_of[dst]]
            gm = g * mt[:, m - mm : m - mm + hp - 2 * m, m - mm : m - mm + wp - 2 * m]
            gv = g - gm
        for (src, y0, x0), wgt, mk in terms:
            acc(src, y0, x0, m, g if mk is None else (gm if mk == "h" else gv), wgt)
    zero = grad.new_zeros(b, hp, wp)
    return {p: grads.get(node, zero) for p, node in leaves.items()}
