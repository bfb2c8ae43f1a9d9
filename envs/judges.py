"""Judges: objective measures of a rendering that the agent never trains on.

An agent trained on a learned reward finds what the reward gets wrong, so every evaluation
reports, beside the reward, these measures of the *whole* rendered image:

- against the expert rendering, where one exists: mean CIEDE2000 (colour-science), PSNR and SSIM
  (scikit-image), and the colour cast relative to the expert (distance between the two images'
  mean a*, b*);
- without a reference: the clipped-pixel fraction and the grey-world colour cast (the same
  measures the environment's penalties use, :func:`envs.core.clipped_fraction` and
  :func:`envs.core.colour_cast`).

:func:`judge` measures one image; :func:`summarize` averages per policy and per capture
condition. Images are numpy float arrays ``(H, W, 3)`` in ``[0, 1]`` (sRGB, display-encoded)
or ``(3, H, W)`` tensors.

Example:
    >>> expert = load_expert_srgb("tiff16_c/a0001-x.tif")          # doctest: +SKIP
    >>> expert = align_to(expert, ours)                             # doctest: +SKIP
    >>> compare(ours, expert)                                       # doctest: +SKIP
    {'psnr': 21.3, 'ssim': 0.81, 'delta_e2000': 6.2}
"""
from __future__ import annotations

import os
from pathlib import Path

import colour
import numpy as np
import skimage.metrics
import skimage.transform

__all__ = [
    "JUDGES",
    "LOWER_BETTER",
    "judge",
    "summarize",
    "cast_vs_expert",
    "read_prophoto_tiff",
    "prophoto_to_srgb",
    "load_expert_srgb",
    "srgb_to_lab",
    "delta_e2000",
    "mean_delta_e2000",
    "psnr",
    "ssim",
    "align_to",
    "compare",
    "to_hwc",
]

_PROPHOTO = colour.RGB_COLOURSPACES["ProPhoto RGB"]
_SRGB = colour.RGB_COLOURSPACES["sRGB"]
_D65 = colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D65"]


def to_hwc(img) -> np.ndarray:
    """Converts a torch tensor ``(3, H, W)`` or an array ``(H, W, 3)`` to float64 ``(H, W, 3)``."""
    if hasattr(img, "detach"):
        img = img.detach().cpu().numpy()
        if img.ndim == 3 and img.shape[0] == 3:
            img = np.moveaxis(img, 0, -1)
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3) or (3, H, W), got shape {arr.shape}")
    return arr


def read_prophoto_tiff(path: str | os.PathLike) -> np.ndarray:
    """Reads an expert export (16-bit ProPhoto RGB TIFF, display-encoded) as floats.

    Args:
        path: TIFF file (8- or 16-bit; an alpha channel is dropped).

    Returns:
        ``(H, W, 3)`` float64 in ``[0, 1]``, still ProPhoto RGB encoded.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a readable RGB TIFF.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expert TIFF {str(path)!r} does not exist")
    try:
        arr = tifffile.imread(path)
    except Exception as exc:  # tifffile raises several types on damaged files
        raise ValueError(f"cannot read expert TIFF {str(path)!r}: {exc}") from exc
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expert TIFF {str(path)!r} is not an RGB image (shape {arr.shape})")
    arr = arr[..., :3]
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 65535.0
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(arr.astype(np.float64), 0.0, 1.0)
    raise ValueError(f"expert TIFF {str(path)!r} has unsupported sample type {arr.dtype}")


def prophoto_to_srgb(rgb: np.ndarray) -> np.ndarray:
    """ProPhoto RGB (encoded, D50) -> sRGB (encoded, D65) with Bradford chromatic adaptation.

    Decodes the ProPhoto transfer function, goes through XYZ, adapts D50 -> D65 and encodes with
    the sRGB transfer function (colour-science). Out-of-gamut colours are clipped.

    Args:
        rgb: ``(..., 3)`` ProPhoto RGB in ``[0, 1]``.

    Returns:
        ``(..., 3)`` sRGB in ``[0, 1]``.
    """
    out = colour.RGB_to_RGB(
        np.asarray(rgb, dtype=np.float64),
        _PROPHOTO,
        _SRGB,
        chromatic_adaptation_transform="Bradford",
        apply_cctf_decoding=True,
        apply_cctf_encoding=True,
    )
    return np.clip(np.nan_to_num(out), 0.0, 1.0)


def load_expert_srgb(path: str | os.PathLike) -> np.ndarray:
    """Reads an expert rendering as sRGB; ``(H, W, 3)`` float64 in ``[0, 1]``.

    The colour space is decided by :func:`isp.raw_folder.expert_colour_space` (an embedded ICC
    profile naming sRGB or ProPhoto, else 16-bit = ProPhoto as MIT-Adobe-5K's TIFF exports and
    8-bit = sRGB); ProPhoto is converted with :func:`prophoto_to_srgb`.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a readable RGB image.
    """
    from isp.raw_folder import expert_colour_space

    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        rgb = read_prophoto_tiff(path)  # the samples as they are, whatever their space
    else:
        from PIL import Image

        if not path.is_file():
            raise FileNotFoundError(f"expert image {str(path)!r} does not exist")
        try:
            with Image.open(path) as im:
                arr = np.asarray(im if im.mode in ("I;16", "I;16B") else im.convert("RGB"))
        except OSError as exc:
            raise ValueError(f"cannot read expert image {str(path)!r}: {exc}") from exc
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=-1)
        rgb = arr[..., :3].astype(np.float64) / float(np.iinfo(arr.dtype).max)
    return prophoto_to_srgb(rgb) if expert_colour_space(path) == "prophoto" else np.clip(rgb, 0.0, 1.0)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Encoded sRGB ``(..., 3)`` in ``[0, 1]`` -> CIELAB (D65 reference white) ``(..., 3)``."""
    xyz = colour.sRGB_to_XYZ(np.asarray(rgb, dtype=np.float64))
    return colour.XYZ_to_Lab(xyz, illuminant=_D65)


