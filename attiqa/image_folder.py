"""Unlabeled images for pseudo-labelling: any image folder or an ImageNet layout.

Accepted layouts under ``root``:

* any folder tree of images (``.png``, ``.jpg``/``.jpeg``/``.JPEG``, ``.bmp``, ``.tif``, ``.webp``);
* ImageNet (ILSVRC-2012): ``root/train/<wnid>/*.JPEG`` and ``root/val/...``; pass ``split="train"``
  (or point ``root`` at ``train/`` itself). Class folders are simply part of the relative path.

Files are listed recursively and sorted by their relative POSIX path, so every process (and every
rerun) sees the same order - the basis of sharding and resuming in :mod:`attiqa.pseudo_label`.

Each item is the image resized (short edge, antialiased) and centre-cropped to a square, so a
batch stacks; an unreadable file yields a black image with ``ok=False`` instead of killing a
long run (the caller reports and skips it).
"""
from __future__ import annotations

from pathlib import Path

import torch

from attiqa.transforms import IMAGE_EXTENSIONS

__all__ = ["list_images", "ImageFolderDataset"]


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


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images of a list of files, each resized and centre-cropped to ``size x size``.

    Args:
        files: image paths (e.g. from :func:`list_images`).
        size: output side (short edge resized to it, then the centre square is kept).
        indices: optional subset of positions in ``files`` (a shard); item ``k`` is
            ``files[indices[k]]``.

    Items are ``(image (3, size, size) float32 in [0, 1], index (int, position in files), ok (bool))``.
    """

    def __init__(self, files, size: int = 224, indices=None):
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.files = list(files)
        self.size = int(size)
        self.indices = list(range(len(self.files))) if indices is None else [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, i: int) -> torch.Tensor:
        """Reads and crops ``files[i]``; raises ``FileNotFoundError``/``ValueError`` on a bad file."""
        from attiqa.transforms import load_image, resize_short_edge

        img = resize_short_edge(load_image(self.files[i]), self.size)
        _, h, w = img.shape
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return img[:, top:top + self.size, left:left + self.size].contiguous()

    def __getitem__(self, k: int):
        i = self.indices[k]
        try:
            return self.load(i), i, True
        except (FileNotFoundError, ValueError, OSError):
            return torch.zeros(3, self.size, self.size), i, False
