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
    "ImageSet",
    "crop_windows",
    "preview_for_crop",
    "prepare_raw",
    "StepResult",
    "TuningCore",
    "colour_cast",
    "load_image_set",
    "potential",
]

# How ``load_image_set`` cuts crops out of each preview: the center only, the center and the four
# corners (the IQA test protocol), or the center plus random windows (training augmentation).
CROP_MODES = ("center", "five", "random")


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
    """

    raws: list
    ids: list[str]
    crop: tuple[int, int]
    flips: list[bool] | None = None

    def __len__(self) -> int:
        return len(self.raws)

    def flip_mask(self, idx: Sequence[int]) -> list[bool]:
        """Which of the entries ``idx`` are mirrored."""
        return [bool(self.flips[int(i)]) if self.flips else False for i in idx]


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


def prepare_raw(raw, crop: tuple[int, int], preview_side: int):
    """:func:`preview_for_crop` for an in-memory ``isp.RawImage`` (what the predictor uses)."""
    return preview_for_crop(lambda s: raw.preview(s) if max(raw.mosaic.shape) > s else raw, crop, preview_side)


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
        crop_mode, crops_per_image: which windows become entries (:func:`crop_windows`).
        flip: mirror every second ``random`` window left-right (augmentation; ``ImageSet.flips``).
        augment_seed: seed of the random windows.
    """
    import sys

    import isp
    from isp import datasets, fivek

    entries = datasets.load_split(root, split=split_name, seed=seed)[split]  # FiveK, sample set or any RAW folder
    if limit is not None:
        entries = entries[:limit]
    if not entries:
        raise ValueError(f"the {split!r} split of {root} is empty")
    crop = tuple(int(c) for c in crop)
    rng = np.random.default_rng(augment_seed)
    raws, ids, flips = [], [], []
    for e in entries:
        try:
            preview = preview_for_crop(lambda side, e=e: fivek.cached_preview(e.dng, side), crop, preview_side, cropped=False)
        except isp.RawError as exc:  # a broken file in a FiveK root (RAW folders skip them in load_split)
            print(f"[envs] skipped unreadable RAW file {e.dng}: {exc}", file=sys.stderr)
            continue
        for k, (name, top, left) in enumerate(crop_windows(preview.mosaic.shape, crop, crop_mode, crops_per_image, rng)):
            raws.append(preview.replace(mosaic=preview.mosaic[top : top + crop[0], left : left + crop[1]]))
            ids.append(f"{e.id}/{name}" if name else e.id)
            flips.append(bool(flip) and k % 2 == 1)
    if not raws:
        raise ValueError(f"no usable RAW file in the {split!r} split of {root}")
    return ImageSet(raws=raws, ids=ids, crop=crop, flips=flips if any(flips) else None)


def thumbnail(images: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downscales ``(B, 3, H, W)`` images to ``(B, 3, size, size)``."""
    return F.adaptive_avg_pool2d(images, (size, size))


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


def potential(
    normalized, clipped, clipped_neutral, unit, *, reward_scale, clip_penalty, param_penalty,
    cast=None, cast_neutral=None, cast_penalty: float = 0.0,
):
    """The regularised score whose per-step change is the reward.

    ``reward_scale * normalized - clip_penalty * relu(clipped - clipped_neutral)
    - cast_penalty * relu(cast - cast_neutral) - param_penalty * mean(unit**2)``.
    Works on numpy arrays or tensors of shape ``(B,)`` (``unit``: ``(B, P)``); the cast term is
    left out when ``cast_penalty`` is 0.
    """
    if isinstance(normalized, torch.Tensor):
        relu = lambda x: torch.clamp(x, min=0.0)  # noqa: E731
        reg = (unit**2).mean(dim=-1)
    else:
        relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
        reg = (np.asarray(unit) ** 2).mean(axis=-1)
    out = reward_scale * normalized - clip_penalty * relu(clipped - clipped_neutral) - param_penalty * reg
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
    """

    score: np.ndarray
    normalized: np.ndarray
    attributes: np.ndarray
    thumb: np.ndarray
    clipped: np.ndarray
    images: np.ndarray | None = None
    cast: np.ndarray | None = None

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
        )