def delta_e2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1) between CIELAB arrays ``(..., 3)``."""
    return colour.difference.delta_E_CIE2000(np.asarray(lab1, np.float64), np.asarray(lab2, np.float64))


def mean_delta_e2000(img: np.ndarray, ref: np.ndarray) -> float:
    """Mean per-pixel CIEDE2000 between two sRGB images ``(H, W, 3)`` of equal size."""
    img, ref = to_hwc(img), to_hwc(ref)
    _check_same(img, ref)
    return _mean_delta_e2000_lab(srgb_to_lab(img), srgb_to_lab(ref))


def _mean_delta_e2000_lab(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """Mean per-pixel CIEDE2000 between two CIELAB images of equal size."""
    return float(np.mean(delta_e2000(lab1, lab2)))


def psnr(img: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB (data range 1) from scikit-image; ``inf`` for identical images."""
    img, ref = to_hwc(img), to_hwc(ref)
    _check_same(img, ref)
    if np.array_equal(img, ref):
        return float("inf")
    return float(skimage.metrics.peak_signal_noise_ratio(ref, img, data_range=1.0))


def ssim(img: np.ndarray, ref: np.ndarray) -> float:
    """Mean SSIM over the RGB channels (scikit-image, Gaussian window as in Wang et al. 2004)."""
    img, ref = to_hwc(img), to_hwc(ref)
    _check_same(img, ref)
    min_side = min(img.shape[:2])
    kwargs = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    if min_side < 11:  # tiny images: the largest odd window that fits
        kwargs = {"win_size": max(3, min_side - (1 - min_side % 2))}
    return float(skimage.metrics.structural_similarity(ref, img, data_range=1.0, channel_axis=-1, **kwargs))


