"""Fused per-pixel stage chains with hand-written backward passes (used by :class:`isp.ISP`).

Autograd records every elementwise op of a tone curve, keeps its inputs alive and runs one or
more full-image passes per op backward, plus a reduction per per-image parameter. The two
per-pixel chains of the pipeline are therefore evaluated here as single autograd nodes that keep
only their input: the backward pass recomputes the few intermediates it needs, applies the
chain rule in a handful of fused passes, and reduces each parameter's gradient with one dot
product per image. The results equal the plain stage functions up to float rounding (tested).

* :func:`white_balance_demosaic`: white balance on the mosaic, highlight clip, demosaic (any
  method of :data:`isp.stages.DEMOSAIC_METHODS`),
* :func:`exposure_tone`: exposure (``clip(x 2^ev)``) then highlights/shadows,
* :func:`encode_tone`: sRGB encoding then brightness and contrast.

Per-image parameters are ``(B, 1, 1, 1)`` (or ``(1, 1, 1, 1)``, 0-dim) tensors; None skips the
corresponding stage.
"""
from __future__ import annotations

import torch

from ..color import _srgb_encode_nonneg
from ._phase import Planes
from ._util import first_order_only, float_mask
from .demosaic import _demosaic_phase_planes, demosaic, demosaic_bilinear
from .white_balance import DEFAULT_HIGHLIGHT, cfa_rows, clip_level, white_balance

__all__ = ["white_balance_demosaic", "exposure_tone", "encode_tone", "saturate_fused"]


