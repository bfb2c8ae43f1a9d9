"""Denoising (luma/chroma low-pass blending) and sharpening (unsharp mask), separable filters.

The low-pass of both stages is a binomial filter (``[1 4 6 4 1] / 16`` in each direction for
sigma = 1 px): the discrete kernel whose variance is exactly ``sigma**2``, computed as repeated
sums of neighbouring pixels, which costs about half the passes of a truncated Gaussian.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ._util import clamp01, first_order_only, float_mask, per_image, write_pairs
from ..color import LUMA_WEIGHTS
from .adjust import luminance, rb_chroma


def _kernel(sigma: float) -> tuple[float, ...]:
    """Normalised Gaussian taps ``k[0..r]`` (centre first) with radius ``r = ceil(3 sigma)``."""
    r = max(1, int(math.ceil(3.0 * sigma)))
    k = [math.exp(-0.5 * (t / sigma) ** 2) for t in range(r + 1)]
    total = k[0] + 2.0 * sum(k[1:])
    return tuple(v / total for v in k)


def _filter_axis(x: torch.Tensor, dim: int, k: tuple[float, ...]) -> torch.Tensor:
    """Symmetric 1-D filter along ``dim`` of a tensor padded by ``r = len(k) - 1`` (shifted slices)."""
    r = len(k) - 1
    n = x.shape[dim] - 2 * r
    out = x.narrow(dim, r, n) * k[0]
    for i in range(1, r + 1):  # in place on a fresh tensor: no temporary (faster than adding the pair first)
        out.add_(x.narrow(dim, r - i, n), alpha=k[i]).add_(x.narrow(dim, r + i, n), alpha=k[i])
    return out


class _SymmetricFilter(torch.autograd.Function):
    """A symmetric 1-D filter in its "valid" form, ``filt(x, dim)``, which shortens ``dim`` by
    ``2 * r``, with its adjoint as backward: the same filter applied to the gradient zero-padded
    by ``2 * r`` on both sides, which costs as much as the forward pass.

    Autograd through the shifted slices of the filters would allocate and zero a full-size
    gradient per tap.
    """

    @staticmethod
    def forward(ctx, x, filt, width, dim):  # noqa: D102
        ctx.filt, ctx.width, ctx.dim = filt, width, dim
        return filt(x, dim)

    @staticmethod
    @first_order_only
    def backward(ctx, grad):  # noqa: D102
        w = ctx.width
        pad = (w, w, 0, 0) if ctx.dim == -1 else (0, 0, w, w)
        return ctx.filt(F.pad(grad, pad), ctx.dim), None, None, None


class _ReflectPad(torch.autograd.Function):
    """Reflection padding by ``r`` along ``dim`` (-1 or -2) whose backward is a copy of the
    centre plus ``2 r`` folded rows/columns (``reflection_pad2d_backward`` zero-fills and
    scatters the whole gradient, several times slower)."""

    @staticmethod
    def forward(ctx, x, r, dim):  # noqa: D102
        ctx.r, ctx.dim = r, dim
        return F.pad(x, (r, r, 0, 0) if dim == -1 else (0, 0, r, r), mode="reflect")

    @staticmethod
    @first_order_only
    def backward(ctx, grad):  # noqa: D102
        return _reflect_fold(grad, ctx.r, ctx.dim), None, None


def _reflect_fold(grad: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Adjoint of reflection padding by ``r`` along ``dim``."""
    n = grad.shape[dim] - 2 * r
    out = grad.narrow(dim, r, n).clone()
    for i in range(1, r + 1):  # padded index r - i holds input i; r + n - 1 + i holds n - 1 - i
        out.narrow(dim, i, 1).add_(grad.narrow(dim, r - i, 1))
        out.narrow(dim, n - 1 - i, 1).add_(grad.narrow(dim, r + n - 1 + i, 1))
    return out


def _pad_axis(x: torch.Tensor, r: int, dim: int, mode: str) -> torch.Tensor:
    if mode == "reflect" and torch.is_grad_enabled() and x.requires_grad:
        return _ReflectPad.apply(x, r, dim)
    return F.pad(x, (r, r, 0, 0) if dim == -1 else (0, 0, r, r), mode=mode)