def _check_same(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} vs {b.shape}; align them first (align_to)")


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == tuple(shape):
        return img
    out = skimage.transform.resize(img, shape, order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(out, 0.0, 1.0)


def align_to(expert: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """Matches an expert image to our rendering in orientation and size.

    When the two differ in orientation (one portrait, one landscape), the expert image is turned
    by the quarter turn (clockwise or counter-clockwise) that best matches ours in a small
    grey-level comparison; then it is resized (bilinear, anti-aliased) to ``ours``' size.

    Args:
        expert: ``(h, w, 3)`` float image.
        ours: ``(H, W, 3)`` float image (or a ``(3, H, W)`` tensor).

    Returns:
        ``(H, W, 3)`` float64.
    """
    expert, ours = to_hwc(expert), to_hwc(ours)
    H, W = ours.shape[:2]
    h, w = expert.shape[:2]
    if H != W and h != w and (H > W) != (h > w):
        probe = (32, max(1, round(32 * W / H))) if H >= W else (max(1, round(32 * H / W)), 32)
        target = _resize(ours, probe).mean(-1)

        def err(k):
            cand = _resize(np.rot90(expert, k), probe).mean(-1)
            return float(np.mean((cand - target) ** 2))

        expert = np.rot90(expert, min((1, 3), key=err))
    return _resize(np.ascontiguousarray(expert), (H, W))


def compare(img, ref) -> dict[str, float]:
    """PSNR, SSIM and mean CIEDE2000 of ``img`` against the reference ``ref`` (same size)."""
    img, ref = to_hwc(img), to_hwc(ref)
    return {"psnr": psnr(img, ref), "ssim": ssim(img, ref), "delta_e2000": mean_delta_e2000(img, ref)}


# -- whole-image judges ---------------------------------------------------------------------------
#: Judge names in reporting order, and whether lower is better for each.
JUDGES: tuple[str, ...] = ("delta_e2000", "psnr", "ssim", "cast_vs_expert", "clipped_fraction", "colour_cast")
LOWER_BETTER: dict[str, bool] = {
    "delta_e2000": True, "psnr": False, "ssim": False, "cast_vs_expert": True, "clipped_fraction": True, "colour_cast": True,
}


def cast_vs_expert(img: np.ndarray, ref: np.ndarray) -> float:
    """Colour cast relative to the reference: distance between the mean (a*, b*) of both images.

    A global white-balance error moves every pixel's chroma the same way, so it shows in the mean
    chroma; a saturation change that is symmetric around grey mostly does not.
    """
    img, ref = to_hwc(img), to_hwc(ref)
    _check_same(img, ref)
    return _mean_chroma_distance(srgb_to_lab(img), srgb_to_lab(ref))


def _mean_chroma_distance(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """Distance between the mean (a*, b*) of two CIELAB images."""
    a = lab1[..., 1:].reshape(-1, 2).mean(axis=0)
    b = lab2[..., 1:].reshape(-1, 2).mean(axis=0)
    return float(np.linalg.norm(a - b))


def judge(img, expert: np.ndarray | None = None) -> dict[str, float]:
    """Every judge of one whole rendering.

    Args:
        img: our rendering, ``(H, W, 3)`` array or ``(3, H, W)`` tensor, sRGB in ``[0, 1]``.
        expert: the expert rendering (any size and orientation: it is aligned with
            :func:`align_to`), or ``None`` where there is none.

    Returns:
        ``clipped_fraction`` and ``colour_cast`` always; ``delta_e2000``, ``psnr``, ``ssim`` and
        ``cast_vs_expert`` with an expert.
    """
    import torch

    from envs.core import clipped_fraction, colour_cast

    ours = to_hwc(img)
    t = torch.as_tensor(np.ascontiguousarray(ours.transpose(2, 0, 1)), dtype=torch.float32)[None]
    out = {"clipped_fraction": float(clipped_fraction(t)[0]), "colour_cast": float(colour_cast(t)[0])}
    if expert is not None:
        ref = align_to(expert, ours)
        # each image's CIELAB once, for ΔE2000 and the cast (compare() and cast_vs_expert() each
        # convert both; the same numbers)
        lab_ours, lab_ref = srgb_to_lab(ours), srgb_to_lab(ref)
        out.update(psnr=psnr(ours, ref), ssim=ssim(ours, ref),
                   delta_e2000=_mean_delta_e2000_lab(lab_ours, lab_ref),
                   cast_vs_expert=_mean_chroma_distance(lab_ours, lab_ref))
    return out


def summarize(rows: list[dict], keys: tuple[str, ...] | None = None, by: str | None = "condition") -> dict:
    """Means of the judges over images, overall and per group.

    Args:
        rows: one dict per image, holding judge values (missing or ``None`` values are skipped)
            and the grouping field.
        keys: which numeric fields to average (default: :data:`JUDGES` and ``score``).
        by: the grouping field (``None``: overall only).

    Returns:
        ``{"mean": {key: value}, "n": N, "per_<by>": {group: {"mean": ..., "n": ...}}}``.
    """
    keys = keys or (*JUDGES, "score", "full_res_score")

    def means(sub):
        out = {}
        for k in keys:
            vals = [float(r[k]) for r in sub if r.get(k) is not None and np.isfinite(float(r[k]))]
            if vals:
                out[k] = float(np.mean(vals))
        return out

    result = {"mean": means(rows), "n": len(rows)}
    if by is not None:
        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(str(r.get(by) or "all"), []).append(r)
        result[f"per_{by}"] = {g: {"mean": means(sub), "n": len(sub)} for g, sub in sorted(groups.items())}
    return result
