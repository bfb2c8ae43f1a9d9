"""Saving rendered images: 8-bit PNG/JPEG, 16-bit PNG/TIFF, sRGB ICC profile embedded, atomic."""
from __future__ import annotations

import io as _io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ._atomic import atomic_path

__all__ = ["save_image", "srgb_icc_profile", "to_uint"]

_EXT_8 = {".png", ".jpg", ".jpeg"}
_EXT_16 = {".png", ".tif", ".tiff"}


@lru_cache(maxsize=1)
def srgb_icc_profile() -> bytes:
    """The bytes of an sRGB ICC profile (built by LittleCMS through PIL.ImageCms)."""
    from PIL import ImageCms

    prof = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return prof.tobytes()


def to_uint(img: torch.Tensor | np.ndarray, bits: int) -> np.ndarray:
    """``(3, H, W)`` in ``[0, 1]`` -> ``(H, W, 3)`` uint8/uint16 (rounded, clipped)."""
    a = img.detach().float().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img, dtype=np.float32)
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("image contains NaN or inf")
    scale = 255.0 if bits == 8 else 65535.0
    out = np.clip(np.rint(np.clip(a, 0.0, 1.0) * scale), 0, scale)
    return np.ascontiguousarray(out.transpose(1, 2, 0)).astype(np.uint8 if bits == 8 else np.uint16)


def save_image(img: torch.Tensor | np.ndarray, path: str | os.PathLike, bits: int = 8, *, quality: int = 95) -> Path:
    """Write an sRGB image with an embedded sRGB ICC profile, atomically.

    Args:
        img: ``(3, H, W)`` sRGB in ``[0, 1]`` (already display-oriented).
        path: ``.png`` / ``.jpg`` / ``.jpeg`` for 8 bits, ``.png`` / ``.tif`` / ``.tiff`` for 16 bits.
        bits: 8 or 16.
        quality: JPEG quality.

    Returns:
        The path written.

    Raises:
        ValueError: unsupported extension/bit depth combination or invalid image.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if (bits == 8 and ext not in _EXT_8) or (bits == 16 and ext not in _EXT_16):
        allowed = sorted(_EXT_8 if bits == 8 else _EXT_16)
        raise ValueError(f"{path.name}: {bits}-bit output needs one of {allowed}")
    arr = to_uint(img, bits)
    icc = srgb_icc_profile()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if ext in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, arr, photometric="rgb", iccprofile=icc, compression="zlib", metadata=None)
        elif bits == 16:  # 16-bit RGB PNG: PIL cannot write it, so build the chunks ourselves
            _write_png16(tmp, arr, icc)
        else:
            from PIL import Image

            im = Image.fromarray(arr, "RGB")
            kw = {"quality": int(quality), "subsampling": 0} if ext in (".jpg", ".jpeg") else {"compress_level": 6}
            im.save(tmp, icc_profile=icc, **kw)
    return path


def _write_png16(path: Path, arr: np.ndarray, icc: bytes) -> None:
    import struct
    import zlib

    h, w, _ = arr.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = np.empty((h, 1 + w * 6), dtype=np.uint8)
    raw[:, 0] = 0  # filter type None
    raw[:, 1:] = arr.astype(">u2").view(np.uint8).reshape(h, w * 6)
    buf = _io.BytesIO()
    buf.write(b"\x89PNG\r\n\x1a\n")
    buf.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)))
    buf.write(chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc)))
    buf.write(chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)))
    buf.write(chunk(b"IEND", b""))
    path.write_bytes(buf.getvalue())
