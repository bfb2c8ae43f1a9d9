"""Unlabeled images for pseudo-labelling: any image folder or an ImageNet layout.

Accepted layouts under ``root``:

* any folder tree of images (``.png``, ``.jpg``/``.jpeg``/``.JPEG``, ``.bmp``, ``.tif``, ``.webp``);
* ImageNet (ILSVRC-2012): ``root/train/<wnid>/*.JPEG`` and ``root/val/...``; pass ``split="train"``
  (or point ``root`` at ``train/`` itself). Class folders are simply part of the relative path.

Files are listed recursively and sorted by their relative POSIX path, so every process (and every
rerun) sees the same order - the basis of sharding and resuming in :mod:`attiqa.training.pseudo_label`.

Each item is the image resized (short edge, antialiased) and centre-cropped to a square, so a
batch stacks; an unreadable file yields a black image with ``ok=False`` instead of killing a
long run (the caller reports and skips it).

Decoding is the usual bottleneck of pseudo-labelling, so 8-bit images take a fast path: JPEGs
are decoded at a reduced DCT scale when that still leaves at least twice the target size
(``PIL.Image.draft``; a big win for 12-megapixel photos), the centre region is resized with
Pillow's antialiased bilinear filter on 8-bit data, and items can stay ``uint8`` until they
reach the teacher's device (``uint8=True``; 4x less inter-process traffic). 16-bit and other
high-bit-depth files go through :func:`attiqa.data.transforms.load_image` in float.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from attiqa.data.transforms import IMAGE_EXTENSIONS

__all__ = ["list_images", "load_square", "to_unit_float", "ImageFolderDataset"]


def list_images(root, split: str | None = None) -> list[Path]:
    """All image files under ``root`` (or ``root/split``), sorted by relative path.

    Raises:
        FileNotFoundError: the folder does not exist or holds no image.
    """
    root = Path(root)
    base = root / split if split else root
    if not base.is_dir():
        raise FileNotFoundError(f"image folder not found: {base}")
    files = [p for p in base.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
             and not p.name.startswith(".")]
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {base}")
    return sorted(files, key=lambda p: p.relative_to(base).as_posix())


_EIGHT_BIT_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1")


def load_square(path, size: int) -> torch.Tensor:
    """Reads an image, resizes its short edge to ``size`` and keeps the centre square.

    Args:
        path: image file.
        size: output side.

    Returns:
        ``(3, size, size)`` uint8 for 8-bit files, float32 in ``[0, 1]`` otherwise.

    Raises:
        FileNotFoundError: missing file.
        ValueError: not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            if im.mode in _EIGHT_BIT_MODES:
                w, h = im.size
                if min(w, h) >= 4 * size:  # JPEG: decode at a reduced DCT scale that keeps >= 2x size,
                    s = 2 * size / min(w, h)  # leaving at least a 2x antialiased reduction to Pillow
                    im.draft("RGB", (int(np.ceil(w * s)), int(np.ceil(h * s))))
                im = im.convert("RGB")
                w, h = im.size
                s = size / min(w, h)
                nw, nh = max(size, round(w * s)), max(size, round(h * s))
                left, top = (nw - size) // 2, (nh - size) // 2
                sx, sy = nw / w, nh / h
                # resize only the source box that maps onto the centre square
                box = (left / sx, top / sy, (left + size) / sx, (top + size) / sy)
                im = im.resize((size, size), Image.BILINEAR, box=box)
                arr = np.asarray(im, dtype=np.uint8)
                return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"not a readable image: {path} ({exc})") from exc
    from attiqa.data.transforms import load_image, resize_short_edge

    img = resize_short_edge(load_image(path), size)
    _, h, w = img.shape
    top, left = (h - size) // 2, (w - size) // 2
    return img[:, top:top + size, left:left + size].contiguous()


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in ``[0, 1]``; float images are returned as float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images of a list of files, each resized and centre-cropped to ``size x size``.

    Args:
        files: image paths (e.g. from :func:`list_images`).
        size: output side (short edge resized to it, then the centre square is kept).
        indices: optional subset of positions in ``files`` (a shard); item ``k`` is
            ``files[indices[k]]``.
        uint8: keep 8-bit images as ``uint8`` (convert with :func:`to_unit_float` on the device);
            otherwise every item is float32 in ``[0, 1]``.

    Items are ``(image (3, size, size), index (int, position in files), ok (bool))``.
    """

    def __init__(self, files, size: int = 224, indices=None, uint8: bool = False):
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.files = list(files)
        self.size = int(size)
        self.uint8 = bool(uint8)
        self.indices = list(range(len(self.files))) if indices is None else [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, i: int) -> torch.Tensor:
        """Reads and crops ``files[i]``; raises ``FileNotFoundError``/``ValueError`` on a bad file."""
        img = load_square(self.files[i], self.size)
        if self.uint8 and img.dtype != torch.uint8:
            img = (img * 255.0).round_().to(torch.uint8)  # a batch must share one dtype
        return img if self.uint8 else to_unit_float(img)

    def __getitem__(self, k: int):
        i = self.indices[k]
        try:
            return self.load(i), i, True
        except (FileNotFoundError, ValueError, OSError):
            dtype = torch.uint8 if self.uint8 else torch.float32
            return torch.zeros(3, self.size, self.size, dtype=dtype), i, False
