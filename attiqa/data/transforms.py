"""Image loading and the fine-tuning / test crops of the ATTIQA protocol.

Training: resize the short edge to 340 pixels, then take one random 320 x 320 crop
(plus a random horizontal flip). Testing: resize the short edge to 340, take five
320 x 320 crops (the four corners and the centre); the model's predictions on the five
crops are averaged.

All functions work on float tensors in ``[0, 1]`` shaped ``(3, H, W)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def load_image(path: str | Path, reduce_to: int | None = None) -> torch.Tensor:
    """Reads an image file as an sRGB float tensor.

    Args:
        path: any file Pillow can open (8- or 16-bit, grey, RGB or RGBA); TIFFs are read with
            tifffile first so that 16-bit RGB samples keep their precision.
        reduce_to: when given, an 8-bit image whose longer side is at least twice this is first
            shrunk by Pillow's integer box reduction (``Image.reduce``, on the 8-bit samples) by
            the largest factor that keeps the longer side ``>= reduce_to``; the caller resizes
            the rest of the way. This keeps a huge file from ever existing as a full-size float
            array (an 8000 x 8000 PNG: 768 MB of float32).

    Returns:
        Tensor ``(3, H, W)`` float32 in ``[0, 1]``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if path.suffix.lower() in (".tif", ".tiff"):  # keep 16-bit RGB samples (Pillow would truncate them)
        try:
            return _load_tiff(path)
        except _TiffFallback:
            pass
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
                arr = np.repeat(arr[..., None], 3, axis=-1)
            elif im.mode == "F":  # 32-bit float grey, taken as [0, 1]
                arr = np.asarray(im, dtype=np.float32)
                if not np.isfinite(arr).all():
                    raise ValueError(f"image holds NaN or infinite values: {path}")
                arr = np.repeat(arr[..., None], 3, axis=-1)
            else:
                rgb = im.convert("RGB")
                factor = max(rgb.size) // int(reduce_to) if reduce_to else 1
                if factor >= 2:
                    rgb = rgb.reduce(factor)
                arr = np.asarray(rgb, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"not a readable image: {path} ({exc})") from exc
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).clamp_(0.0, 1.0)


class _TiffFallback(Exception):
    """tifffile could not read the file; Pillow gets a try."""


def _load_tiff(path: Path) -> torch.Tensor:
    """Reads a TIFF with tifffile (8/16-bit integer or float samples, grey or RGB[A])."""
    import tifffile

    try:
        arr = tifffile.imread(path)
    except Exception:  # noqa: BLE001 - corrupt or a compression tifffile lacks: let Pillow try
        raise _TiffFallback from None
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    else:
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ValueError(f"image holds NaN or infinite values: {path}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] < 3:
        raise _TiffFallback
    return torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1).clamp_(0.0, 1.0)


def resize_short_edge(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resizes so that the shorter side equals ``size`` (bilinear, antialiased).

    Args:
        img: ``(3, H, W)`` or ``(B, 3, H, W)`` float in ``[0, 1]``.
        size: target length of the shorter side in pixels.

    Returns:
        The resized tensor, same rank, still in ``[0, 1]``.
    """
    batched = img.dim() == 4
    x = img if batched else img[None]
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False,
                          antialias=True).clamp(0.0, 1.0)
    return x if batched else x[0]


def five_crops(img: torch.Tensor, crop: int) -> torch.Tensor:
    """The four corner crops and the centre crop of an image.

    Args:
        img: ``(3, H, W)`` with ``H, W >= crop``.
        crop: side of the square crops.

    Returns:
        ``(5, 3, crop, crop)`` in the order top-left, top-right, bottom-left, bottom-right, centre.
    """
    _, h, w = img.shape
    if h < crop or w < crop:
        raise ValueError(f"image {h}x{w} is smaller than the {crop}px crop")
    top, left = (h - crop) // 2, (w - crop) // 2
    corners = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), (top, left)]
    return torch.stack([img[:, y:y + crop, x:x + crop] for y, x in corners])


class TrainTransform:
    """Short edge to ``resize``, one random ``crop`` x ``crop`` crop, random horizontal flip.

    Args:
        resize: short-edge length after resizing (340 in the paper).
        crop: crop side (320 in the paper).
        flip: whether to flip horizontally with probability 0.5.
    """

    def __init__(self, resize: int = 340, crop: int = 320, flip: bool = True):
        if crop > resize:
            raise ValueError(f"crop {crop} is larger than the resized short edge {resize}")
        self.resize, self.crop, self.flip = resize, crop, flip

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(3, H, W)`` -> ``(3, crop, crop)``."""
        x = resize_short_edge(img, self.resize)
        _, h, w = x.shape
        y0 = int(torch.randint(0, h - self.crop + 1, (1,), generator=generator))
        x0 = int(torch.randint(0, w - self.crop + 1, (1,), generator=generator))
        x = x[:, y0:y0 + self.crop, x0:x0 + self.crop]
        if self.flip and float(torch.rand((), generator=generator)) < 0.5:
            x = x.flip(-1)
        return x.contiguous()


class TestTransform:
    """Short edge to ``resize``, then the five ``crop`` x ``crop`` crops (see :func:`five_crops`).

    Returns ``(5, 3, crop, crop)``; average the model's outputs over the first axis.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, resize: int = 340, crop: int = 320):
        if crop > resize:
            raise ValueError(f"crop {crop} is larger than the resized short edge {resize}")
        self.resize, self.crop = resize, crop

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return five_crops(resize_short_edge(img, self.resize), self.crop)
