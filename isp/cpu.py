"""CPU memory tuning for autograd workloads: keep freed memory in the process.

A differentiable render keeps dozens of image-sized intermediates alive until the backward
pass, so every forward asks the C allocator for hundreds of megabytes of fresh memory, and
glibc hands tensors of a few megabytes out with ``mmap`` and returns them to the kernel when
they are freed (or trims the heap back once enough is free). Each new page is then zeroed by the
kernel and faulted in again on first touch: on a 6-MP forward + backward that is about 50,000
page faults (200 MB) per call, 10-15 % of the time (``experiments/bench_isp.py`` shows the
difference with ``--no-tune-allocator``).

:func:`tune_allocator` raises glibc's ``mmap`` threshold to its maximum (32 MiB) and turns heap
trimming off, so freed blocks stay in the process and are reused without page faults: the same
idea as PyTorch's CUDA caching allocator, or running on jemalloc/tcmalloc (``LD_PRELOAD``) as
PyTorch's CPU performance guide suggests. The cost is that the process keeps its peak heap size
until it exits. It is process-wide, so the library never calls it on import; the command-line
tools (rendering, training, benchmarks) call it at start-up.

Image-sized tensors above the 32 MiB limit (a full 6-MP RGB image is 72 MB) still come from
``mmap``. For those, the tools also set ``THP_MEM_ALLOC_ENABLE=1`` before importing torch: torch's
CPU allocator then aligns buffers of 2 MiB and more to huge pages and asks the kernel for
transparent huge pages (``madvise``), which cuts their page faults 512-fold and relieves the TLB.
torch reads the variable once, at its first allocation, so it only works when set before
``import torch`` (``export THP_MEM_ALLOC_ENABLE=1`` does the same for any program).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_allocator"]

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's largest accepted mmap threshold on 64-bit systems (4 MiB * sizeof(long)).
MMAP_THRESHOLD_MAX = 32 << 20

_applied: bool | None = None


def _glibc():
    """The process's glibc, or None (another C library or platform)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator() -> bool:
    """Keep freed memory in the process (glibc only; a no-op returning False elsewhere).

    Sets ``M_MMAP_THRESHOLD`` to 32 MiB (blocks up to that size come from the heap, not from
    fresh ``mmap`` pages) and ``M_TRIM_THRESHOLD`` to -1 (the heap is never given back to the
    kernel). Idempotent.

    Returns:
        True when both settings were accepted.
    """
    global _applied
    if _applied is None:
        libc = _glibc()
        if libc is None:
            _applied = False
        else:
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            libc.mallopt.restype = ctypes.c_int
            ok_mmap = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
            ok_trim = libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1
            _applied = ok_mmap and ok_trim
    return _applied