def _dot(a: torch.Tensor, b: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-image ``sum(a * b)`` summed to the shape of the parameter ``like`` (no temporary)."""
    n = a.shape[0]
    r = torch.bmm(a.reshape(n, 1, -1), b.reshape(n, -1, 1)).reshape(n, 1, 1, 1)
    return r.sum_to_size(like.shape)


def _sum(a: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return a.sum(dim=tuple(range(1, a.dim())), keepdim=True).sum_to_size(like.shape)


def _needs(ctx, i: int) -> bool:
    return bool(ctx.needs_input_grad[i])


# ---------------------------------------------------------------------------------------------
# white balance + clip + demosaic (the mosaic is data, the gains are parameters)


def _channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` x ``(B, C, H, W)`` -> ``(B, C)``: per-image, per-channel ``sum(a * b)``."""
    return torch.einsum("bchw,bchw->bc", a, b)  # bmm of (B C, 1, HW) x (B C, HW, 1) is ~8x slower on CPU


class _WhiteBalanceDemosaic(torch.autograd.Function):
    """Gradient with respect to the gains only.

    Bilinear demosaicing interpolates every channel from samples of that colour alone, so output
    channel ``c`` depends on gain ``g_c`` alone: ``D_c = demosaic_c(clip(g_c m))`` and
    ``dD_c / dg_c = demosaic_c(m [g_c m <= 1])``. That derivative image is made in the forward
    pass (without autograd, on the phase planes: ``D_c / g_c`` when no sample clipped, else one
    more demosaic), and the backward pass is one dot product per channel, instead of the
    adjoint demosaic, the sparse colour planes and the clip mask through autograd.
    """

    @staticmethod
    def forward(ctx, gains, mosaic, cfa_index, patterns):  # noqa: D102
        b, _, h, w = mosaic.shape
        g = cfa_rows(gains.to(mosaic.dtype), cfa_index, w)
        m = mosaic.reshape(b, h // 2, 2, w)
        prod = m * g
        clipped = bool((prod > 1.0).any())  # gains are positive and the mosaic is in [0, 1]
        wb = prod.clamp(0.0, 1.0) if clipped else prod.clamp_(0.0, 1.0)  # keep the product for the mask
        out = demosaic_bilinear(wb.reshape(b, 1, h, w), patterns)
        if clipped:  # torch.clamp's convention: the gradient passes on [0, 1], ends included
            inside = float_mask(wb, prod)
            deriv = demosaic_bilinear(inside.mul_(m).reshape(b, 1, h, w), patterns)
            ctx.save_for_backward(deriv, None)
        else:
            ctx.save_for_backward(out, gains)
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, grad):  # noqa: D102
        deriv, gains = ctx.saved_tensors
        gg = _channel_dot(grad, deriv)
        return (gg if gains is None else gg / gains), None, None, None


def _planes_demosaic(method: str, mosaic: torch.Tensor, pattern: str, masks=None):
    """Phase-plane demosaic of one CFA group without autograd; returns ``(rgb, masks)`` where
    ``masks`` are the method's decisions (None for the linear filters). Given ``masks`` (for a
    batch ``k`` times smaller, repeated), the same linear map is applied to ``mosaic``."""
    if method == "bilinear":
        return _demosaic_phase_planes(mosaic, pattern), None
    if method == "mhc":
        from .mhc import mhc_planes

        return mhc_planes(mosaic, pattern), None
    from .menon import MENON_PAD, menon_fields

    pl = Planes(mosaic, MENON_PAD)
    if masks is not None and next(iter(masks.values()))[0].shape[0] != mosaic.shape[0]:
        k = mosaic.shape[0] // next(iter(masks.values()))[0].shape[0]
        masks = {p: (t.repeat(k, 1, 1), m) for p, (t, m) in masks.items()}
    rgb, _, masks = menon_fields(pl, pattern, masks)
    return pl.interleave(rgb, pl.margin), masks


def _white_balance_clip(gains, mosaic, cfa_index, highlight):
    """White balance and highlight clip of the fused nodes' forward passes.

    Returns ``(m, inside, wb, level, from_level)``: the mosaic as ``(B, H/2, 2, W)`` row pairs, the
    0/1 mask of samples below the clip level, the white-balanced and clipped mosaic
    ``(B, 1, H, W)``, the per-image level and whether clipped samples follow ``min(g)`` (where that
    is the level; ends included, as ``torch.clamp``).
    """
    b, _, h, w = mosaic.shape
    level = clip_level(gains.to(mosaic.dtype), highlight)
    m = mosaic.reshape(b, h // 2, 2, w)
    prod = m * cfa_rows(gains.to(mosaic.dtype), cfa_index, w)
    lv = level.reshape(b, 1, 1, 1)
    inside = torch.le(prod, lv, out=torch.empty_like(prod))
    wb = torch.where(inside.bool(), prod, lv).reshape(b, 1, h, w)
    del prod
    from_level = (gains.detach().amin(dim=1) <= 1.0) & (inside.reshape(b, -1).amin(dim=1) < 1.0)
    if highlight == "channel":
        from_level = torch.zeros_like(from_level)
    return m, inside, wb, level, from_level


class _WhiteBalanceDemosaicLinear(torch.autograd.Function):
    """White balance + highlight clip + a demosaic that is linear given its decisions; gradient
    with respect to the gains only.

    With ``x = clip(g m, 0, L)``, ``L = min(1, min_c g_c)`` (``neutral``) or 1, and the
    demosaic's decisions frozen (they are piecewise constant), the output ``D(x)`` is linear in
    ``x = sum_c g_c m_c [inside] + L [clipped]``, so ``dD/dg_c = D(m_c [inside])`` plus
    ``D([clipped])`` for the gain that sets ``L`` when ``min_c g_c <= 1``. The red, blue and
    clipped tangent images are made in the forward pass by one batched call of the same linear
    map; green's follows from ``D = sum_c g_c T_c + L T_clip``. The backward pass is a dot
    product per tangent.
    """

    @staticmethod
    def forward(ctx, gains, mosaic, cfa_index, patterns, method, highlight):  # noqa: D102
        b, _, h, w = mosaic.shape
        m, inside, wb, level, from_level = _white_balance_clip(gains, mosaic, cfa_index, highlight)
        # tangents: m restricted to the unclipped red and blue sites, and the clipped indicator;
        # green's follows from linearity, D = g_R T_R + g_G T_G + g_B T_B + L T_clip
        site = torch.nn.functional.one_hot(cfa_index.to(mosaic.device), 3).to(mosaic.dtype).permute(0, 2, 1)  # (B, 3, 4)
        pos = torch.arange(4, device=mosaic.device).expand(b, 4)
        tangents = [m * inside * cfa_rows(site[:, c], pos, w) for c in (0, 2)]
        clipped = bool((inside.reshape(b, -1).amin(dim=1) < 1.0).any())
        if clipped:
            tangents.append(1.0 - inside)
        k = len(tangents)
        tang = torch.stack(tangents).reshape(k * b, 1, h, w)  # (k B, 1, H, W), tangent-major
        out = mosaic.new_empty(b, 3, h, w)
        deriv = mosaic.new_empty(k, b, 3, h, w)
        pats = [patterns[0]] * b if len(patterns) == 1 else list(patterns)
        for pat in sorted(set(pats)):
            idx = [i for i, p in enumerate(pats) if p == pat]
            o, masks = _planes_demosaic(method, wb[idx], pat)
            out[idx] = o
            sel = [t * b + i for t in range(k) for i in idx]
            deriv.view(k * b, 3, h, w)[sel] = _planes_demosaic(method, tang[sel], pat, masks)[0]
        ctx.save_for_backward(out, deriv, gains.detach().to(mosaic.dtype), level, from_level.to(mosaic.dtype))
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, grad):  # noqa: D102
        out, deriv, gains, level, from_level = ctx.saved_tensors
        d_out = torch.einsum("bchw,bchw->b", grad, out)
        dots = torch.einsum("bchw,kbchw->bk", grad, deriv)  # (B, k): red, blue[, clipped]
        d_clip = dots[:, 2] if deriv.shape[0] == 3 else torch.zeros_like(d_out)
        g_r, g_b = dots[:, 0], dots[:, 1]
        g_g = (d_out - gains[:, 0] * g_r - gains[:, 2] * g_b - level * d_clip) / gains[:, 1]
        gg = torch.stack([g_r, g_g, g_b], dim=1)
        gg = gg + torch.nn.functional.one_hot(gains.argmin(dim=1), 3).to(gg.dtype) * (from_level * d_clip)[:, None]
        return gg, None, None, None, None, None


class _WhiteBalanceMenon(torch.autograd.Function):
    """White balance + highlight clip + :mod:`isp.stages.menon`; gradient with respect to the
    gains only, through the method's adjoint.

    As in :class:`_WhiteBalanceDemosaicLinear`, with the decisions frozen the output is linear in
    ``x = sum_c g_c m_c [inside] + L [clipped]``, so ``dL/dg_c = <D^T grad, m_c [inside]>`` (plus
    ``<D^T grad, [clipped]>`` for the gain that sets ``L``). Instead of two or three tangent
    images made by the forward pass, the backward pass runs the adjoint once
    (:func:`isp.stages.menon.menon_adjoint`, about the cost of one demosaic) and takes the dot
    products on the padded phase planes (reflection keeps every sample's CFA colour).
    """

    @staticmethod
    def forward(ctx, gains, mosaic, cfa_index, patterns, highlight):  # noqa: D102
        b, _, h, w = mosaic.shape
        m, inside, wb, level, from_level = _white_balance_clip(gains, mosaic, cfa_index, highlight)
        out = mosaic.new_empty(b, 3, h, w)
        pats = [patterns[0]] * b if len(patterns) == 1 else list(patterns)
        groups = []
        for pat in sorted(set(pats)):
            idx = [i for i, p in enumerate(pats) if p == pat]
            o, masks = _planes_demosaic("menon", wb[idx], pat)
            out[idx] = o
            groups.append((pat, idx, masks))
        ctx.groups = groups
        ctx.save_for_backward(mosaic, inside.reshape(b, 1, h, w), gains.detach().to(mosaic.dtype),
                              from_level.to(mosaic.dtype))
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, grad):  # noqa: D102
        from .menon import MENON_PAD, menon_adjoint

        mosaic, inside, gains, from_level = ctx.saved_tensors
        b = mosaic.shape[0]
        gg = grad.new_zeros(b, 3)
        d_clip = grad.new_zeros(b)
        for pat, idx, masks in ctx.groups:
            whole = idx == list(range(b))  # one CFA pattern: no gathered copies
            adj = menon_adjoint(grad if whole else grad[idx], pat, masks)
            ins = inside if whole else inside[idx]
            tang = Planes((mosaic if whole else mosaic[idx]) * ins, MENON_PAD).field
            outside = Planes(1.0 - ins, MENON_PAD).field if bool((ins < 1.0).any()) else None
            t = torch.tensor(idx, device=grad.device)
            for (py, px), a in adj.items():
                c = "RGB".index(pat[2 * py + px])
                gg[t, c] += torch.einsum("bhw,bhw->b", a, tang[(py, px)][0])
                if outside is not None:
                    d_clip[t] += torch.einsum("bhw,bhw->b", a, outside[(py, px)][0])
        gg = gg + torch.nn.functional.one_hot(gains.argmin(dim=1), 3).to(gg.dtype) * (from_level * d_clip)[:, None]
        return gg, None, None, None, None


