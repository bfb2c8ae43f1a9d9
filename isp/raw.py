"""RAW decoding: :class:`RawImage` and :func:`read_raw`.

A RAW file is opened once with rawpy (LibRaw); everything the pipeline needs is copied out of
LibRaw's context into an immutable :class:`RawImage`, so the file handle is closed before
rendering starts and images can be cached as ``.npz`` files.

Example:
    >>> raw = read_raw("photo.dng")  # doctest: +SKIP
    >>> raw.cfa_pattern, raw.mosaic.shape  # doctest: +SKIP
    ('RGGB', (2000, 3000))
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

from ._atomic import atomic_path

__all__ = [
    "RawError",
    "RawFileNotFoundError",
    "NotRawError",
    "CorruptRawError",
    "NonBayerError",
    "MonochromeError",
    "RawImage",
    "read_raw",
    "BAYER_PATTERNS",
]

BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


class RawError(ValueError):
    """Base class of every error raised while decoding a RAW file."""


class RawFileNotFoundError(RawError, FileNotFoundError):
    """The path does not exist or is not a file (also a ``FileNotFoundError``)."""


class NotRawError(RawError):
    """The file is not a RAW format LibRaw understands (e.g. a PNG renamed ``.dng``)."""


class CorruptRawError(RawError):
    """The file is a RAW container but its data is truncated or corrupt."""


class NonBayerError(RawError):
    """The sensor is not a 2x2 RGB Bayer sensor (X-Trans, Foveon, 4-colour CFA, linear DNG)."""


class MonochromeError(RawError):
    """The sensor has no colour filter array (monochrome camera or monochrome DNG)."""


def _as_f32(a, shape) -> np.ndarray:
    arr = np.array(a, dtype=np.float32).reshape(shape)
    arr.setflags(write=False)
    return arr


@dataclasses.dataclass(frozen=True, eq=False)
class RawImage:
    """A decoded Bayer RAW image, independent of rawpy.

    Attributes:
        mosaic: ``np.float32 (H, W)`` raw sensor counts, black level *not* subtracted; H, W even.
        cfa_pattern: 2x2 CFA read row-major, one of ``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"``.
        black_level: ``np.float32 (4,)`` black level per CFA position, row-major.
        white_level: saturation level in raw counts.
        as_shot_wb: ``np.float32 (3,)`` R/G/B white-balance multipliers with G = 1.
        cam_to_xyz: ``np.float32 (3, 3)`` camera RGB -> CIE XYZ (D65), the inverse of the file's
            XYZ -> camera matrix.
        orientation: LibRaw ``sizes.flip`` (0 = none, 3 = 180 deg, 5 = 90 deg CCW, 6 = 90 deg CW).
        path: source file, or None.
        make: camera maker.
        model: camera model.
    """

    mosaic: np.ndarray
    cfa_pattern: str
    black_level: np.ndarray
    white_level: float
    as_shot_wb: np.ndarray
    cam_to_xyz: np.ndarray
    orientation: int = 0
    path: str | None = None
    make: str = ""
    model: str = ""

    def __post_init__(self) -> None:
        mosaic = np.asarray(self.mosaic, dtype=np.float32)
        if mosaic.ndim != 2 or mosaic.shape[0] < 2 or mosaic.shape[1] < 2:
            raise ValueError(f"mosaic must be a 2-D array of at least 2x2, got shape {mosaic.shape}")
        if mosaic.shape[0] % 2 or mosaic.shape[1] % 2:  # keep whole 2x2 CFA cells only
            mosaic = mosaic[: mosaic.shape[0] // 2 * 2, : mosaic.shape[1] // 2 * 2]
        if not mosaic.flags.c_contiguous or mosaic.flags.writeable:
            mosaic = np.array(mosaic, dtype=np.float32, copy=True)
            mosaic.setflags(write=False)
        if self.cfa_pattern not in BAYER_PATTERNS:
            raise ValueError(f"cfa_pattern must be one of {BAYER_PATTERNS}, got {self.cfa_pattern!r}")
        if int(self.orientation) not in (0, 3, 5, 6):
            raise ValueError(f"orientation must be 0, 3, 5 or 6 (LibRaw flip), got {self.orientation}")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("mosaic", mosaic)
        set_("black_level", _as_f32(self.black_level, (4,)))
        set_("as_shot_wb", _as_f32(self.as_shot_wb, (3,)))
        set_("cam_to_xyz", _as_f32(self.cam_to_xyz, (3, 3)))
        set_("white_level", float(self.white_level))
        set_("orientation", int(self.orientation))
        if not self.white_level > float(self.black_level.max()):
            raise ValueError(f"white level {self.white_level} must exceed the black level {self.black_level}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the mosaic."""
        return tuple(self.mosaic.shape)  # type: ignore[return-value]

    def replace(self, **changes) -> "RawImage":
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def preview(self, max_side: int) -> "RawImage":
        """Bayer-aware downscale so that the longer side is at most ``max_side`` pixels.

        Each of the four CFA planes is box-averaged by the same integer factor and the planes are
        interleaved again, so the CFA pattern and all metadata stay valid.

        Args:
            max_side: longest side of the result in pixels (>= 2).

        Returns:
            A new RawImage (or ``self`` when it is already small enough).
        """
        max_side = int(max_side)
        if max_side < 2:
            raise ValueError(f"max_side must be >= 2, got {max_side}")
        h, w = self.shape
        if max(h, w) <= max_side:
            return self
        k = int(np.ceil(max(h, w) / max_side))  # integer factor on the half-resolution planes
        h2, w2 = (h // 2) // k, (w // 2) // k
        planes = self.mosaic[: h2 * k * 2, : w2 * k * 2].reshape(h2 * k, 2, w2 * k, 2)
        planes = planes.reshape(h2, k, 2, w2, k, 2).mean(axis=(1, 4), dtype=np.float64)
        out = planes.reshape(h2 * 2, w2 * 2).astype(np.float32)
        return self.replace(mosaic=out)

    def center_crop(self, h: int, w: int) -> "RawImage":
        """Central ``(h, w)`` crop (rounded down to even sizes) that keeps the CFA phase.

        Raises:
            ValueError: when the crop is larger than the image.
        """
        h, w = int(h) // 2 * 2, int(w) // 2 * 2
        H, W = self.shape
        if h < 2 or w < 2 or h > H or w > W:
            raise ValueError(f"crop {h}x{w} does not fit in a {H}x{W} mosaic")
        top = ((H - h) // 2) // 2 * 2
        left = ((W - w) // 2) // 2 * 2
        return self.replace(mosaic=self.mosaic[top : top + h, left : left + w])

    def save(self, path: str | os.PathLike) -> None:
        """Write to an ``.npz`` file (no pickle), atomically."""
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(
                tmp,
                mosaic=self.mosaic,
                cfa_pattern=np.array(self.cfa_pattern),
                black_level=self.black_level,
                white_level=np.array(self.white_level),
                as_shot_wb=self.as_shot_wb,
                cam_to_xyz=self.cam_to_xyz,
                orientation=np.array(self.orientation),
                path=np.array(self.path if self.path is not None else ""),
                has_path=np.array(self.path is not None),
                make=np.array(self.make),
                model=np.array(self.model),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RawImage":
        """Read a file written by :meth:`save` (``allow_pickle=False``)."""
        with np.load(path, allow_pickle=False) as z:
            return cls(
                mosaic=z["mosaic"],
                cfa_pattern=str(z["cfa_pattern"]),
                black_level=z["black_level"],
                white_level=float(z["white_level"]),
                as_shot_wb=z["as_shot_wb"],
                cam_to_xyz=z["cam_to_xyz"],
                orientation=int(z["orientation"]),
                path=str(z["path"]) if bool(z["has_path"]) else None,
                make=str(z["make"]),
                model=str(z["model"]),
            )

    def __repr__(self) -> str:
        return (
            f"RawImage({self.shape[0]}x{self.shape[1]} {self.cfa_pattern}, {self.make} {self.model}, "
            f"black={self.black_level.tolist()}, white={self.white_level:g}, path={self.path!r})"
        )


@contextlib.contextmanager
def _quiet_libraw():
    """Silences the C-level stderr while LibRaw runs.

    LibRaw prints its own data errors ("...: Unexpected end of file") straight to file
    descriptor 2; the :class:`RawError` raised here already names the file and the cause in one
    line, so the decoder's extra line is dropped.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # no real stderr (captured by a test runner, ...)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def read_raw(path: str | os.PathLike) -> RawImage:
    """Decode a Bayer RAW file (DNG or any LibRaw-readable camera format).

    Args:
        path: the RAW file.

    Returns:
        The :class:`RawImage`, with all data copied out of LibRaw.

    Raises:
        RawFileNotFoundError: the file does not exist.
        NotRawError: not a RAW file LibRaw recognises.
        CorruptRawError: truncated or corrupt data.
        NonBayerError: X-Trans, Foveon, 4-colour or already demosaiced (linear) data.
        MonochromeError: no colour filter array.
    """
    import rawpy

    p = Path(path)
    if not p.is_file():
        raise RawFileNotFoundError(f"RAW file not found: {p}")
    if p.stat().st_size == 0:
        raise NotRawError(f"{p}: empty file, not a RAW image")
    open(p, "rb").close()  # permission denied is reported as such (PermissionError), not as a corrupt file
    try:
        with _quiet_libraw():
            raw = rawpy.imread(str(p))
    except rawpy.LibRawFileUnsupportedError as exc:
        if _is_monochrome_tiff(p):
            raise MonochromeError(f"{p}: monochrome DNG/TIFF (one sample per pixel, no colour filter array)") from None
        raise NotRawError(f"{p}: not a RAW file that LibRaw can read ({exc})") from None
    except (rawpy.LibRawIOError, rawpy.LibRawDataError, rawpy.LibRawTooBigError) as exc:
        raise CorruptRawError(f"{p}: truncated or corrupt RAW file ({exc})") from None
    except rawpy.LibRawError as exc:
        raise CorruptRawError(f"{p}: LibRaw could not open the file ({type(exc).__name__}: {exc})") from None
    with raw:
        try:
            with _quiet_libraw():
                return _extract(raw, p)
        except RawError:
            raise
        except (rawpy.LibRawIOError, rawpy.LibRawDataError) as exc:
            raise CorruptRawError(f"{p}: truncated or corrupt RAW data ({exc})") from None
        except rawpy.LibRawError as exc:
            raise CorruptRawError(f"{p}: LibRaw failed to unpack the data ({type(exc).__name__}: {exc})") from None


def _extract(raw, p: Path) -> RawImage:
    import rawpy

    name = str(p)
    if raw.raw_type != rawpy.RawType.Flat:
        raise NonBayerError(f"{name}: stacked/linear raw data ({raw.raw_type}); only Bayer mosaics are supported")
    colors = int(raw.num_colors)
    desc = raw.color_desc.decode("ascii", "replace")
    pattern = raw.raw_pattern
    if colors == 1 or pattern is None and colors < 3:
        raise MonochromeError(f"{name}: monochrome sensor (no colour filter array)")
    if pattern is None:
        raise NonBayerError(f"{name}: no colour filter array pattern (Foveon or linear data are not supported)")
    pattern = np.asarray(pattern)
    if pattern.shape == (6, 6):
        raise NonBayerError(f"{name}: Fujifilm X-Trans 6x6 sensor; only 2x2 Bayer RAWs are supported")
    if pattern.shape != (2, 2):
        raise NonBayerError(f"{name}: {pattern.shape[0]}x{pattern.shape[1]} CFA; only 2x2 Bayer RAWs are supported")
    if colors != 3 or desc[:3] != "RGB":
        raise NonBayerError(f"{name}: {colors}-colour CFA {desc!r}; only RGB Bayer RAWs are supported")
    visible = raw.raw_image_visible  # may raise on truncated data
    h, w = visible.shape
    if h < 2 or w < 2:
        raise CorruptRawError(f"{name}: empty image ({h}x{w})")
    col_idx = np.asarray(raw.raw_colors_visible[:2, :2])
    letters = "RGBG"  # LibRaw colour indices 0..3 (3 = second green)
    cfa = "".join(letters[int(c)] for c in col_idx.reshape(-1))
    if cfa not in BAYER_PATTERNS:
        raise NonBayerError(f"{name}: CFA {cfa!r} is not a Bayer pattern")
    mosaic = np.array(visible, dtype=np.float32)
    blpc = np.asarray(raw.black_level_per_channel, dtype=np.float64)
    black = np.array([blpc[int(c)] for c in col_idx.reshape(-1)], dtype=np.float32)
    white = float(raw.white_level)
    if not np.isfinite(mosaic).all():
        raise CorruptRawError(f"{name}: non-finite raw values")
    cw = np.asarray(raw.camera_whitebalance, dtype=np.float64)[:3]
    if not (np.isfinite(cw).all() and (cw > 0).all()):
        cw = np.asarray(raw.daylight_whitebalance, dtype=np.float64)[:3]
    if not (np.isfinite(cw).all() and (cw > 0).all()):
        cw = np.ones(3)
    wb = cw / cw[1]
    xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
    if not np.isfinite(xyz_to_cam).all() or abs(np.linalg.det(xyz_to_cam)) < 1e-12:
        # LibRaw knows no matrix for this camera: fall back to sRGB primaries (camera == sRGB)
        from .color import SRGB_TO_XYZ

        cam_to_xyz = SRGB_TO_XYZ.copy()
    else:
        cam_to_xyz = np.linalg.inv(xyz_to_cam)
    make, model = _make_model(raw, p)
    return RawImage(
        mosaic=mosaic,
        cfa_pattern=cfa,
        black_level=black,
        white_level=white,
        as_shot_wb=wb,
        cam_to_xyz=cam_to_xyz,
        orientation=int(raw.sizes.flip) if int(raw.sizes.flip) in (0, 3, 5, 6) else 0,
        path=str(p),
        make=make,
        model=model,
    )


def _make_model(raw, p: Path) -> tuple[str, str]:
    """Camera make/model: rawpy has no accessor, so read the TIFF tags when the file is TIFF-based."""
    try:
        import tifffile

        with tifffile.TiffFile(str(p)) as tf:
            tags = tf.pages[0].tags
            make = tags.get(271)
            model = tags.get(272)
            return (str(make.value).strip() if make else "", str(model.value).strip() if model else "")
    except Exception:
        return "", ""


def _is_monochrome_tiff(p: Path) -> bool:
    """A DNG that LibRaw rejects but that is a single-channel greyscale image."""
    try:
        import tifffile

        with tifffile.TiffFile(str(p)) as tf:
            page = tf.pages[0]
            return 50706 in page.tags and page.samplesperpixel == 1 and int(page.photometric) in (0, 1, 34892)
    except Exception:
        return False