def _symmetric_filter(x: torch.Tensor, filt, width: int, dim: int) -> torch.Tensor:
    """``filt(x, dim)``, a symmetric valid filter shortening ``dim`` by ``2 * width``, through
    :class:`_SymmetricFilter` when a gradient is recorded."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _SymmetricFilter.apply(x, filt, width, dim)
    return filt(x, dim=dim)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (radius ``ceil(3 sigma)``) with reflection padding.

    Written as shifted slices rather than a convolution (faster on CPU for these small kernels).
    Images whose side is not larger than the radius are padded by replication instead.

    Args:
        x: ``(B, C, H, W)``.
        sigma: standard deviation in pixels (> 0).

    Returns:
        ``(B, C, H, W)``.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    k = _kernel(float(sigma))
    r = len(k) - 1
    mode = "replicate" if min(x.shape[-2:]) <= r else "reflect"
    filt = functools.partial(_filter_axis, k=k)
    y = _symmetric_filter(_pad_axis(x, r, -1, mode), filt, 2 * r, -1)
    return _symmetric_filter(_pad_axis(y, r, -2, mode), filt, 2 * r, -2)


def _pair_sums(x: torch.Tensor, dim: int, steps: int) -> torch.Tensor:
    """``steps`` times ``x[i] + x[i + 1]`` along ``dim``: the unnormalised binomial filter of
    ``steps + 1`` taps, valid part (the result is ``steps`` shorter)."""
    for _ in range(steps):
        n = x.shape[dim] - 1
        x = x.narrow(dim, 0, n) + x.narrow(dim, 1, n)
    return x


def _binomial_steps(sigma: float) -> int | None:
    """Number of pair-sum passes whose binomial kernel has standard deviation ``sigma``
    (variance ``steps / 4``), when that is an even number up to 8; else None."""
    v = 4.0 * float(sigma) ** 2
    steps = round(v)
    if abs(v - steps) < 1e-9 and steps in (2, 4, 6, 8):
        return steps
    return None


def lowpass_radius(sigma: float) -> int:
    """Pixels of context that :func:`lowpass` of ``sigma`` reads on each side."""
    steps = _binomial_steps(sigma)
    return len(_kernel(float(sigma))) - 1 if steps is None else steps // 2


def binomial_blur(x: torch.Tensor, steps: int = 4) -> torch.Tensor:
    """Separable binomial low-pass with reflection padding.

    The 1-D kernel is row ``steps`` of Pascal's triangle divided by ``2**steps`` (``steps = 4``:
    ``[1 4 6 4 1] / 16``), standard deviation ``sqrt(steps) / 2`` px, radius ``steps / 2``.
    Images whose side is not larger than the radius are padded by replication instead.

    Args:
        x: ``(B, C, H, W)``.
        steps: even number of pair sums, 2 to 8.

    Returns:
        ``(B, C, H, W)``.
    """
    if steps not in (2, 4, 6, 8):
        raise ValueError(f"steps must be 2, 4, 6 or 8, got {steps}")
    r = steps // 2
    mode = "replicate" if min(x.shape[-2:]) <= r else "reflect"
    grad = torch.is_grad_enabled() and x.requires_grad
    filt = functools.partial(_pair_sums, steps=steps)
    y = _symmetric_filter(_pad_axis(x, r, -1, mode), filt, steps, -1)
    y = _symmetric_filter(_pad_axis(y, r, -2, mode), filt, steps, -2)
    scale = 0.25**steps
    return y * scale if grad else y.mul_(scale)


def lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The stages' low-pass of standard deviation ``sigma`` px: :func:`binomial_blur` where a
    binomial kernel has exactly that deviation (sigma = 0.71, 1, 1.22, 1.41), otherwise
    :func:`gaussian_blur`."""
    steps = _binomial_steps(sigma)
    return gaussian_blur(x, sigma) if steps is None else binomial_blur(x, steps)