def white_balance_demosaic(mosaic: torch.Tensor, gains: torch.Tensor, cfa_index: torch.Tensor, patterns,
                           method: str = "bilinear", highlight: str = DEFAULT_HIGHLIGHT) -> torch.Tensor:
    """``demosaic(white_balance(mosaic, gains, cfa_index, highlight), patterns, method)``, as one
    autograd node when only the gains need a gradient (the mosaic is data).

    Args:
        mosaic: ``(B, 1, H, W)`` in ``[0, 1]``, H and W even.
        gains: ``(B, 3)`` positive R/G/B gains.
        cfa_index: ``(B, 4)`` channel of each 2x2 CFA position.
        patterns: CFA string or B strings.
        method: a key of :data:`isp.stages.DEMOSAIC_METHODS`.
        highlight: a key of :data:`isp.stages.HIGHLIGHT_MODES`.

    Returns:
        ``(B, 3, H, W)``.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not (torch.is_grad_enabled() and (gains.requires_grad or mosaic.requires_grad)):
        with torch.no_grad():
            if method == "bilinear":
                return demosaic_bilinear(white_balance(mosaic, gains, cfa_index, highlight), patterns)
            wb = white_balance(mosaic, gains, cfa_index, highlight)
            return demosaic(wb, patterns, method)
    if mosaic.requires_grad:  # the plain stages through autograd
        return demosaic(white_balance(mosaic, gains, cfa_index, highlight), patterns, method)
    constant_level = highlight == "channel" or bool((gains.detach().amin(dim=1) > 1.0).all())
    if method == "bilinear" and constant_level:
        return _WhiteBalanceDemosaic.apply(gains, mosaic, cfa_index, patterns)
    if method == "menon":
        return _WhiteBalanceMenon.apply(gains, mosaic, cfa_index, patterns, highlight)
    return _WhiteBalanceDemosaicLinear.apply(gains, mosaic, cfa_index, patterns, method, highlight)


# ---------------------------------------------------------------------------------------------
# exposure + highlights/shadows (linear values)


def _exposure_tone_forward(x, k, h, s, overwrite=False):
    if k is not None:
        x = (x.mul_(k) if overwrite else x * k).clamp_(0.0, 1.0)
    if h is not None:
        # x + x(1-x)(s + (h-s)x) = x ((1 + s) + x ((h - 2s) + x (s - h))), Horner's form in place
        # on one fresh tensor (addcmul with a broadcast input is slow on CPU)
        x = torch.mul(x, s - h).add_(h - 2.0 * s).mul_(x).add_(1.0 + s).mul_(x)
    return x


class _ExposureTone(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k, h, s):  # noqa: D102
        ctx.save_for_backward(x, k, h, s)
        return _exposure_tone_forward(x, k, h, s)

    @staticmethod
    @first_order_only
    def backward(ctx, g):  # noqa: D102
        x, k, h, s = ctx.saved_tensors
        gk = gh = gs = None
        fresh = False  # g is ours to modify in place
        if k is not None:
            xk = x * k
            x1 = xk.clamp(0.0, 1.0)
            inside = float_mask(x1, xk)  # torch.clamp's convention: gradient passes on [0, 1], ends included
            del xk
        else:
            x1 = x
        if h is not None:
            if _needs(ctx, 2) or _needs(ctx, 3):
                gq = torch.addcmul(x1, x1, x1, value=-1.0).mul_(g)  # g x1 (1 - x1)
                g_all = _sum(gq, s)  # d/ds x(1-x)^2 + d/dh x^2(1-x) summed: x(1-x)
                gh = _dot(gq, x1, h)  # sum g x^2 (1 - x)
                gs = g_all - gh.sum_to_size(s.shape)  # sum g x (1 - x)^2
                del gq
                if not _needs(ctx, 2):
                    gh = None
                if not _needs(ctx, 3):
                    gs = None
            # d/dx [x + h x^2 (1-x) + s x (1-x)^2] = (1 + s) + x (2h - 4s + 3 (s - h) x), built in
            # place (addcmul with a broadcast input is slow on CPU)
            t = torch.mul(x1, 3.0 * (s - h)).add_(2.0 * h - 4.0 * s).mul_(x1).add_(1.0 + s)
            g = t.mul_(g)
            fresh = True
            del t
        if k is not None:
            g = g.mul_(inside) if fresh else g * inside
            if _needs(ctx, 1):
                gk = _dot(g, x, k)
            g = g.mul_(k) if _needs(ctx, 0) else None
        elif not _needs(ctx, 0):
            g = None
        return g, gk, gh, gs


def exposure_tone(x: torch.Tensor, gain=None, highlights=None, shadows=None, *, overwrite: bool = False) -> torch.Tensor:
    """``clip(x * gain, 0, 1)`` followed by the highlights/shadows curve, as one autograd node.

    Equals ``adjust_highlights_shadows(adjust_exposure(x, log2(gain)), highlights, shadows)``.

    Args:
        x: ``(B, C, H, W)`` linear values in ``[0, 1]``.
        gain: ``(B, 1, 1, 1)`` or 0-dim ``2**ev``, or None (no exposure change).
        highlights: ``(B, 1, 1, 1)`` or 0-dim in ``[-1, 1]``; None skips the curve (then
            ``shadows`` must be None too).
        shadows: like ``highlights``.
        overwrite: ``x`` may be overwritten (the caller owns it; used only without autograd).

    Returns:
        ``(B, C, H, W)``.
    """
    if (highlights is None) != (shadows is None):
        raise ValueError("highlights and shadows are given together or not at all")
    if gain is None and highlights is None:
        return x
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, gain, highlights, shadows)):
        return _ExposureTone.apply(x, gain, highlights, shadows)
    return _exposure_tone_forward(x, gain, highlights, shadows, overwrite)


# ---------------------------------------------------------------------------------------------
# sRGB encoding + brightness + contrast (encoded values)


def _encode_tone_forward(x, a, c, overwrite=False):
    """Returns the output, the encoded values and the brightness curve's output."""
    e = _srgb_encode_nonneg(x, overwrite)  # fresh tensor
    b = e
    if a is not None:  # e ((1 + a) - a e)
        b = torch.mul(e, -a).add_(1.0 + a).mul_(e)
    out = b
    if c is not None:  # b ((1 - c) + b (3c - 2c b))
        out = torch.mul(b, -2.0 * c).add_(3.0 * c).mul_(b).add_(1.0 - c).mul_(b)
    return out, e, b