class TuningCore:
    """Image set + ISP + reward model, evaluated in batches.

    Args:
        images: the :class:`ImageSet` episodes draw from.
        reward: a :class:`envs.rewards.RewardModel` or a registry name.
        reward_checkpoint: checkpoint for a named learned reward (``None`` = its default).
        thumb_size: side of the observation thumbnail.
        device: torch device for the ISP and the reward model.
    """

    def __init__(
        self,
        images: ImageSet,
        reward: RewardModel | str = "attiqa",
        *,
        reward_checkpoint: str | None = None,
        thumb_size: int = 16,
        device: str | torch.device = "cpu",
    ) -> None:
        import isp

        self.isp_module = isp
        self.images = images
        self.device = torch.device(device)
        self.reward = create_reward(reward, reward_checkpoint, self.device) if isinstance(reward, str) else reward
        self.reward = self.reward.to(self.device).eval()
        self.pipeline = isp.ISP().to(self.device).eval()
        self.thumb_size = int(thumb_size)
        self.num_params = int(isp.NUM_PARAMS)
        self._neutral: dict[int, StepResult] = {}
        self.reward_evals = 0  # images scored so far (one per image per forward)

    # -- rendering ------------------------------------------------------------------------
    def raw_batch(self, idx: Sequence[int]):
        """``isp.RawBatch`` of the images at ``idx``."""
        return self.isp_module.RawBatch.from_raws([self.images.raws[int(i)] for i in idx], device=self.device)

    def render(self, idx: Sequence[int], unit: torch.Tensor, batch=None) -> torch.Tensor:
        """Renders images ``idx`` with unit-box params ``unit (B, P)`` -> ``(B, 3, H, W)`` in ``[0, 1]``.

        Differentiable w.r.t. ``unit`` (used by gradient ascent). Entries marked in
        ``images.flips`` come out mirrored left-right. ``batch``: ``raw_batch(idx)`` when the
        caller renders the same images repeatedly (made here otherwise).
        """
        params = self.isp_module.unit_to_params(unit.clamp(-1.0, 1.0))
        imgs = self.pipeline(self.raw_batch(idx) if batch is None else batch, params, validate=False)
        flips = self.images.flip_mask(idx)
        if any(flips):
            mask = torch.tensor(flips, device=imgs.device)[:, None, None, None]
            imgs = torch.where(mask, imgs.flip(-1), imgs)
        return imgs

    @torch.no_grad()
    def evaluate(self, idx: Sequence[int], unit: np.ndarray | torch.Tensor, keep_images: bool = False) -> StepResult:
        """Renders and scores ``B`` (image, params) pairs in one ISP batch and one reward forward.

        Args:
            idx: ``(B,)`` image indices into :attr:`images`.
            unit: ``(B, P)`` params in the unit box ``[-1, 1]`` (0 = neutral).
            keep_images: also return the renders.
        """
        unit_t = torch.as_tensor(np.asarray(unit, dtype=np.float32), device=self.device)
        imgs = self.render(idx, unit_t)
        out = self.reward(imgs)
        self.reward_evals += len(idx)
        return StepResult(
            score=out.score.float().cpu().numpy(),
            normalized=out.normalized.float().cpu().numpy(),
            attributes=out.attributes.float().cpu().numpy(),
            thumb=thumbnail(imgs, self.thumb_size).float().cpu().numpy(),
            clipped=clipped_fraction(imgs).float().cpu().numpy(),
            images=imgs.float().cpu().numpy() if keep_images else None,
            cast=colour_cast(imgs).float().cpu().numpy(),
        )

    def neutral(self, idx: Sequence[int]) -> list[StepResult]:
        """Cached results for the neutral parameters; missing ones are computed in one batch."""
        missing = sorted({int(i) for i in idx if int(i) not in self._neutral})
        if missing:
            res = self.evaluate(missing, np.zeros((len(missing), self.num_params), np.float32))
            for k, i in enumerate(missing):
                self._neutral[i] = res.row(k)
        return [self._neutral[int(i)] for i in idx]