def half_pool(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling of ``(..., H, W)`` with even H, W (the result of ``F.avg_pool2d(x, 2)``).

    Written as sums of strided slices, rows first (contiguous inner loops): several times faster
    on CPU than ``avg_pool2d``'s general kernel.
    """
    rows = x[..., 0::2, :] + x[..., 1::2, :]
    return (rows[..., 0::2] + rows[..., 1::2]).mul_(0.25)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """2x bilinear upsampling of ``(B, C, H, W)`` with half-pixel centres and replicated edges
    (the result of ``F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)``).

    Separable: along each axis ``out[2i] = 0.75 s[i] + 0.25 s[i-1]`` and ``out[2i+1] = 0.75 s[i]
    + 0.25 s[i+1]``, written into interleaved views as ``s + s_neighbour / 3`` with the
    ``0.75**2`` of both axes applied once at the end.
    """
    b, c, h, w = x.shape
    p = F.pad(x, (1, 1, 0, 0), mode="replicate")
    t = x.new_empty(b, c, h, w, 2)
    torch.add(p[..., 1:-1], p[..., :-2], alpha=1.0 / 3.0, out=t[..., 0])
    torch.add(p[..., 1:-1], p[..., 2:], alpha=1.0 / 3.0, out=t[..., 1])
    p = F.pad(t.view(b, c, h, 2 * w), (0, 0, 1, 1), mode="replicate")
    out = x.new_empty(b, c, h, 2, 2 * w)
    torch.add(p[..., 1:-1, :], p[..., :-2, :], alpha=1.0 / 3.0, out=out[..., 0, :])
    torch.add(p[..., 1:-1, :], p[..., 2:, :], alpha=1.0 / 3.0, out=out[..., 1, :])
    return out.view(b, c, 2 * h, 2 * w).mul_(0.5625)


class _HalfPool(torch.autograd.Function):
    """:func:`half_pool`; backward spreads a quarter of each gradient over its 2x2 block (one
    pass; ``avg_pool2d_backward`` is a general, several times slower kernel)."""

    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return half_pool(x)

    @staticmethod
    @first_order_only
    def backward(ctx, g):  # noqa: D102
        return _half_pool_adjoint(g)


def _half_pool_adjoint(g: torch.Tensor) -> torch.Tensor:
    b, c, h, w = g.shape
    q = g * 0.25
    out = g.new_empty(b, c, h, 2, w, 2)
    # columns doubled into the even rows, which are copied to the odd ones: a copy from a
    # broadcast 2x2 view (inner axis of length 2) is several times slower
    write_pairs(out[:, :, :, 0], q, q)
    out[:, :, :, 1].copy_(out[:, :, :, 0])
    return out.view(b, c, 2 * h, 2 * w)


def _upsample2_adjoint_axis(g: torch.Tensor, dim: int) -> torch.Tensor:
    """Adjoint of 2x linear upsampling (half-pixel centres, edge replicated) along ``dim``.

    Forward: ``out[2i] = 0.75 s[i] + 0.25 s[i-1]``, ``out[2i+1] = 0.75 s[i] + 0.25 s[i+1]`` with
    ``s[-1] = s[0]`` and ``s[n] = s[n-1]``.
    """
    n = g.shape[dim] // 2
    t = g.unflatten(dim, (n, 2))
    even, odd = t.select(dim, 0), t.select(dim, 1)  # (..., n) or (..., n, W): n stays at dim
    out = (even + odd).mul_(0.75)
    out.narrow(dim, 1, n - 1).add_(odd.narrow(dim, 0, n - 1), alpha=0.25)
    out.narrow(dim, 0, n - 1).add_(even.narrow(dim, 1, n - 1), alpha=0.25)
    out.narrow(dim, 0, 1).add_(even.narrow(dim, 0, 1), alpha=0.25)
    out.narrow(dim, n - 1, 1).add_(odd.narrow(dim, n - 1, 1), alpha=0.25)
    return out


class _Upsample2(torch.autograd.Function):
    """:func:`upsample2` with a separable hand-written adjoint (``upsample_bilinear2d_backward``
    is several times slower on CPU)."""

    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return upsample2(x)

    @staticmethod
    @first_order_only
    def backward(ctx, g):  # noqa: D102
        return _upsample2_adjoint_axis(_upsample2_adjoint_axis(g, -1), -2)


def smooth_half_res(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Wide, cheap low-pass: 2x2 average, :func:`lowpass` of ``sigma / 2`` at half resolution,
    bilinear upsampling. The overall kernel is close to a Gaussian of about ``1.1 sigma``
    full-resolution pixels at a quarter of the cost; used for chrominance, which the eye sees at
    low resolution.

    Args:
        x: ``(B, C, H, W)``; odd sizes or images too small to halve fall back to
            :func:`lowpass` at full resolution.
        sigma: full-resolution standard deviation in pixels (> 0).

    Returns:
        ``(B, C, H, W)``.
    """
    h, w = x.shape[-2:]
    if h % 2 or w % 2 or min(h, w) < 8:
        return lowpass(x, sigma)
    if torch.is_grad_enabled() and x.requires_grad:
        return _Upsample2.apply(lowpass(_HalfPool.apply(x), sigma / 2.0))
    return upsample2(lowpass(half_pool(x), sigma / 2.0))