class _EncodeTone(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, a, c):  # noqa: D102
        out, e, b = _encode_tone_forward(x, a, c)
        # the encoded values (and the brightness curve's output) are kept: recomputing the
        # power costs more than the memory
        ctx.save_for_backward(x, a, c, e, b if c is not None and a is not None else None)
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, g):  # noqa: D102
        x, a, c, e, b_saved = ctx.saved_tensors
        ga = gc = None
        with torch.no_grad():
            # Few fresh tensors and no addcmul with a broadcast input (slow on CPU): the factors
            # are built in place on tensors made here.
            b = e if a is None else b_saved
            fresh = False  # g is ours to modify in place
            if c is not None:
                bump = torch.addcmul(b, b, b, value=-1.0)  # b (1 - b)
                if _needs(ctx, 2):
                    gc = _dot(g, torch.mul(b, 2.0).sub_(1.0).mul_(bump), c)  # d/dc: b (1 - b)(2b - 1)
                g = g * bump.mul_(6.0 * c).add_(1.0 - c)  # d/db: (1 - c) + 6c b (1 - b)
                fresh = True
                del bump
            if a is not None:
                if _needs(ctx, 1):
                    ga = _dot(g, torch.addcmul(e, e, e, value=-1.0), a)  # d/da: e (1 - e)
                de = torch.mul(e, -2.0 * a).add_(1.0 + a)  # d/de: 1 + a - 2a e
                g = g.mul_(de) if fresh else g * de
                fresh = True
                del de
            if not _needs(ctx, 0):
                return None, ga, gc
            # encoding slope: 12.92 on the linear branch, (e + 0.055) / (2.4 x) on the power branch
            xc = x.clamp_min(0.0031308)
            power = float_mask(xc, x)  # 1 on the power branch (x >= threshold), 0 on the linear one
            slope = (e + 0.055).div_(xc.mul_(2.4))
            # 12.92 + (slope - 12.92) * power: a 0/1 mask is several times faster on CPU than
            # torch.where with a scalar
            slope.sub_(12.92).mul_(power).add_(12.92)
            del xc, power
            gx = g.mul_(slope) if fresh else g * slope
        return gx, ga, gc


