"""Bayer demosaicing (any CFA phase, per image): the method registry and bilinear interpolation.

Methods, by name (:data:`DEMOSAIC_METHODS`): ``bilinear`` (this file; equals LibRaw's
``LINEAR``), ``mhc`` (Malvar-He-Cutler, :mod:`isp.stages.mhc`) and ``menon`` (directional
filtering with a posteriori decision and refinement, :mod:`isp.stages.menon`; the pipeline's
default). :func:`demosaic` dispatches by name and groups a batch by CFA phase.

The interpolation is written as shifted slices instead of a depthwise convolution: on CPU this
is several times faster than ``conv2d`` for 3x3 kernels and gives identical results. With
autograd it filters sparse colour planes (whose adjoint is the same filter); without, it works on
the four quarter-resolution phase planes, which skips the multiplications by zero (tested equal).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._util import first_order_only, write_pairs

_INDEX = {"R": 0, "G": 1, "B": 2}


def _tiles(patterns: Sequence[str], device, dtype) -> torch.Tensor:
    """``(B, 3, 2, 2)`` one-hot colour of each CFA position."""
    tiles = torch.zeros(len(patterns), 3, 2, 2, dtype=dtype)
    for b, pat in enumerate(patterns):
        if pat not in ("RGGB", "BGGR", "GRBG", "GBRG"):
            raise ValueError(f"CFA pattern must be RGGB, BGGR, GRBG or GBRG, got {pat!r}")
        for pos, letter in enumerate(pat):
            tiles[b, _INDEX[letter], pos // 2, pos % 2] = 1.0
    return tiles.to(device)


def bayer_masks(patterns: str | Sequence[str], height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Colour masks of Bayer mosaics.

    Args:
        patterns: one CFA string (``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"``) or one per image.
        height: even mosaic height H.
        width: even mosaic width W.

    Returns:
        ``(B, 3, H, W)`` (B = 1 for a single string) with 1 where the pixel samples R, G, B.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    return _tiles(patterns, device, dtype).repeat(1, 1, height // 2, width // 2)


def demosaic_bilinear(mosaic: torch.Tensor, patterns: str | Sequence[str]) -> torch.Tensor:
    """Bilinear demosaic.

    Known samples are kept; each missing value is the mean of the nearest same-colour samples
    (2 or 4 neighbours): red and blue use the kernel ``[1 2 1]^T [1 2 1] / 4``, green
    ``[[0 1 0], [1 4 1], [0 1 0]] / 4`` on the sparse colour planes. Borders use reflection
    padding, which keeps the CFA phase.

    Args:
        mosaic: ``(B, 1, H, W)`` with even H, W >= 2.
        patterns: CFA string, or a sequence of B strings (one per image).

    Returns:
        ``(B, 3, H, W)`` RGB.

    Example:
        >>> rgb = demosaic_bilinear(torch.rand(2, 1, 8, 8), "RGGB")
        >>> rgb.shape
        torch.Size([2, 3, 8, 8])
    """
    patterns = _check_mosaic(mosaic, patterns)
    b, _, h, w = mosaic.shape
    if not (torch.is_grad_enabled() and mosaic.requires_grad):  # no gradient: the faster phase-plane form
        if len(set(patterns)) == 1:
            return _demosaic_phase_planes(mosaic, patterns[0])
        out = mosaic.new_empty(b, 3, h, w)
        for pat in sorted(set(patterns)):
            idx = [i for i, p in enumerate(patterns) if p == pat]  # several patterns: one per image
            out[idx] = _demosaic_phase_planes(mosaic[idx], pat)
        return out
    # Reflection-pad the mosaic by one pixel, then split it into sparse colour planes with the
    # CFA tile shifted by one in each axis: the same as padding the sparse planes (the reflected
    # row -1 is row 1, which has row -1's CFA phase), at a third of the padding work.
    tiles = _tiles(patterns, mosaic.device, mosaic.dtype).roll((1, 1), dims=(-2, -1)).reshape(-1, 3, 1, 2, 1, 2)
    padded = F.pad(mosaic, (1, 1, 1, 1), mode="reflect")
    sp = (padded.reshape(b, 1, h // 2 + 1, 2, w // 2 + 1, 2) * tiles).reshape(b, 3, h + 2, w + 2)
    if torch.is_grad_enabled() and sp.requires_grad:
        return _BilinearFilters.apply(sp)
    return _bilinear_filters(sp)


def _neighbour_offsets(phase: int, site: int) -> tuple[int, ...]:
    """Offsets, in a colour's quarter-resolution plane, of the samples that bilinear
    interpolation averages for an output pixel of parity ``phase`` along one axis, when the
    colour sits at parity ``site``: itself, or the two neighbours on either side."""
    if phase == site:
        return (0,)
    return (0, 1) if phase > site else (-1, 0)


def _demosaic_phase_planes(mosaic: torch.Tensor, pattern: str) -> torch.Tensor:
    """Bilinear demosaic of ``(B, 1, H, W)`` mosaics sharing one CFA ``pattern``, computed on
    the four quarter-resolution phase planes (no gradient path; equals :func:`_bilinear_filters`
    of the sparse planes).

    Every colour sample lives on one phase plane; the interpolated value of an output pixel of
    phase ``(py, px)`` is the mean of one, two or four samples of that plane at offsets given by
    :func:`_neighbour_offsets` (green: the four direct neighbours, on both green planes). The
    planes are padded by replication, which is the mosaic's reflection padding seen from one
    colour. All arithmetic runs on contiguous quarter planes; one pass interleaves the result
    (:func:`isp.stages._util.write_pairs`).
    """
    b, _, h, w = mosaic.shape
    h2, w2 = h // 2, w // 2
    if pattern not in ("RGGB", "BGGR", "GRBG", "GBRG"):
        raise ValueError(f"CFA pattern must be RGGB, BGGR, GRBG or GBRG, got {pattern!r}")
    # plane[(y, x)] = mosaic[y::2, x::2], padded by one sample on each side
    planes = {}
    for pos in range(4):
        y, x = divmod(pos, 2)
        planes[(y, x)] = F.pad(mosaic[:, :, y::2, x::2], (1, 1, 1, 1), mode="replicate")

    def at(site, dy, dx):
        return planes[site][:, 0, 1 + dy : 1 + dy + h2, 1 + dx : 1 + dx + w2]

    sites = {c: [divmod(i, 2) for i, letter in enumerate(pattern) if letter == c] for c in "RGB"}
    out = mosaic.new_empty(b, 3, 2, 2, h2, w2)  # (channel, phase y, phase x) planes, interleaved at the end
    for ch, letter in enumerate("RGB"):
        for py in range(2):
            for px in range(2):
                dst = out[:, ch, py, px]
                if (py, px) in sites[letter]:
                    dst.copy_(at((py, px), 0, 0))
                    continue
                if letter == "G":  # horizontal neighbours on the green of this row, vertical on this column's
                    terms = [((py, 1 - px), 0, dx) for dx in _neighbour_offsets(px, 1 - px)]
                    terms += [((1 - py, px), dy, 0) for dy in _neighbour_offsets(py, 1 - py)]
                else:
                    (cy, cx), = sites[letter]
                    terms = [((cy, cx), dy, dx) for dy in _neighbour_offsets(py, cy) for dx in _neighbour_offsets(px, cx)]
                torch.add(at(*terms[0]), at(*terms[1]), out=dst)
                for t in terms[2:]:
                    dst.add_(at(*t))
                dst.mul_(1.0 / len(terms))
    rgb = mosaic.new_empty(b, 3, h2, 2, w2, 2)  # (channel, row, phase y, column, phase x)
    write_pairs(rgb, out[:, :, :, 0].transpose(2, 3), out[:, :, :, 1].transpose(2, 3))
    return rgb.view(b, 3, h, w)


def _bilinear_filters(sp: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H+2, W+2)`` padded sparse planes -> ``(B, 3, H, W)`` interpolated (shifted slices)."""
    b, _, h, w = sp.shape
    out = sp.new_empty(b, 3, h - 2, w - 2)
    rb = sp[:, 0::2]  # red and blue planes: separable [1 2 1] / 2 in each direction
    t = rb[..., :-2] + rb[..., 2:]
    rb = torch.add(rb[..., 1:-1], t, alpha=0.5, out=t)
    t = rb[..., :-2, :] + rb[..., 2:, :]
    torch.add(rb[..., 1:-1, :], t, alpha=0.5, out=out[:, 0::2])  # written into the output planes
    g = sp[:, 1]
    t = g[:, :-2, 1:-1] + g[:, 2:, 1:-1]
    t.add_(g[:, 1:-1, :-2]).add_(g[:, 1:-1, 2:])
    torch.add(g[:, 1:-1, 1:-1], t, alpha=0.25, out=out[:, 1])
    return out


