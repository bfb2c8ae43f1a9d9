"""Devices and process groups: attiqa's one ``resolve_device`` and the ``torchrun`` setup of pretrain / pseudo-label."""
from __future__ import annotations

import os
from datetime import timedelta

import torch

__all__ = ["world_info", "resolve_device", "init_distributed"]


def world_info() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment (``0, 0, 1`` without it)."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")))


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device to compute on.

    Args:
        device: ``"auto"`` or ``None`` -> this process's GPU (``cuda:LOCAL_RANK`` under
            ``torchrun``, else ``cuda:0``) when CUDA is present, else the CPU; a bare ``"cuda"``
            also becomes ``cuda:LOCAL_RANK``; anything else as given.

    Returns:
        A ``torch.device``; a CUDA device is made current.
    """
    _, local_rank, _ = world_info()
    if device is None or str(device) == "auto":
        dev = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def init_distributed(device: torch.device, backend: str | None = None, timeout: timedelta | None = None) -> int:
    """Joins the process group when launched with ``WORLD_SIZE > 1``; returns this process's rank.

    Args:
        device: the device this process computes on.
        backend: ``None`` = NCCL on CUDA, gloo on CPU.
        timeout: collective timeout (torch's default when ``None``).
    """
    import torch.distributed as dist

    _, _, world = world_info()
    if world > 1 and not dist.is_initialized():
        kw = {"timeout": timeout} if timeout is not None else {}
        dist.init_process_group(backend=backend or ("nccl" if device.type == "cuda" else "gloo"), **kw)
    return dist.get_rank() if dist.is_initialized() else 0