def encode_tone(x: torch.Tensor, brightness=None, contrast=None, *, overwrite: bool = False) -> torch.Tensor:
    """sRGB encoding, then the brightness and contrast curves, as one autograd node.

    Equals ``adjust_contrast(adjust_brightness(srgb_encode(x), brightness), contrast)`` for
    ``x >= 0``.

    Args:
        x: ``(B, C, H, W)`` linear values, ``>= 0`` (the pipeline's clipped values).
        brightness: ``(B, 1, 1, 1)`` or 0-dim in ``[-1, 1]``, or None (curve skipped).
        contrast: likewise.
        overwrite: ``x`` may be overwritten (the caller owns it; used only without autograd).

    Returns:
        ``(B, C, H, W)`` encoded values.
    """
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, brightness, contrast)):
        return _EncodeTone.apply(x, brightness, contrast)
    return _encode_tone_forward(x, brightness, contrast, overwrite)[0]


# ---------------------------------------------------------------------------------------------
# saturation + vibrance (linear sRGB, across channels)


def _saturate_forward(x, fa, fb, w, eps, overwrite=False):
    """``clip(f x + (1 - f) Y)`` with ``f = fa - fb sat``; returns the output and intermediates."""
    y = (x[:, 0:1] * w[0]).add_(x[:, 1:2], alpha=w[1]).add_(x[:, 2:3], alpha=w[2])
    mx = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    sat = (mx - mn).div_(mx + eps)
    f = torch.mul(sat, -fb).add_(fa)
    # f x + (1 - f) Y: the one-channel term is added per channel in place (addcmul broadcasting
    # one channel over three is slow on CPU)
    base = torch.addcmul(y, f, y, value=-1.0)
    out = x.mul_(f) if overwrite else x * f
    for ch in range(x.shape[1]):
        out[:, ch : ch + 1].add_(base)
    return out, y, mx, mn, sat, f


