from __future__ import annotations

import torch


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


class _Clamp01(torch.autograd.Function):
    """``clamp(x, 0, 1)`` that keeps a 0/1 mask for backward instead of the input (autograd's
    clamp backward recomputes two comparisons, an ``and`` and a ``where`` from the saved input)."""

    @staticmethod
    def forward(ctx, x):  # noqa: D102
        out = x.clamp(0.0, 1.0)
        ctx.save_for_backward(float_mask(out, x))
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (mask,) = ctx.saved_tensors
        return grad * mask


def clamp01(x: torch.Tensor) -> torch.Tensor:
    """Clip to ``[0, 1]``; the gradient is passed where the value was inside the range (ends
    included), as with ``torch.clamp``."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Clamp01.apply(x)
    return x.clamp(0.0, 1.0)