def _autograd_adjoint(fn, g: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        leaf = torch.zeros_like(g, requires_grad=True)
        return torch.autograd.grad(fn(leaf), leaf, g)[0]


def lowpass_adjoint(g: torch.Tensor, sigma: float) -> torch.Tensor:
    """``lowpass^T g``: the adjoint of :func:`lowpass` (reflection-padded binomial filters run
    backwards: valid filter of the zero-padded gradient, then the padding folded back; other
    cases through autograd)."""
    steps = _binomial_steps(sigma)
    if steps is None or min(g.shape[-2:]) <= steps // 2:
        return _autograd_adjoint(lambda t: lowpass(t, sigma), g)
    r = steps // 2
    g = g * 0.25**steps
    for dim in (-2, -1):
        g = _pair_sums(F.pad(g, (steps, steps, 0, 0) if dim == -1 else (0, 0, steps, steps)), dim, steps)
        g = _reflect_fold(g, r, dim)
    return g


def smooth_half_res_adjoint(g: torch.Tensor, sigma: float) -> torch.Tensor:
    """The adjoint of :func:`smooth_half_res`."""
    h, w = g.shape[-2:]
    if h % 2 or w % 2 or min(h, w) < 8:
        return lowpass_adjoint(g, sigma)
    g = _upsample2_adjoint_axis(_upsample2_adjoint_axis(g, -1), -2)
    return _half_pool_adjoint(lowpass_adjoint(g, sigma / 2.0))


class _Denoise(torch.autograd.Function):
    """:func:`denoise` as one autograd node: ``out = x + S change``, ``change = (L Y - Y,
    H C - C)`` with ``C`` the red and blue chroma, ``S`` the strength-scaled recombination.

    Backward: ``gS = g change^T`` gives the strengths' gradients; ``gc = S^T g``, and
    ``dL/dx = g + Y^T (L^T - 1) gc_Y + C^T (H^T - 1) gc_C`` with the low-passes' adjoints
    (:func:`lowpass_adjoint`, :func:`smooth_half_res_adjoint`). Keeps ``change`` (three channels)
    instead of the graph of a dozen nodes.
    """

    @staticmethod
    def forward(ctx, x, a, c, sigma_luma, sigma_chroma):  # noqa: D102
        b, _, h, w = x.shape
        y = luminance(x)
        ch = x[:, 0::2] - y
        change = x.new_empty(b, 3, h, w)
        torch.sub(lowpass(y, sigma_luma), y, out=change[:, :1])
        torch.sub(smooth_half_res(ch, sigma_chroma), ch, out=change[:, 1:])
        del y, ch
        expand, mat = _recombination(x, a, c, b)
        ctx.sigmas = (sigma_luma, sigma_chroma)
        ctx.save_for_backward(change, expand, mat, a, c)
        return torch.baddbmm(x.reshape(b, 3, h * w), mat, change.view(b, 3, h * w)).reshape(b, 3, h, w)

    @staticmethod
    @first_order_only
    def backward(ctx, g):  # noqa: D102
        change, expand, mat, a, c = ctx.saved_tensors
        b, _, h, w = change.shape
        gf = g.reshape(b, 3, h * w)
        ga = gc = gx = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gmat = torch.bmm(gf, change.view(b, 3, h * w).transpose(1, 2)) * expand  # (B, 3, 3)
            if ctx.needs_input_grad[1]:
                ga = gmat[:, :, 0].sum(dim=1).reshape(-1, *([1] * (a.dim() - 1))).sum_to_size(a.shape) \
                    if a.dim() else gmat[:, :, 0].sum()
            if ctx.needs_input_grad[2]:
                gcs = gmat[:, :, 1:].sum(dim=(1, 2))
                gc = gcs.reshape(-1, *([1] * (c.dim() - 1))).sum_to_size(c.shape) if c.dim() else gcs.sum()
        if ctx.needs_input_grad[0]:
            del change
            gch = torch.bmm(mat.transpose(1, 2), gf).view(b, 3, h, w)  # gradient of the change
            sl, sc = ctx.sigmas
            gy = lowpass_adjoint(gch[:, :1], sl).sub_(gch[:, :1])
            gcc = smooth_half_res_adjoint(gch[:, 1:], sc).sub_(gch[:, 1:])
            del gch
            gy.sub_(gcc[:, :1]).sub_(gcc[:, 1:])  # C = (R, B) - Y
            gx = g.clone(memory_format=torch.contiguous_format)
            gx[:, 0::2].add_(gcc)
            for ch, wt in enumerate(LUMA_WEIGHTS):
                gx[:, ch : ch + 1].add_(gy, alpha=float(wt))
        return gx, ga, gc, None, None


def _recombination(x, a, c, b):
    """The chroma expansion matrix and the per-image ``(B, 3, 3)`` recombination of ``denoise``."""
    wr, wg, wb = LUMA_WEIGHTS
    expand = torch.tensor([[1.0, 1.0, 0.0], [1.0, -wr / wg, -wb / wg], [1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype)
    a1, c1 = torch.broadcast_tensors(a.reshape(-1, 1), c.reshape(-1, 1))
    strength = torch.cat([a1, c1, c1], dim=1)  # (B or 1, 3)
    return expand, (expand * strength.unsqueeze(1)).expand(b, 3, 3)


def denoise(x: torch.Tensor, luma, chroma, sigma_luma: float = 1.0, sigma_chroma: float = 2.0, *,
            overwrite: bool = False) -> torch.Tensor:
    """Blend luminance and chrominance toward low-passed versions.

    Luminance ``Y`` is blended toward :func:`lowpass` (``sigma_luma``); chrominance ``x - Y``
    toward :func:`smooth_half_res` (about ``sigma_chroma`` pixels). The chrominance has only two
    degrees of freedom (the luma weights sum to 1), so only its red and blue components are
    filtered; green follows from ``sum_c w_c (x_c - Y) = 0``.

    Args:
        x: ``(B, 3, H, W)`` linear RGB.
        luma: float or ``(B,)`` in ``[0, 1]``: 0 keeps luminance, 1 replaces it by its blur.
        chroma: float or ``(B,)`` in ``[0, 1]``: the same for chrominance ``x - Y``.
        overwrite: the result may be written into ``x`` (the caller owns it; without autograd).

    Returns:
        ``(B, 3, H, W)``.
    """
    a, c = per_image(luma, x), per_image(chroma, x)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, a, c)):
        return _Denoise.apply(x, a, c, float(sigma_luma), float(sigma_chroma))
    y = luminance(x)
    ch = x[:, 0::2] - y  # red and blue chroma
    # The result is x plus the change of luminance and chroma, not Y + chroma rebuilt: at zero
    # strength x comes back bit for bit, so a value the colour-matrix clip left at exactly 0 or 1
    # keeps that value and the clip after this stage passes its gradient (torch.clamp's ends);
    # rebuilt, rounding put it just outside about half the time and the gradient of both
    # strengths at neutral depended on it.
    # (With autograd, _Denoise computes the same in one node.)
    b, _, h, w = x.shape
    # the unscaled changes (dY, dR, dB) written straight into one buffer
    change = x.new_empty(b, 3, h, w)
    torch.sub(lowpass(y, sigma_luma), y, out=change[:, :1])
    torch.sub(smooth_half_res(ch, sigma_chroma), ch, out=change[:, 1:])
    # x + (1, 1, 1) a dY + the chroma expansion (R, B) -> (R, G, B) of c dC, in one pass: the
    # strengths scale the columns of the per-image 3x3 matrix
    _, mat = _recombination(x, a, c, b)
    change = change.view(b, 3, h * w)
    if overwrite and x.is_contiguous():
        return x.view(b, 3, h * w).baddbmm_(mat, change).view(b, 3, h, w)  # x is no longer read
    return torch.baddbmm(x.reshape(b, 3, h * w), mat, change).reshape(b, 3, h, w)


#: Standard deviation (px) of the sharpening stage's low-pass.
SHARPEN_SIGMA = 1.0


def sharpen(x: torch.Tensor, amount, sigma: float = SHARPEN_SIGMA, *, overwrite: bool = False) -> torch.Tensor:
    """Unsharp mask on luminance: ``x + a (Y - lowpass(Y))``, clipped to ``[0, 1]``.

    Args:
        x: ``(B, 3, H, W)`` (encoded) RGB in ``[0, 1]``.
        amount: float or ``(B,)`` in ``[0, 2]``.
        overwrite: the result may be written into ``x`` (the caller owns it; without autograd).
    """
    y = luminance(x)
    a = per_image(amount, x)
    # the one-channel detail broadcast over the channels by an add (faster than addcmul)
    if torch.is_grad_enabled() and (x.requires_grad or a.requires_grad):
        return _Sharpen.apply(x, a, float(sigma))
    detail = (y - lowpass(y, sigma)).mul_(a)
    return (x.add_(detail) if overwrite else x + detail).clamp_(0.0, 1.0)


class _Sharpen(torch.autograd.Function):
    """:func:`sharpen` as one autograd node: ``out = clip(x + a d)``, ``d = Y - lowpass(Y)``.

    Backward: with ``gm = g [0 <= x + a d <= 1]`` and ``s = sum_c gm_c``, ``dL/da = sum s d``
    and ``dL/dx_c = gm_c + w_c (u - lowpass^T u)``, ``u = a s``, where ``w`` are the luma weights
    and ``lowpass^T`` is the low-pass's adjoint (its padding and filter nodes run backwards on one
    channel). Keeps ``d`` and the clip mask instead of the autograd graph of six nodes.
    """

    @staticmethod
    def forward(ctx, x, a, sigma):  # noqa: D102
        y = luminance(x)
        d = y - lowpass(y, sigma)
        pre = x + d * a
        out = pre.clamp(0.0, 1.0)
        ctx.sigma = sigma
        ctx.save_for_backward(float_mask(out, pre), d, a)  # torch.clamp: ends included
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, g):  # noqa: D102
        mask, d, a = ctx.saved_tensors
        gm = g * mask
        s = gm.sum(dim=1, keepdim=True)
        ga = None
        if ctx.needs_input_grad[1]:
            n = s.shape[0]
            ga = torch.bmm(s.reshape(n, 1, -1), d.reshape(n, -1, 1)).reshape(n, 1, 1, 1).sum_to_size(a.shape)
        gx = None
        if ctx.needs_input_grad[0]:
            u = s.mul_(a)
            gy = u.sub_(lowpass_adjoint(u, ctx.sigma))
            gx = gm
            for ch, w in enumerate(LUMA_WEIGHTS):
                gx[:, ch : ch + 1].add_(gy, alpha=float(w))
        return gx, ga, None


class Denoise(nn.Module):
    """Module form of :func:`denoise`."""

    def forward(self, x, luma, chroma, overwrite: bool = False):  # noqa: D102
        return denoise(x, luma, chroma, overwrite=overwrite)


class Sharpen(nn.Module):
    """Module form of :func:`sharpen`."""

    def forward(self, x, amount, overwrite: bool = False):  # noqa: D102
        return sharpen(x, amount, overwrite=overwrite)