class _BilinearFilters(torch.autograd.Function):
    """:func:`_bilinear_filters` with its adjoint as backward: both kernels are symmetric, so the
    adjoint is the same filtering of the gradient zero-padded by 2 (autograd through the slices
    would allocate and zero a full-size gradient per slice)."""

    @staticmethod
    def forward(ctx, sp):  # noqa: D102
        return _bilinear_filters(sp)

    @staticmethod
    @first_order_only
    def backward(ctx, grad):  # noqa: D102
        return _bilinear_filters(F.pad(grad, (2, 2, 2, 2)))


@dataclasses.dataclass(frozen=True)
class DemosaicMethod:
    """A demosaicing method as data.

    Attributes:
        name: registry key.
        radius: reach in pixels (an output pixel depends on mosaic samples at most this far away).
        linear: the output is a fixed linear map of the mosaic (given the method's decisions).
        description: one line for docs and ``--help``.
    """

    name: str
    radius: int
    linear: bool
    description: str


DEMOSAIC_METHODS: dict[str, DemosaicMethod] = {
    "bilinear": DemosaicMethod("bilinear", 1, True, "bilinear interpolation of each colour (LibRaw LINEAR)"),
    "mhc": DemosaicMethod("mhc", 2, True, "Malvar-He-Cutler gradient-corrected linear interpolation (5x5)"),
    "menon": DemosaicMethod("menon", 8, True, "directional filtering + a posteriori decision + refinement (Menon 2007)"),
}
#: The pipeline's default method.
DEFAULT_DEMOSAIC = "menon"


