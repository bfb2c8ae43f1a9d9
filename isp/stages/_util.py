from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable


def per_image(v, x: torch.Tensor, ndim: int = 4) -> torch.Tensor:
    """Float or ``(B,)`` tensor -> ``(B, 1, 1, 1)`` (or scalar tensor) on ``x``'s device/dtype."""
    t = torch.as_tensor(v, device=x.device, dtype=x.dtype)
    if t.dim() == 0:
        return t
    if t.dim() != 1 or t.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"per-image parameter must be a float or a (B,) tensor with B = {x.shape[0]}, got shape {tuple(t.shape)}")
    return t.reshape(-1, *([1] * (ndim - 1)))


def is_noop(v) -> bool:
    """True when ``v`` is exactly zero everywhere and needs no gradient (stage can be skipped)."""
    if isinstance(v, (int, float)):
        return v == 0
    if v.requires_grad and torch.is_grad_enabled():
        return False
    return not bool(torch.count_nonzero(v))


def float_mask(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a == b)`` as 0./1. in ``a``'s dtype, written directly (no bool tensor).

    On CPU, comparing into a float tensor and multiplying by it are each two to three times
    faster than making and applying a bool mask (which takes a non-vectorised casting path).
    """
    return torch.eq(a, b, out=torch.empty_like(a))


def write_pairs(out: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``out[..., 0] = first`` and ``out[..., 1] = second`` for ``out`` of shape ``(..., 2)``:
    interleaves two tensors along the last axis (e.g. even and odd columns).

    Float32/float64 pairs are written as one complex number each (``torch.complex`` into a
    complex view of ``out``), about twice as fast on CPU as copying into the two stride-2 halves
    or through a permuted view, whose inner axis of length 2 is not vectorised.

    Returns:
        ``out``.
    """
    if (out.dtype in (torch.float32, torch.float64) and out.stride(-1) == 1
            and all(st % 2 == 0 for st in out.stride()[:-1]) and out.storage_offset() % 2 == 0):
        torch.complex(first, second, out=torch.view_as_complex(out))
    else:
        out[..., 0].copy_(first)
        out[..., 1].copy_(second)
    return out


def first_order_only(backward):
    """Mark the ``backward`` of a custom autograd Function that has no second derivative.

    It applies torch's ``once_differentiable`` (the backward runs without recording a graph)
    and, in addition, raises as soon as a graph of the gradient is requested
    (``create_graph=True``, under which autograd runs backward passes with grad mode on).
    ``once_differentiable`` alone defers its error to a node that ``torch.autograd.grad(...,
    inputs)`` skips, and it does not fire when the incoming gradient needs no graph (a loss
    linear in the image), so a Hessian would come back with this node's terms missing and no
    error. Higher-order gradients of the pipeline come from :mod:`isp.reference`.

    Example:
        >>> class Square(torch.autograd.Function):
        ...     @staticmethod
        ...     def forward(ctx, x):
        ...         ctx.save_for_backward(x)
        ...         return x * x
        ...     @staticmethod
        ...     @first_order_only
        ...     def backward(ctx, g):
        ...         (x,) = ctx.saved_tensors
        ...         return 2 * x * g
    """
    inner = once_differentiable(backward)

    @functools.wraps(inner)
    def checked(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError(f"{type(ctx).__name__} has no second derivative: a fast ISP node cannot be "
                               "differentiated with create_graph=True (isp.reference.ReferenceISP can)")
        return inner(ctx, *grads)

    checked.first_order_only = True
    return checked


class _Clamp01(torch.autograd.Function):
    """``clamp(x, 0, 1)`` that keeps a 0/1 mask for backward instead of the input (autograd's
    clamp backward recomputes two comparisons, an ``and`` and a ``where`` from the saved input)."""

    @staticmethod
    def forward(ctx, x):  # noqa: D102
        out = x.clamp(0.0, 1.0)
        ctx.save_for_backward(float_mask(out, x))
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, grad):  # noqa: D102
        (mask,) = ctx.saved_tensors
        return grad * mask


def clamp01(x: torch.Tensor) -> torch.Tensor:
    """Clip to ``[0, 1]``; the gradient is passed where the value was inside the range (ends
    included), as with ``torch.clamp``."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Clamp01.apply(x)
    return x.clamp(0.0, 1.0)
