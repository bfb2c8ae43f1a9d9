"""Phase-plane bookkeeping shared by the demosaicing methods.

A Bayer mosaic is split into its four quarter-resolution *phase planes* (``mosaic[py::2, px::2]``).
Interpolation formulas are written in full-resolution offsets ("the sample two pixels to the
left"); :meth:`Planes.at` turns such an offset, seen from the pixels of one phase, into a slice
of the plane that holds it. Every quantity is a *field*: a dict ``phase -> (tensor, margin)``,
where the tensor covers the padded plane minus ``margin`` samples on each side. Each step of a
method shrinks the margin by the reach of its stencil ("valid" filtering), so no intermediate is
padded again and every operation runs on contiguous quarter planes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._util import write_pairs

Phase = tuple[int, int]
Field = dict  # Phase -> (tensor (B, hp - 2 m, wp - 2 m), margin m)


class Planes:
    """The phase planes of a reflect-padded mosaic.

    Args:
        mosaic: ``(B, 1, H, W)``, H and W even.
        pad: even number of pixels of reflection padding on each side (keeps the CFA phase).

    Attributes:
        field: the mosaic as a field (all four phases, margin 0).
        hp, wp: padded plane height and width, ``(H + 2 pad) / 2`` and ``(W + 2 pad) / 2``.
        margin: ``pad / 2``, the margin at which the fields cover the unpadded image.
    """

    def __init__(self, mosaic: torch.Tensor, pad: int) -> None:
        if pad % 2:
            raise ValueError(f"pad must be even (it keeps the CFA phase), got {pad}")
        b, _, h, w = mosaic.shape
        padded = reflect_pad(mosaic, pad)
        self.hp, self.wp = (h + 2 * pad) // 2, (w + 2 * pad) // 2
        self.margin = pad // 2
        self.field: Field = {}
        for py in range(2):
            for px in range(2):
                self.field[(py, px)] = (padded[:, 0, py::2, px::2].contiguous(), 0)

    def at(self, field: Field, phase: Phase, dy: int, dx: int, margin: int) -> torch.Tensor:
        """The values of ``field`` at full-resolution offset ``(dy, dx)`` from the pixels of
        ``phase``, as a ``(B, hp - 2 margin, wp - 2 margin)`` view."""
        py, px = phase
        t, m = field[((py + dy) % 2, (px + dx) % 2)]
        y0 = margin - m + (py + dy) // 2
        x0 = margin - m + (px + dx) // 2
        if y0 < 0 or x0 < 0:
            raise ValueError(f"offset ({dy}, {dx}) reaches outside a field of margin {m} at margin {margin}")
        return t[:, y0 : y0 + self.hp - 2 * margin, x0 : x0 + self.wp - 2 * margin]

    def stencil(self, field: Field, phase: Phase, taps: dict, margin: int) -> torch.Tensor:
        """``sum_k w_k field(phase + offset_k)`` for ``taps = {(dy, dx): w}`` (a fresh tensor)."""
        items = list(taps.items())
        (off, w0), rest = items[0], items[1:]
        out = self.at(field, phase, *off, margin) * w0
        for off, w in rest:
            out.add_(self.at(field, phase, *off, margin), alpha=w)
        return out

    def interleave(self, rgb: dict, margin: int) -> torch.Tensor:
        """Channel fields ``{0: R, 1: G, 2: B}`` (each at all four phases) -> ``(B, 3, H, W)``,
        cropping to ``margin`` (the unpadded image when ``margin == self.margin``)."""
        t0 = self.at(rgb[0], (0, 0), 0, 0, margin)
        b, h2, w2 = t0.shape
        if torch.is_grad_enabled() and any(t.requires_grad for f in rgb.values() for t, _ in f.values()):
            # autograd: stack (torch.complex with out= records no gradient)
            rows = [torch.stack([torch.stack([self.at(rgb[ch], (py, px), 0, 0, margin) for px in range(2)], dim=-1)
                                 for py in range(2)], dim=2) for ch in range(3)]
            return torch.stack(rows, dim=1).reshape(b, 3, 2 * h2, 2 * w2)
        out = t0.new_empty(b, 3, h2, 2, w2, 2)  # (channel, row, phase y, column, phase x)
        for ch in range(3):
            for py in range(2):
                write_pairs(out[:, ch, :, py], self.at(rgb[ch], (py, 0), 0, 0, margin),
                            self.at(rgb[ch], (py, 1), 0, 0, margin))
        return out.view(b, 3, 2 * h2, 2 * w2)


def sites(pattern: str) -> dict[str, Phase]:
    """Phases of red, blue, green in red rows (``gr``) and green in blue rows (``gb``)."""
    if pattern not in ("RGGB", "BGGR", "GRBG", "GBRG"):
        raise ValueError(f"CFA pattern must be RGGB, BGGR, GRBG or GBRG, got {pattern!r}")
    r = divmod(pattern.index("R"), 2)
    return {"r": r, "b": (1 - r[0], 1 - r[1]), "gr": (r[0], 1 - r[1]), "gb": (1 - r[0], r[1])}


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]``, zero outside (the full-resolution references)."""
    h, w = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    xp = F.pad(x, (p, p, p, p))
    return xp[..., p + dy : p + dy + h, p + dx : p + dx + w]


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflection padding by ``pad`` on all four sides, in rounds when the image is not larger
    than ``pad`` (each round reflects the result of the last, which keeps every pixel's CFA
    parity; the total shift ``pad`` is even)."""
    while pad > 0:
        k = min(pad, x.shape[-2] - 1, x.shape[-1] - 1)
        x = F.pad(x, (k, k, k, k), mode="reflect")
        pad -= k
    return x
