"""Shared machinery of the ISP tuning environments: the image set and the batched render+score.

One :class:`TuningCore` holds the RAW previews of a split, the ISP and the reward model. Both
the single :class:`envs.IspTuningEnv` and the batched :class:`envs.IspTuningVecEnv` call
:meth:`TuningCore.evaluate`; the vectorised env simply calls it once for all its environments,
so one ISP batch and one reward forward serve every environment at each step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from envs.rewards import RewardModel, create_reward

__all__ = [
    "CROP_MODES",
    "DETAIL_PARAMS",
    "ImageSet",
    "crop_windows",
    "whole_view",
    "make_view",
    "preview_for_crop",
    "prepare_raw",
    "StepResult",
    "TuningCore",
    "colour_cast",
    "load_image_set",
    "potential",
    "trust_region",
]

# How ``load_image_set`` makes the environment's views of each preview: the whole image resampled
# to the crop shape (tone and colour are judged on the whole picture), the center crop only, the
# center and the four corners (the IQA test protocol), or the center plus random windows.
CROP_MODES = ("whole", "center", "five", "random")


@dataclass
class ImageSet:
    """RAW previews of one split, all cropped to the same mosaic shape so they stack.

    One entry per crop: with several crops per photograph an entry's id is ``<image id>/<window>``
    (``a0010/tl``), the center crop keeps the bare image id.

    Attributes:
        raws: list of ``isp.RawImage`` with identical ``mosaic.shape == crop``.
        ids: entry ids (``a0001``, ``a0001/r3`` …), same order.
        crop: ``(H, W)`` mosaic size.
        flips: per entry, whether the rendering is mirrored left-right before it is scored
            (an augmentation; ``None`` = never).
        sources: per entry, the dataset entry (``.id``, ``.dng``, ``.expert_c``, ``.scene``,
            ``.condition``) its crop was cut from (``None`` when built from RawImages directly).
        details: per entry, a window of the *full-resolution* RAW at 1:1 pixel scale with
            ``detail_halo`` extra pixels on every side (:func:`detail_window`), where denoising
            and sharpening are judged at the scale they act on (``None``: no detail term).
        detail_halo: the margin of every detail window, cut off after rendering.
        bases: ``(N, P)`` float32 unit-box parameters each entry's renderings start from (the
            agent's action, gradient ascent and the trust region are offsets from them;
            :func:`base_unit`), or ``None`` for the camera's neutral parameters everywhere.
    """

    raws: list
    ids: list[str]
    crop: tuple[int, int]
    flips: list[bool] | None = None
    sources: list | None = None
    details: list | None = None
    detail_halo: int = 0
    skipped: list | None = None  # (RAW path, exception) of entries that could not be read
    bases: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.raws)

    def flip_mask(self, idx: Sequence[int]) -> list[bool]:
        """Which of the entries ``idx`` are mirrored."""
        return [bool(self.flips[int(i)]) if self.flips else False for i in idx]

    def center_indices(self) -> list[int]:
        """The entries that are the center crop of their photograph (one per photograph)."""
        return [i for i, name in enumerate(self.ids) if "/" not in name]


def preview_for_crop(get_preview: Callable[[int], object], crop: tuple[int, int], preview_side: int, *, cropped: bool = True):
    """The environment's preprocessing: a preview of longest side ``preview_side``, center-cropped.

    When that preview's short side is too small for the crop (panoramas, portrait mosaics), a
    larger preview is taken, just large enough for the crop.

    Args:
        get_preview: ``side -> isp.RawImage`` preview whose longest side is ``side`` (e.g.
            ``lambda s: isp.fivek.cached_preview(dng, s)``).
        crop: ``(H, W)`` mosaic crop; even numbers.
        preview_side: longest side of the preview.
        cropped: ``False`` returns the whole preview (large enough for the crop) instead.

    Raises:
        ValueError: even the full-size RAW is smaller than the crop.
    """
    h, w = crop
    raw = get_preview(preview_side)
    H, W = raw.mosaic.shape
    side = preview_side
    while H < h or W < w:  # previews may bin by whole factors: grow until the crop fits
        side = max(side * 2, int(math.ceil(max(H, W) * max(h / H, w / W))))
        bigger = get_preview(side)
        if bigger.mosaic.shape == (H, W) or side > 1 << 15:
            raise ValueError(
                f"RAW {getattr(raw, 'path', None) or ''} is {H}x{W} at most, smaller than the crop {h}x{w}; lower env.crop"
            )
        raw = bigger
        H, W = raw.mosaic.shape
    return raw.center_crop(h, w) if cropped else raw


def whole_view(raw, shape: tuple[int, int]):
    """The whole image of ``raw`` resampled to a mosaic of ``shape`` (the same CFA phase).

    Each of the four CFA planes is resampled on its own (bilinear with antialiasing, so a
    downscale averages like a box filter) and the planes are interleaved again, so the result is a
    valid Bayer mosaic of the whole scene at a fixed size: views of photographs of any size and
    aspect ratio stack into one batch (the aspect ratio is not kept; tone and colour do not depend
    on it).

    Args:
        raw: an ``isp.RawImage`` (usually a preview a little larger than ``shape``).
        shape: ``(H, W)`` of the view, even numbers.
    """
    h, w = (int(v) for v in shape)
    if h % 2 or w % 2:
        raise ValueError(f"view shape must be even, got {shape}")
    m = torch.from_numpy(np.array(raw.mosaic, dtype=np.float32))
    H, W = m.shape[0] // 2 * 2, m.shape[1] // 2 * 2
    planes = m[:H, :W].reshape(H // 2, 2, W // 2, 2).permute(1, 3, 0, 2).reshape(1, 4, H // 2, W // 2)
    if planes.shape[-2:] != (h // 2, w // 2):
        planes = F.interpolate(planes, size=(h // 2, w // 2), mode="bilinear", align_corners=False, antialias=True)
    mosaic = planes.reshape(2, 2, h // 2, w // 2).permute(2, 0, 3, 1).reshape(h, w)
    return raw.replace(mosaic=np.ascontiguousarray(mosaic.numpy(), dtype=np.float32))


def detail_window(raw, size: int, halo: int, rng=None, *, fit: bool = False):
    """A ``size`` x ``size`` window of a full-resolution RAW plus ``halo`` pixels on every side.

    Rendering the window and cutting ``halo`` pixels off each side gives the same pixels as
    rendering the whole RAW and cutting out the window, provided ``halo`` covers the ISP's
    neighbourhoods (demosaic, denoise, sharpening); that is what makes the detail term of the
    reward see denoising and sharpening exactly as ``render.py`` applies them at full size.

    Args:
        raw: the full-resolution ``isp.RawImage``.
        size: window side (even). halo: margin (even).
        rng: ``numpy.random.Generator`` for a random position; ``None`` = the center.
        fit: a RAW smaller than the window with its halo gets the largest window that fits
            (same halo) instead of the error; one with no room for 8 px inside the halo still
            raises.

    Returns:
        ``(window RawImage of side size + 2 * halo, top, left)`` where ``top, left`` locate the
        window (without halo) in the RAW.

    Raises:
        ValueError: the RAW is smaller than the window with its halo.
    """
    size, halo = int(size) // 2 * 2, int(halo) // 2 * 2
    H, W = raw.mosaic.shape
    if fit and min(H, W) < size + 2 * halo and (min(H, W) - 2 * halo) // 2 * 2 >= 8:
        size = (min(H, W) - 2 * halo) // 2 * 2
    full = size + 2 * halo
    if H < full or W < full:
        raise ValueError(f"RAW {getattr(raw, 'path', '') or ''} is {H}x{W}, smaller than the detail window {full}x{full} "
                         "(detail_crop + 2 * detail_halo); lower env.detail_crop, or set it to 0 for small files")
    if rng is None:
        top, left = (H - full) // 2 // 2 * 2, (W - full) // 2 // 2 * 2
    else:
        top, left = int(rng.integers(0, H - full + 1)) // 2 * 2, int(rng.integers(0, W - full + 1)) // 2 * 2
    win = raw.replace(mosaic=np.ascontiguousarray(raw.mosaic[top : top + full, left : left + full]))
    return win, top + halo, left + halo


def make_view(get_preview: Callable[[int], object], crop: tuple[int, int], preview_side: int, mode: str = "center"):
    """The environment's view of one RAW: ``whole`` (:func:`whole_view`) or the ``center`` crop.

    Args:
        get_preview: ``side -> isp.RawImage`` preview whose longest side is ``side``.
        crop: ``(H, W)`` of the view. preview_side: longest side of the preview it is cut from.
        mode: ``"whole"`` or ``"center"`` (the first window of every other crop mode).
    """
    if mode == "whole":
        return whole_view(get_preview(max(int(preview_side), *crop)), crop)
    return preview_for_crop(get_preview, crop, preview_side)


def crop_windows(shape: tuple[int, int], crop: tuple[int, int], mode: str = "center", n: int = 1, rng=None) -> list[tuple[str, int, int]]:
    """Top-left corners of the crops cut out of a mosaic, with even offsets (the CFA phase is kept).

    Args:
        shape: ``(H, W)`` of the mosaic. crop: ``(h, w)``, even.
        mode: ``center`` (one window), ``five`` (center + four corners), ``random`` (center + ``n - 1``
            uniformly drawn windows).
        n: number of windows in ``random`` mode (the center included).
        rng: ``numpy.random.Generator`` for ``random`` mode.

    Returns:
        ``[(name, top, left), ...]``, the center first with the name ``""``.
    """
    H, W = shape
    h, w = crop
    if mode not in CROP_MODES:
        raise ValueError(f"crop mode must be one of {CROP_MODES}, got {mode!r}")
    even = lambda v: int(v) // 2 * 2  # noqa: E731
    out = [("", even((H - h) // 2), even((W - w) // 2))]
    if mode == "five":
        out += [("tl", 0, 0), ("tr", 0, even(W - w)), ("bl", even(H - h), 0), ("br", even(H - h), even(W - w))]
    elif mode == "random":
        for k in range(1, int(n)):
            out.append((f"r{k}", even(rng.integers(0, H - h + 1)), even(rng.integers(0, W - w + 1))))
    return out


def prepare_raw(raw, crop: tuple[int, int], preview_side: int, mode: str = "center"):
    """:func:`make_view` for an in-memory ``isp.RawImage`` (what the predictor uses)."""
    return make_view(lambda s: raw.preview(s) if max(raw.mosaic.shape) > s else raw, crop, preview_side, mode)


def base_unit(raw, auto_denoise: bool = True, auto_exposure: bool = False) -> np.ndarray:
    """The unit-box parameters a RAW's renderings start from: the camera's neutral rendering,
    brightened until its highlights reach white when ``auto_exposure``
    (:func:`isp.exposure.highlight_exposure`), with the denoising its measured noise calls for at
    that exposure when ``auto_denoise`` (:func:`isp.noise.denoise_strengths` on the
    full-resolution ``raw``). ``(P,)`` float32."""
    import isp
    from isp import exposure, noise

    physical = isp.neutral_params().reshape(-1).clone()
    ev = exposure.highlight_exposure(raw) if auto_exposure else 0.0
    physical[isp.PARAM_INDEX["exposure"]] = ev
    if auto_denoise:
        luma, chroma = noise.denoise_strengths(raw, exposure_ev=ev)
        physical[isp.PARAM_INDEX["denoise_luma"]] = luma
        physical[isp.PARAM_INDEX["denoise_chroma"]] = chroma
    return isp.params_to_unit(physical[None])[0].numpy().astype(np.float32)


def load_image_set(
    root: str | Path,
    split: str = "train",
    *,
    preview_side: int = 256,
    crop: tuple[int, int] = (128, 128),
    split_name: str = "auto",
    seed: int = 0,
    limit: int | None = None,
    crop_mode: str = "center",
    crops_per_image: int = 1,
    flip: bool = False,
    augment_seed: int = 0,
    detail_crop: int = 0,
    detail_halo: int = 16,
    expert_dir: str | Path | None = None,
    auto_denoise: bool = False,
    auto_exposure: bool = False,
) -> ImageSet:
    """Decodes (once, cached on disk by ``isp.fivek.cached_preview``) and crops one split.

    Args:
        root: MIT-Adobe-5K root, the sample set or any folder of RAW files (``isp.datasets``).
        split: ``"train"`` or ``"test"``.
        preview_side: longest side of the cached preview.
        crop: ``(H, W)`` crop of every preview's mosaic.
        split_name: which split (``isp.datasets.load_split``'s ``split``).
        seed: split seed.
        limit: keep only the first ``limit`` images (``None`` = all).
        crop_mode, crops_per_image: which views become entries: ``whole`` (:func:`whole_view`, one
            per RAW) or windows of the preview (:func:`crop_windows`).
        flip: mirror every second ``random`` window left-right, or with ``whole`` add each RAW's
            mirrored view as a second entry (augmentation; ``ImageSet.flips``).
        augment_seed: seed of the random windows.
        detail_crop: side of a 1:1 window of each full-resolution RAW kept beside its views
            (:attr:`ImageSet.details`; 0 = none). The training split draws its position from
            ``augment_seed``, the test split takes the center.
        detail_halo: margin of the detail windows (:func:`detail_window`).
        expert_dir: expert renderings of a plain RAW folder, paired by file (``isp.datasets.load_split``).
        auto_denoise: measure each full-resolution RAW's noise and start its entries from the
            denoising it calls for (:func:`base_unit`, :attr:`ImageSet.bases`).
        auto_exposure: start its entries brightened until the highlights reach white (:func:`base_unit`).
    """
    import sys

    import isp
    from isp import datasets

    entries = datasets.load_split(root, split=split_name, seed=seed, expert_dir=expert_dir)[split]  # FiveK, sample set or any RAW folder
    if limit is not None:
        entries = entries[:limit]
    if not entries:
        raise ValueError(f"the {split!r} split of {root} is empty")
    crop = tuple(int(c) for c in crop)
    rng = np.random.default_rng(augment_seed)
    raws, ids, flips, sources, details, bases = [], [], [], [], [], []
    detail_rng = np.random.default_rng([augment_seed, 1]) if split == "train" else None
    skipped = []
    for e in entries:
        n_before = len(raws)
        try:
            _append_views(e, raws, ids, flips, sources, crop, preview_side, crop_mode, crops_per_image, flip, rng)
            full = isp.read_raw(e.dng) if detail_crop or auto_denoise or auto_exposure else None
            if detail_crop:
                win, _, _ = detail_window(full, detail_crop, detail_halo, detail_rng)
                details += [win] * (len(raws) - n_before)
            if auto_denoise or auto_exposure:
                bases += [base_unit(full, auto_denoise, auto_exposure)] * (len(raws) - n_before)
        except (isp.RawError, OSError) as exc:  # a broken or unreadable file in a FiveK root (RAW folders skip them in load_split)
            from rlisp_common.exit_codes import describe

            del raws[n_before:], ids[n_before:], flips[n_before:], sources[n_before:], details[n_before:], bases[n_before:]
            skipped.append((e.dng, exc))
            print(f"[envs] skipped unreadable RAW file {e.dng}: {describe(exc, e.dng)[1]}", file=sys.stderr)
    if not raws:
        raise ValueError(f"no usable RAW file in the {split!r} split of {root}")
    return ImageSet(raws=raws, ids=ids, crop=crop, flips=flips if any(flips) else None, sources=sources,
                    details=details or None, detail_halo=int(detail_halo) // 2 * 2 if details else 0, skipped=skipped or None,
                    bases=np.stack(bases) if bases else None)


def _append_views(e, raws, ids, flips, sources, crop, preview_side, crop_mode, crops_per_image, flip, rng) -> None:
    """The views of one dataset entry (see :func:`load_image_set`), appended to the lists."""
    from isp import fivek

    if crop_mode == "whole":
        view = make_view(lambda side: fivek.cached_preview(e.dng, side), crop, preview_side, "whole")
        for k in range(2 if flip else 1):
            raws.append(view)
            ids.append(e.id if k == 0 else f"{e.id}/flip")
            flips.append(k == 1)
            sources.append(e)
        return
    preview = preview_for_crop(lambda side: fivek.cached_preview(e.dng, side), crop, preview_side, cropped=False)
    for k, (name, top, left) in enumerate(crop_windows(preview.mosaic.shape, crop, crop_mode, crops_per_image, rng)):
        raws.append(preview.replace(mosaic=preview.mosaic[top : top + crop[0], left : left + crop[1]]))
        ids.append(f"{e.id}/{name}" if name else e.id)
        flips.append(bool(flip) and k % 2 == 1)
        sources.append(e)


def thumbnail(images: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downscales ``(B, 3, H, W)`` images to ``(B, 3, size, size)``."""
    return F.adaptive_avg_pool2d(images, (size, size))


def luma_histogram(images: torch.Tensor, bins: int) -> torch.Tensor:
    """Fraction of pixels per bin of display-encoded luma (sRGB's weights, ``isp.color.LUMA_WEIGHTS``), ``(B, bins)``.

    Tells the agent where the tones of a rendering lie (dark, bright, clipped) beyond what a
    thumbnail's averages show.
    """
    from isp.color import LUMA_WEIGHTS

    w = torch.tensor(LUMA_WEIGHTS, device=images.device, dtype=images.dtype)
    luma = torch.einsum("bchw,c->bhw", images, w).flatten(1)
    idx = (luma * bins).long().clamp(0, bins - 1)
    counts = torch.zeros(images.shape[0], bins, device=images.device, dtype=images.dtype)
    counts.scatter_add_(1, idx, torch.ones_like(luma))
    return counts / luma.shape[1]


def clipped_fraction(images: torch.Tensor, eps: float = 1.0 / 255.0) -> torch.Tensor:
    """Fraction of pixels with a channel at black (``<= eps``) or white (``>= 1 - eps``).

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.

    Returns:
        ``(B,)`` in ``[0, 1]``: crushed shadows plus blown highlights.
    """
    clipped = ((images <= eps) | (images >= 1.0 - eps)).any(dim=1)
    return clipped.float().mean(dim=(1, 2))


def colour_cast(images: torch.Tensor) -> torch.Tensor:
    """Distance of the mean colour from grey: ``||mean_rgb - mean(mean_rgb)||``, ``(B,)``.

    Grows with a global colour cast (a warm or magenta shift) and with saturation of the
    dominant colour; the environment penalises its rise over the neutral rendering.

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.
    """
    m = images.mean(dim=(2, 3))
    return (m - m.mean(dim=1, keepdim=True)).norm(dim=1)


#: The detail parameters: denoising and sharpening act on pixel neighbourhoods, so the reward
#: judges them on the 1:1 detail windows (``TuningCore.detail_weight``), and ``detail_penalty``
#: may give them a trust region of their own.
DETAIL_PARAMS: tuple[str, ...] = ("denoise_luma", "denoise_chroma", "sharpen")


def trust_region(unit, param_penalty: float, detail_penalty: float | None = None):
    """The potential's parameter term: ``param_penalty * mean(unit**2)`` over the ``P`` controls.

    With ``detail_penalty`` set, the :data:`DETAIL_PARAMS` are weighted by it instead:
    ``(param_penalty * sum_tone(u**2) + detail_penalty * sum_detail(u**2)) / P``.
    ``unit``: ``(B, P)`` numpy array or tensor; returns ``(B,)``.
    """
    is_tensor = isinstance(unit, torch.Tensor)
    sq = unit**2 if is_tensor else np.asarray(unit) ** 2
    if detail_penalty is None:
        return param_penalty * (sq.mean(dim=-1) if is_tensor else sq.mean(axis=-1))
    import isp

    w = np.full(sq.shape[-1], float(param_penalty))
    w[[isp.PARAM_INDEX[n] for n in DETAIL_PARAMS]] = float(detail_penalty)
    if is_tensor:
        return (sq * torch.as_tensor(w, dtype=sq.dtype, device=sq.device)).mean(dim=-1)
    return (sq * w).mean(axis=-1)


def potential(
    normalized, clipped, clipped_neutral, unit, *, reward_scale, clip_penalty, param_penalty,
    cast=None, cast_neutral=None, cast_penalty: float = 0.0, detail_penalty: float | None = None,
):
    """The regularised score whose per-step change is the reward.

    ``reward_scale * normalized - clip_penalty * relu(clipped - clipped_neutral)
    - cast_penalty * relu(cast - cast_neutral) - trust_region(unit)`` (:func:`trust_region`:
    ``param_penalty * mean(unit**2)``, the detail parameters weighted by ``detail_penalty`` when
    it is set). Works on numpy arrays or tensors of shape ``(B,)`` (``unit``: ``(B, P)``); the
    cast term is left out when ``cast_penalty`` is 0.
    """
    if isinstance(normalized, torch.Tensor):
        relu = lambda x: torch.clamp(x, min=0.0)  # noqa: E731
    else:
        relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    reg = trust_region(unit, param_penalty, detail_penalty)
    out = reward_scale * normalized - clip_penalty * relu(clipped - clipped_neutral) - reg
    if cast_penalty:
        out = out - cast_penalty * relu(cast - cast_neutral)
    return out


@dataclass
class StepResult:
    """Output of :meth:`TuningCore.evaluate` for ``B`` (image, params) pairs, numpy on CPU.

    Attributes:
        score: ``(B,)`` raw reward-model score.
        normalized: ``(B,)`` score, higher better, declared range -> ``[0, 1]``.
        attributes: ``(B, 5)`` attribute scores.
        thumb: ``(B, 3, t, t)`` float thumbnail of the render in ``[0, 1]``.
        clipped: ``(B,)`` clipped-pixel fraction of the render.
        images: ``(B, 3, H, W)`` renders (only when requested), else ``None``.
        cast: ``(B,)`` :func:`colour_cast` of the render.
        hist: ``(B, bins)`` :func:`luma_histogram` of the render (``(B, 0)`` without bins).
        detail_attributes: ``(B, 5)`` attribute scores of the rendered 1:1 detail windows when the
            core observes them (``TuningCore.detail_observation``; zeros without a window), else ``None``.
    """

    score: np.ndarray
    normalized: np.ndarray
    attributes: np.ndarray
    thumb: np.ndarray
    clipped: np.ndarray
    images: np.ndarray | None = None
    cast: np.ndarray | None = None
    hist: np.ndarray | None = None
    detail_attributes: np.ndarray | None = None

    def row(self, i: int) -> "StepResult":
        """The ``i``-th entry as a batch of one."""
        return StepResult(
            self.score[i : i + 1],
            self.normalized[i : i + 1],
            self.attributes[i : i + 1],
            self.thumb[i : i + 1],
            self.clipped[i : i + 1],
            None if self.images is None else self.images[i : i + 1],
            None if self.cast is None else self.cast[i : i + 1],
            None if self.hist is None else self.hist[i : i + 1],
            None if self.detail_attributes is None else self.detail_attributes[i : i + 1],
        )


class TuningCore:
    """Image set + ISP + reward model, evaluated in batches.

    Args:
        images: the :class:`ImageSet` episodes draw from.
        reward: a :class:`envs.rewards.RewardModel` or a registry name.
        reward_checkpoint: checkpoint for a named learned reward (``None`` = its default).
        thumb_size: side of the observation thumbnail.
        hist_bins: bins of the observation's luma histogram (0 = none).
        detail_weight: weight of the reward model's score of the 1:1 detail windows
            (:attr:`ImageSet.details`) in the score; the view's score gets ``1 - detail_weight``.
        detail_observation: :meth:`evaluate` also returns the windows' attribute scores
            (``StepResult.detail_attributes``; zeros when there is no detail term).
        device: torch device for the ISP and the reward model.
    """

    def __init__(
        self,
        images: ImageSet,
        reward: RewardModel | str = "attiqa",
        *,
        reward_checkpoint: str | None = None,
        thumb_size: int = 16,
        hist_bins: int = 0,
        detail_weight: float = 0.0,
        detail_observation: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        import isp

        self.isp_module = isp
        self.images = images
        self.device = torch.device(device)
        # The registry builds a reward once, frozen, in eval mode and on its device (envs.rewards).
        self.reward = create_reward(reward, reward_checkpoint, self.device) if isinstance(reward, str) else reward
        dev = next((p.device for p in self.reward.parameters()), self.device)
        if dev.type != self.device.type:
            raise ValueError(f"the reward model is on {dev}, the environment on {self.device}; build it with "
                             f"envs.create_reward(..., device={str(self.device)!r})")
        self.pipeline = isp.ISP().to(self.device).eval()
        self.thumb_size = int(thumb_size)
        self.hist_bins = int(hist_bins)
        self.detail_weight = float(detail_weight) if images.details else 0.0
        if not 0.0 <= self.detail_weight <= 1.0:
            raise ValueError(f"detail_weight must lie in [0, 1], got {detail_weight}")
        self.detail_observation = bool(detail_observation)
        self.num_params = int(isp.NUM_PARAMS)
        self._neutral: dict[int, StepResult] = {}
        self.reward_evals = 0  # images scored so far (one per image per forward)

    # -- the entries' starting parameters -------------------------------------------------------
    def base(self, idx: Sequence[int]) -> np.ndarray:
        """``(B, P)`` unit-box parameters the entries ``idx`` start from (:attr:`ImageSet.bases`; zeros without)."""
        if self.images.bases is None:
            return np.zeros((len(idx), self.num_params), np.float32)
        return self.images.bases[[int(i) for i in idx]]

    def absolute(self, idx: Sequence[int], unit):
        """The unit-box parameters rendered for offsets ``unit (B, P)`` from the entries' bases,
        clipped to the box (numpy in, numpy out; a tensor in, a tensor out, differentiable)."""
        base = self.base(idx)
        if isinstance(unit, torch.Tensor):
            return (unit + torch.as_tensor(base, dtype=unit.dtype, device=unit.device)).clamp(-1.0, 1.0)
        return np.clip(np.asarray(unit, np.float32) + base, -1.0, 1.0).astype(np.float32)

    def offset(self, idx: Sequence[int], unit: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`absolute` inside the box: the offsets that render unit-box params ``unit``."""
        return (np.asarray(unit, np.float32) - self.base(idx)).astype(np.float32)

    # -- rendering ------------------------------------------------------------------------
    def raw_batch(self, idx: Sequence[int]):
        """``isp.RawBatch`` of the images at ``idx``."""
        return self.isp_module.RawBatch.from_raws([self.images.raws[int(i)] for i in idx], device=self.device)

    def render(self, idx: Sequence[int], unit: torch.Tensor, batch=None) -> torch.Tensor:
        """Renders images ``idx`` with unit-box params ``unit (B, P)`` -> ``(B, 3, H, W)`` in ``[0, 1]``.

        Differentiable w.r.t. ``unit`` (used by gradient ascent); ``unit`` is an offset from the
        entries' bases (:meth:`absolute`). Entries marked in
        ``images.flips`` come out mirrored left-right. ``batch``: ``raw_batch(idx)`` when the
        caller renders the same images repeatedly (made here otherwise).
        """
        params = self.isp_module.unit_to_params(self.absolute(idx, unit))
        imgs = self.pipeline(self.raw_batch(idx) if batch is None else batch, params, validate=False)
        flips = self.images.flip_mask(idx)
        if any(flips):
            mask = torch.tensor(flips, device=imgs.device)[:, None, None, None]
            imgs = torch.where(mask, imgs.flip(-1), imgs)
        return imgs

    def render_detail(self, idx: Sequence[int], unit: torch.Tensor, batch=None) -> torch.Tensor:
        """Renders the 1:1 detail windows of images ``idx`` (halo cut off), ``(B, 3, s, s)``."""
        params = self.isp_module.unit_to_params(self.absolute(idx, unit))
        if batch is None:
            batch = self.isp_module.RawBatch.from_raws([self.images.details[int(i)] for i in idx], device=self.device)
        imgs = self.pipeline(batch, params, validate=False)
        h = self.images.detail_halo
        return imgs[..., h : imgs.shape[-2] - h, h : imgs.shape[-1] - h] if h else imgs

    def detail_batch(self, idx: Sequence[int]):
        """``isp.RawBatch`` of the detail windows of ``idx`` (``None`` without a detail term)."""
        if not self.detail_weight:
            return None
        return self.isp_module.RawBatch.from_raws([self.images.details[int(i)] for i in idx], device=self.device)

    def score(self, idx: Sequence[int], unit: torch.Tensor, batch=None, detail_batch=None):
        """Renders the views (and detail windows) and scores them; differentiable w.r.t. ``unit``.

        Returns:
            ``(RewardOutput, view renders)``: score and normalised score mix the view's and the
            detail windows' by ``detail_weight``; attributes are the view's.
        """
        out, imgs, _ = self._score(idx, unit, batch, detail_batch)
        return out, imgs

    def _score(self, idx, unit, batch=None, detail_batch=None):
        """:meth:`score` plus the detail windows' attribute scores (``None`` without a detail term)."""
        imgs = self.render(idx, unit, batch=batch)
        out = self.reward(imgs)
        detail_attributes = None
        if self.detail_weight:
            d = self.reward(self.render_detail(idx, unit, batch=detail_batch))
            w = self.detail_weight
            out = type(out)((1 - w) * out.score + w * d.score, (1 - w) * out.normalized + w * d.normalized, out.attributes)
            detail_attributes = d.attributes
        return out, imgs, detail_attributes

    @torch.no_grad()
    def evaluate(self, idx: Sequence[int], unit: np.ndarray | torch.Tensor, keep_images: bool = False) -> StepResult:
        """Renders and scores ``B`` (image, params) pairs in one ISP batch and one reward forward.

        Args:
            idx: ``(B,)`` image indices into :attr:`images`.
            unit: ``(B, P)`` params in the unit box ``[-1, 1]``, offsets from the entries' bases
                (:meth:`absolute`; 0 = the base, the camera's neutral parameters without bases).
            keep_images: also return the renders.
        """
        unit_t = torch.as_tensor(np.asarray(unit, dtype=np.float32), device=self.device)
        out, imgs, detail_attr = self._score(idx, unit_t)
        self.reward_evals += len(idx)
        if not self.detail_observation:
            detail_attr = None
        elif detail_attr is None:
            detail_attr = np.zeros((len(idx), out.attributes.shape[1]), np.float32)
        else:
            detail_attr = detail_attr.float().cpu().numpy()
        return StepResult(
            score=out.score.float().cpu().numpy(),
            normalized=out.normalized.float().cpu().numpy(),
            attributes=out.attributes.float().cpu().numpy(),
            thumb=thumbnail(imgs, self.thumb_size).float().cpu().numpy(),
            clipped=clipped_fraction(imgs).float().cpu().numpy(),
            images=imgs.float().cpu().numpy() if keep_images else None,
            cast=colour_cast(imgs).float().cpu().numpy(),
            hist=luma_histogram(imgs, self.hist_bins).float().cpu().numpy() if self.hist_bins else np.zeros((len(idx), 0), np.float32),
            detail_attributes=detail_attr,
        )

    def neutral(self, idx: Sequence[int]) -> list[StepResult]:
        """Cached results for the neutral parameters; missing ones are computed in one batch."""
        missing = sorted({int(i) for i in idx if int(i) not in self._neutral})
        if missing:
            res = self.evaluate(missing, np.zeros((len(missing), self.num_params), np.float32))
            for k, i in enumerate(missing):
                self._neutral[i] = res.row(k)
        return [self._neutral[int(i)] for i in idx]