class _Saturate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fa, fb):  # noqa: D102
        pre, y, mx, mn, sat, f = _saturate_forward(x, fa, fb, _LUMA, _EPS)
        out = pre.clamp(0.0, 1.0)
        # clip's gradient mask (ends included) and the single-channel intermediates are kept:
        # recomputing them costs more than the memory
        ctx.save_for_backward(x, fa, fb, float_mask(out, pre), y, mx, mn, sat, f)
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, g):  # noqa: D102
        x, fa, fb, inside, y, mx, mn, sat, f = ctx.saved_tensors
        w = _LUMA
        gp = g * inside
        gsum = gp.sum(dim=1, keepdim=True)  # sum_c gp_c
        # dL/df = sum_c gp_c (x_c - Y)
        df = (gp * x).sum(dim=1, keepdim=True).sub_(y * gsum)
        gfa = _sum(df, fa) if _needs(ctx, 1) else None
        gfb = -_dot(df, sat, fb) if _needs(ctx, 2) else None
        gx = None
        if _needs(ctx, 0):
            # direct: f gp_c + w_c (1 - f) sum_c gp_c
            # (one-channel terms are added per channel in place: addcmul broadcasting a
            # one-channel tensor over the channels is slow on CPU)
            t = torch.addcmul(gsum, f, gsum, value=-1.0)
            gx = gp.mul_(f)
            for ch in range(3):
                gx[:, ch : ch + 1].add_(t, alpha=w[ch])
            # through sat = (mx - mn) / (mx + eps), f = fa - fb sat; max/min as torch.amax/amin
            # (gradient shared evenly between tied channels)
            dsat = df.mul_(-fb)
            inv = (mx + _EPS).reciprocal_()
            gmn = dsat.mul_(inv)  # d sat / d mn = -1 / den, sign applied below
            gmx = (mn + _EPS).mul_(inv).mul_(gmn)  # d sat / d mx = (mn + eps) / den^2
            for m, gm, sign in ((float_mask(x, mx), gmx, 1.0), (float_mask(x, mn), gmn, -1.0)):
                gm.div_(m.sum(dim=1, keepdim=True))
                gx.add_(m.mul_(gm), alpha=sign)
        return gx, gfa, gfb


