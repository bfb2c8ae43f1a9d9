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