def _check_mosaic(mosaic: torch.Tensor, patterns) -> list[str]:
    if mosaic.dim() != 4 or mosaic.shape[1] != 1:
        raise ValueError(f"mosaic must be (B, 1, H, W), got {tuple(mosaic.shape)}")
    b, _, h, w = mosaic.shape
    if h % 2 or w % 2:
        raise ValueError(f"mosaic height and width must be even, got {h}x{w}")
    if isinstance(patterns, str):
        patterns = [patterns]
    if len(patterns) not in (1, b):
        raise ValueError(f"need 1 or {b} CFA patterns, got {len(patterns)}")
    return list(patterns)


def by_pattern(fn, mosaic: torch.Tensor, patterns: Sequence[str]) -> torch.Tensor:
    """``fn(mosaic_group, pattern) -> (b, 3, H, W)`` applied to each group of images sharing a
    CFA pattern, reassembled in batch order."""
    if len(set(patterns)) == 1:
        return fn(mosaic, patterns[0])
    outs, order = [], []
    for pat in sorted(set(patterns)):
        idx = [i for i, p in enumerate(patterns) if p == pat]
        outs.append(fn(mosaic[idx], pat))
        order += idx
    out = torch.cat(outs)
    return out[torch.argsort(torch.tensor(order, device=out.device))]


def demosaic(mosaic: torch.Tensor, patterns: str | Sequence[str], method: str = DEFAULT_DEMOSAIC) -> torch.Tensor:
    """Demosaic by method name.

    Args:
        mosaic: ``(B, 1, H, W)`` with even H, W >= 2 (``menon`` and ``mhc`` pad by reflection, so
            H, W > their padding).
        patterns: CFA string, or a sequence of B strings (one per image, phases may differ).
        method: a key of :data:`DEMOSAIC_METHODS`.

    Returns:
        ``(B, 3, H, W)`` RGB; differentiable with respect to the mosaic.

    Example:
        >>> demosaic(torch.rand(2, 1, 32, 32), ["RGGB", "GBRG"], "mhc").shape
        torch.Size([2, 3, 32, 32])
    """
    if method not in DEMOSAIC_METHODS:
        raise ValueError(f"unknown demosaic method {method!r}; choose from {sorted(DEMOSAIC_METHODS)}")
    if method == "bilinear":
        return demosaic_bilinear(mosaic, patterns)
    patterns = _check_mosaic(mosaic, patterns)
    if method == "mhc":
        from .mhc import mhc_planes

        return by_pattern(mhc_planes, mosaic, patterns)
    from .menon import menon_planes

    return by_pattern(menon_planes, mosaic, patterns)


class Demosaic(nn.Module):
    """Module form of :func:`demosaic`; the CFA pattern(s) are passed per call.

    Args:
        method: a key of :data:`DEMOSAIC_METHODS` (default ``bilinear``).
    """

    def __init__(self, method: str = "bilinear") -> None:
        super().__init__()
        if method not in DEMOSAIC_METHODS:
            raise ValueError(f"unknown demosaic method {method!r}; choose from {sorted(DEMOSAIC_METHODS)}")
        self.method = method

    def forward(self, mosaic: torch.Tensor, patterns: str | Sequence[str]) -> torch.Tensor:  # noqa: D102
        return demosaic(mosaic, patterns, self.method)