_EPS = 1e-4


def _luma_weights():
    from ..color import LUMA_WEIGHTS

    return tuple(float(v) for v in LUMA_WEIGHTS)


_LUMA = _luma_weights()


def saturate_fused(x: torch.Tensor, saturation, vibrance, *, overwrite: bool = False) -> torch.Tensor:
    """:func:`isp.stages.saturate` as one autograd node (same arguments and result up to float
    rounding): ``clip(f x + (1 - f) Y)`` with ``f = (1 + s)(1 + v (1 - sat))``.

    Args:
        x: ``(B, 3, H, W)`` linear sRGB in ``[0, 1]``.
        saturation: ``(B, 1, 1, 1)`` or 0-dim in ``[-1, 1]``.
        vibrance: ``(B, 1, 1, 1)`` or 0-dim in ``[-1, 1]``.
        overwrite: ``x`` may be overwritten (the caller owns it; used only without autograd).

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``.
    """
    saturation = torch.as_tensor(saturation, dtype=x.dtype, device=x.device)
    vibrance = torch.as_tensor(vibrance, dtype=x.dtype, device=x.device)
    s1 = 1.0 + saturation
    fa, fb = s1 * (1.0 + vibrance), s1 * vibrance  # f = fa - fb sat
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, fa, fb)):
        return _Saturate.apply(x, fa, fb)
    return _saturate_forward(x, fa, fb, _LUMA, _EPS, overwrite)[0].clamp_(0.0, 1.0)
