"""The differentiable ISP: :class:`RawBatch`, :class:`ISP`, :func:`render`.

Stage order (all parameters neutral = LibRaw's rendering with camera white balance, linear
output, sRGB primaries, then sRGB encoding):

1. black subtraction and normalisation by the white level (in :class:`RawBatch`, once),
2. white balance on the mosaic (as-shot x temperature/tint), clip to ``[0, 1]``,
3. demosaic (menon by default; mhc, bilinear),
4. camera RGB -> linear sRGB (white-preserving matrix from camera->XYZ and colour-science's
   sRGB primaries), clip,
5. denoise (luma/chroma), 6. exposure, 7. highlights/shadows, 8. saturation/vibrance,
9. sRGB encoding, 10. brightness and contrast curves, 11. sharpening, final clip.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .color import apply_color_matrix, camera_to_srgb_matrix
from .params import NUM_PARAMS, PARAM_INDEX, as_param_batch
from .raw import RawImage
from .stages import DEFAULT_DEMOSAIC, DEFAULT_HIGHLIGHT, DEMOSAIC_METHODS, HIGHLIGHT_MODES
from .stages._util import clamp01, is_noop, per_image
from .stages.detail import SHARPEN_SIGMA, denoise, lowpass_radius, sharpen
from .stages.fused import encode_tone, exposure_tone, saturate_fused, white_balance_demosaic
from .stages import native
from .stages.white_balance import wb_gains

__all__ = ["RawBatch", "ISP", "render", "apply_orientation", "TILE_HALO", "DEFAULT_TILE_PIXELS"]

_CH = {"R": 0, "G": 1, "B": 2}

#: Rows of overlap between tiles after the demosaic: at least the summed radii of the later
#: spatial stages (chroma denoise 2 x 2 + 2 at half resolution, which covers the luma denoise's
#: 2, sharpen 2: 8 in all) with a margin. A tile's halo is this plus the demosaic method's
#: radius, rounded up to even so that tiles keep the CFA phase and the half-resolution grid
#: (:meth:`ISP.tile_halo`; 10 rows for bilinear).
TILE_HALO = 9
#: Rows of context the sharpening stage reads on each side (the halo the per-pixel stages keep).
SHARPEN_RADIUS = lowpass_radius(SHARPEN_SIGMA)
#: Default tile size on CPU, in pixels (rows x width x batch); measured fastest on a 6-MP image.
DEFAULT_TILE_PIXELS = 1 << 19


class RawBatch:
    """A batch of equally sized RAW mosaics, prepared for :class:`ISP`.

    Attributes:
        linear: ``(B, 1, H, W)`` black-subtracted mosaic divided by ``white - black``, clipped to
            ``[0, 1]``.
        as_shot_wb: ``(B, 3)`` as-shot multipliers, normalised so the smallest is 1 (LibRaw).
        cfa_index: ``(B, 4)`` long, channel (0 R, 1 G, 2 B) of each 2x2 CFA position.
        cam_to_srgb: ``(B, 3, 3)`` camera RGB -> linear sRGB.
        patterns: the B CFA strings.
        orientations: the B LibRaw flips.
    """

    def __init__(self, linear, as_shot_wb, cfa_index, cam_to_srgb, patterns, orientations):
        self.linear = linear
        self.as_shot_wb = as_shot_wb
        self.cfa_index = cfa_index
        self.cam_to_srgb = cam_to_srgb
        self.patterns = list(patterns)
        self.orientations = list(orientations)

    @classmethod
    def from_raws(cls, raws: Sequence[RawImage], device=None, dtype=torch.float32) -> "RawBatch":
        """Stack RawImages with equal mosaic shape.

        Raises:
            ValueError: empty list or different mosaic shapes.
        """
        raws = list(raws)
        if not raws:
            raise ValueError("RawBatch needs at least one RawImage")
        shapes = {r.shape for r in raws}
        if len(shapes) != 1:
            raise ValueError(f"all mosaics in a RawBatch must have the same shape, got {sorted(shapes)}; crop or preview them first")
        h, w = raws[0].shape
        lin = np.empty((len(raws), 1, h, w), dtype=np.float32)
        for i, r in enumerate(raws):
            # (mosaic - black) / (white - black) as mosaic * scale + offset, with the 2x2 CFA
            # constants tiled along whole rows: broadcasting a length-2 inner axis is not
            # vectorised (about ten times slower)
            black = np.tile(r.black_level.astype(np.float64).reshape(2, 1, 2), (1, 1, w // 2)).reshape(1, 2, w)
            scale = 1.0 / (r.white_level - black)
            v = lin[i, 0].reshape(h // 2, 2, w)  # a view: computed in place
            np.multiply(r.mosaic.reshape(h // 2, 2, w), scale.astype(np.float32), out=v)
            np.add(v, (-black * scale).astype(np.float32), out=v)
            np.clip(v, 0.0, 1.0, out=v)
        wb = np.stack([r.as_shot_wb / r.as_shot_wb.min() for r in raws]).astype(np.float32)
        idx = np.array([[_CH[c] for c in r.cfa_pattern] for r in raws], dtype=np.int64)
        mat = np.stack([camera_to_srgb_matrix(r.cam_to_xyz) for r in raws])
        return cls(
            torch.from_numpy(lin).to(device),
            torch.from_numpy(wb).to(device),
            torch.from_numpy(idx).to(device),
            torch.from_numpy(mat).to(device=device, dtype=dtype),
            [r.cfa_pattern for r in raws],
            [r.orientation for r in raws],
        )

    def __len__(self) -> int:
        return self.linear.shape[0]

    @property
    def device(self) -> torch.device:
        return self.linear.device

    def to(self, device=None, dtype: torch.dtype | None = None) -> "RawBatch":
        """Copy to ``device``; ``dtype`` converts the floating tensors (mosaic, multipliers, matrix),
        e.g. to float64 for a precise comparison (the pipeline computes in the mosaic's dtype)."""
        return RawBatch(self.linear.to(device, dtype), self.as_shot_wb.to(device, dtype), self.cfa_index.to(device),
                        self.cam_to_srgb.to(device, dtype), self.patterns, self.orientations)

    def index(self, idx) -> "RawBatch":
        """Sub-batch ``idx`` (a list of ints or a slice)."""
        if isinstance(idx, slice):
            ids = list(range(len(self)))[idx]
        else:
            ids = [int(i) for i in idx]
        t = torch.tensor(ids, device=self.device)
        return RawBatch(self.linear[t], self.as_shot_wb[t], self.cfa_index[t], self.cam_to_srgb[t],
                        [self.patterns[i] for i in ids], [self.orientations[i] for i in ids])


class ISP(nn.Module):
    """Differentiable camera ISP: RAW mosaics + ``(B, P)`` parameters -> sRGB ``(B, 3, H, W)``.

    Args:
        tile_pixels: process the image in row tiles of about this many pixels (summed over the
            batch) with an overlap of :data:`TILE_HALO` rows; the result is the same as untiled
            (up to float rounding) but the working set stays in the CPU caches, which makes a
            full-resolution render several times faster. None = automatic
            (:data:`DEFAULT_TILE_PIXELS` on CPU, no tiling on CUDA); 0 = never tile.
        demosaic: demosaicing method, a key of :data:`isp.stages.DEMOSAIC_METHODS` (``menon``,
            ``mhc``, ``bilinear``; default :data:`isp.stages.DEFAULT_DEMOSAIC`).
        highlight: highlight clip after white balance, a key of
            :data:`isp.stages.HIGHLIGHT_MODES` (default ``neutral``: clipped highlights are grey).
        native: run the per-pixel chain (exposure ... contrast) through the compiled kernel of
            :mod:`isp.stages.native` where it is available (CPU, float32/float64); False = the
            torch nodes of :mod:`isp.stages.fused` (the same result up to float rounding).

    Example:
        >>> isp_ = ISP()  # doctest: +SKIP
        >>> rgb = isp_(RawBatch.from_raws([raw]), neutral_params(1))  # doctest: +SKIP
    """

    def __init__(self, tile_pixels: int | None = None, demosaic: str = DEFAULT_DEMOSAIC,
                 highlight: str = DEFAULT_HIGHLIGHT, native: bool = True) -> None:
        super().__init__()
        self.native = native
        self.tile_pixels = tile_pixels
        if demosaic not in DEMOSAIC_METHODS:
            raise ValueError(f"unknown demosaic method {demosaic!r}; choose from {sorted(DEMOSAIC_METHODS)}")
        if highlight not in HIGHLIGHT_MODES:
            raise ValueError(f"unknown highlight mode {highlight!r}; choose from {sorted(HIGHLIGHT_MODES)}")
        self.demosaic_method = demosaic
        self.highlight = highlight

    def forward(self, batch: RawBatch, params: torch.Tensor | None = None, validate: bool = True, *,
                unit: bool = False) -> torch.Tensor:
        """Render a batch.

        Args:
            batch: the RAW mosaics.
            params: ``(B, P)`` physical parameters (or ``(P,)`` for all images); None = neutral.
            validate: check finiteness and ranges (turn off in hot loops).
            unit: ``params`` are in the unit box ``[-1, 1]`` and get mapped by
                :func:`isp.unit_to_params` first.

        Returns:
            ``(B, 3, H, W)`` sRGB in ``[0, 1]`` (orientation *not* applied).
        """
        b = len(batch)
        dev = batch.device
        p = as_param_batch(params, b, validate=validate, unit=unit, device=dev, dtype=batch.linear.dtype)
        P = {n: p[:, i] for n, i in PARAM_INDEX.items()}
        # Stages whose controls are all exactly neutral (and need no gradient) are skipped.
        active = {
            "denoise": not (is_noop(P["denoise_luma"]) and is_noop(P["denoise_chroma"])),
            "exposure": not is_noop(P["exposure"]),
            "highlights_shadows": not (is_noop(P["highlights"]) and is_noop(P["shadows"])),
            "saturation": not (is_noop(P["saturation"]) and is_noop(P["vibrance"])),
            "brightness": not is_noop(P["brightness"]),
            "contrast": not is_noop(P["contrast"]),
            "sharpen": not is_noop(P["sharpen"]),
        }
        gains = wb_gains(batch.as_shot_wb, P["wb_temperature"], P["wb_tint"])
        h = batch.linear.shape[-2]
        rows = self._tile_rows(batch)
        halo = self.tile_halo
        if rows >= h:
            return self._render(batch.linear, batch, gains, P, active)
        # Row tiles with a halo: every stage is local (radius <= TILE_HALO in total), so each
        # tile's centre equals the untiled result; tiles keep the working set in cache.
        grad = torch.is_grad_enabled() and (p.requires_grad or batch.linear.requires_grad)
        out = [] if grad else torch.empty(b, 3, h, batch.linear.shape[-1], device=dev, dtype=batch.linear.dtype)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            a0, a1 = max(0, r0 - halo), min(h, r1 + halo)
            y = self._render(batch.linear[:, :, a0:a1], batch, gains, P, active, keep=(r0 - a0, r1 - a0))
            if grad:
                out.append(y)
            else:  # copied while the tile is still in cache (no full-size concatenation)
                out[:, :, r0:r1].copy_(y)
        return torch.cat(out, dim=2) if grad else out

    @property
    def tile_halo(self) -> int:
        """Rows of overlap between tiles: the demosaic's radius plus :data:`TILE_HALO`, even."""
        r = DEMOSAIC_METHODS[self.demosaic_method].radius + TILE_HALO
        return r + r % 2

    def _tile_rows(self, batch: RawBatch) -> int:
        """Even number of rows per tile (the whole height when tiling is off or not worth it)."""
        b, _, h, w = batch.linear.shape
        target = self.tile_pixels
        if target is None:
            target = 0 if batch.device.type != "cpu" else DEFAULT_TILE_PIXELS
        if target <= 0:
            return h
        halo = self.tile_halo
        rows = max(2 * halo, int(target) // max(1, b * w)) // 2 * 2
        return h if rows + 2 * halo >= h else rows

    def _render(self, mosaic: torch.Tensor, batch: RawBatch, gains: torch.Tensor, P: dict, active: dict,
                keep: tuple[int, int] | None = None) -> torch.Tensor:
        """All stages on a (row range of the) normalised mosaic ``(B, 1, h, W)``; returns the rows
        ``keep = (first, end)`` of the result (all rows by default).

        The halo of a tile is only needed by the spatial stages: after the denoise, the rows are
        cut to ``keep`` plus the sharpening radius, so the per-pixel stages skip the halo."""
        # Without autograd, clips run in place on the fresh tensor each stage returns.
        clip = clamp01 if torch.is_grad_enabled() and (gains.requires_grad or mosaic.requires_grad) else _clamp01_
        x = white_balance_demosaic(mosaic, gains, batch.cfa_index, batch.patterns,  # = demosaic(white_balance(..))
                                   self.demosaic_method, self.highlight)
        x = clip(apply_color_matrix(x, batch.cam_to_srgb))
        # Without autograd each stage returns a fresh tensor that only the next stage reads, so
        # the later stages may use it as scratch or output (overwrite).
        own = clip is _clamp01_
        if active["denoise"]:
            x = clip(denoise(x, P["denoise_luma"], P["denoise_chroma"], overwrite=own))
        if keep is not None:
            r = SHARPEN_RADIUS if active["sharpen"] else 0
            c0, c1 = max(0, keep[0] - r), min(x.shape[-2], keep[1] + r)
            if (c0, c1) != (0, x.shape[-2]):
                x = x[:, :, c0:c1]
            keep = (keep[0] - c0, keep[1] - c0)
        hs = active["highlights_shadows"]
        tone = dict(gain=torch.exp2(per_image(P["exposure"], x)) if active["exposure"] else None,
                    highlights=per_image(P["highlights"], x) if hs else None,
                    shadows=per_image(P["shadows"], x) if hs else None,
                    saturation=per_image(P["saturation"], x) if active["saturation"] else None,
                    vibrance=per_image(P["vibrance"], x) if active["saturation"] else None,
                    brightness=per_image(P["brightness"], x) if active["brightness"] else None,
                    contrast=per_image(P["contrast"], x) if active["contrast"] else None)
        if self.native and native.available(x):
            # exposure ... contrast in one compiled pass per pixel (isp.stages.native), equal to
            # the torch chain below
            x = native.tone_chain(x, **tone)
        else:
            x = _tone_chain_torch(x, tone, own)
        x = sharpen(x, P["sharpen"], overwrite=own) if active["sharpen"] else clip(x)  # sharpen clips itself
        if keep is not None and keep != (0, x.shape[-2]):
            x = x[:, :, keep[0] : keep[1]]
        return x


def _tone_chain_torch(x: torch.Tensor, t: dict, own: bool) -> torch.Tensor:
    """Exposure ... contrast as the fused torch nodes of :mod:`isp.stages.fused`; they equal
    adjust_exposure -> adjust_highlights_shadows, saturate and srgb_encode -> adjust_brightness
    -> adjust_contrast."""
    if t["gain"] is not None or t["highlights"] is not None:
        x = exposure_tone(x, t["gain"], t["highlights"], t["shadows"], overwrite=own)
    if t["saturation"] is not None:
        x = saturate_fused(x, t["saturation"], t["vibrance"], overwrite=own)  # = saturate
    # x is clipped to [0, 1] here, so the encoding needs no clamp at 0
    return encode_tone(x, t["brightness"], t["contrast"], overwrite=own)


def _clamp01_(x: torch.Tensor) -> torch.Tensor:
    """In-place clip of a fresh tensor (no autograd)."""
    return x.clamp_(0.0, 1.0)


def apply_orientation(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """Rotate an image as LibRaw's ``flip`` says.

    Args:
        img: ``(..., H, W)``.
        orientation: 0 (none), 3 (180 deg), 5 (90 deg counter-clockwise), 6 (90 deg clockwise).

    Returns:
        The displayed image.
    """
    o = int(orientation)
    if o == 0:
        return img
    if o == 3:
        return torch.flip(img, dims=(-2, -1))
    if o == 5:
        return torch.rot90(img, 1, dims=(-2, -1))
    if o == 6:
        return torch.rot90(img, -1, dims=(-2, -1))
    raise ValueError(f"orientation must be 0, 3, 5 or 6, got {orientation}")


_DEFAULT_ISP: dict[str, ISP] = {}


def render(raw: RawImage, params=None, *, max_side: int | None = None, device="cpu", validate: bool = True) -> torch.Tensor:
    """Render one RAW image to display-oriented sRGB (no gradient).

    Args:
        raw: the image.
        params: ``(P,)`` or ``(1, P)`` physical parameters; None = neutral.
        max_side: downscale (Bayer-aware) so the longer side is at most this; None = full size.
        device: torch device.

    Returns:
        ``(3, H, W)`` float32 sRGB in ``[0, 1]`` on CPU... on ``device``.
    """
    if max_side is not None:
        raw = raw.preview(max_side)
    key = str(device)
    if key not in _DEFAULT_ISP:
        _DEFAULT_ISP[key] = ISP().to(device).eval()
    with torch.inference_mode():
        batch = RawBatch.from_raws([raw], device=device)
        if params is not None:
            params = torch.as_tensor(params, dtype=torch.float32).reshape(1, NUM_PARAMS)
        out = _DEFAULT_ISP[key](batch, params, validate=validate)[0]
        return apply_orientation(out, raw.orientation)
