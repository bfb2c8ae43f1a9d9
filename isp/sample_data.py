"""The embedded sample RAW set: packaged photographs unprocessed into camera DNGs.

Each photograph that ships inside an installed package (scikit-image's and scikit-learn's sample
images) is turned into a plausible camera RAW by running a camera pipeline backwards, after
Brooks et al., "Unprocessing Images for Learned Raw Denoising" (CVPR 2019):

1. inverse global tone curve (inverse smoothstep) and inverse sRGB transfer -> linear sRGB,
2. inverse colour matrix of a real camera (its published XYZ -> camera matrix, Adobe DNG
   ColorMatrix for D65, combined with sRGB -> XYZ and row-normalised as raw converters do),
3. inverse white balance (random as-shot red/blue gains, recorded as AsShotNeutral),
4. exposure pull-down, Bayer mosaic with the camera's CFA phase,
5. heteroscedastic shot + read noise, the camera's black level and 12-14-bit white level,
   quantisation to integers.

The result is written as an uncompressed CFA DNG carrying the tags a camera DNG carries
(CFARepeatPatternDim, CFAPattern, BlackLevel, WhiteLevel, AsShotNeutral, ColorMatrix1 +
CalibrationIlluminant1, Make/Model/UniqueCameraModel, Orientation). The original photograph is
written beside it as a 16-bit ProPhoto RGB TIFF, standing in for MIT-Adobe-5K's Expert C
export. Everything is deterministic for a seed.

Layout (MIT-Adobe-5K)::

    root/raw_photos/HQa1to700/photos/a0001-<name>.dng
    root/tiff16_c/a0001-<name>.tif
    root/LICENSES.md
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "CameraModel",
    "CAMERAS",
    "SOURCES",
    "make_sample_set",
    "ensure_sample_set",
    "default_root",
    "unprocess",
    "write_dng",
    "write_prophoto_tiff",
    "load_source",
]


@dataclasses.dataclass(frozen=True)
class CameraModel:
    """A real camera's colour and level characteristics.

    Attributes:
        make: maker string (TIFF Make).
        model: full model name (TIFF Model / UniqueCameraModel).
        xyz_to_cam: Adobe's D65 XYZ -> camera matrix (DNG ColorMatrix), row-major, x 10000.
        black: black level in DN.
        white: white (saturation) level in DN.
        cfa: CFA pattern of the sensor readout.
    """

    make: str
    model: str
    xyz_to_cam: tuple[int, ...]
    black: int
    white: int
    cfa: str


# Matrices: Adobe DNG ColorMatrix (D65) values as published in dcraw/LibRaw's adobe_coeff table.
CAMERAS: tuple[CameraModel, ...] = (
    CameraModel("Canon", "Canon EOS 5D Mark II", (4716, 603, -830, -7798, 15474, 2480, -1496, 1937, 6651), 1024, 15600, "RGGB"),
    CameraModel("NIKON CORPORATION", "NIKON D700", (8139, -2171, -663, -8747, 16541, 2295, -1925, 2008, 8093), 0, 15892, "BGGR"),
    CameraModel("SONY", "ILCE-7M2", (5271, -712, -347, -6153, 13653, 2763, -1601, 2366, 7242), 512, 16383, "GRBG"),
    CameraModel("Canon", "Canon EOS 5D", (6347, -479, -972, -8297, 15954, 2480, -1968, 2131, 7649), 128, 3692, "GBRG"),
    CameraModel("Canon", "Canon EOS 6D", (7034, -804, -1014, -4420, 12564, 2058, -851, 1994, 5758), 2047, 15000, "RGGB"),
)

_SKLEARN_LICENSE = (
    "Released under a Creative Commons Attribution 2.0 license "
    "(https://creativecommons.org/licenses/by/2.0/); see sklearn/datasets/images/README.txt. "
    "Retrieved from Flickr by Robert Layton for scikit-learn."
)

#: (name, package, loader) in the order images are numbered; crops of these fill larger sets.
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("astronaut", "scikit-image", "astronaut"),
    ("coffee", "scikit-image", "coffee"),
    ("chelsea", "scikit-image", "chelsea"),
    ("rocket", "scikit-image", "rocket"),
    ("china", "scikit-learn", "china.jpg"),
    ("motorcycle-left", "scikit-image", "stereo_motorcycle:0"),
    ("hubble-deep-field", "scikit-image", "hubble_deep_field"),
    ("flower", "scikit-learn", "flower.jpg"),
    ("immunohistochemistry", "scikit-image", "immunohistochemistry"),
    ("motorcycle-right", "scikit-image", "stereo_motorcycle:1"),
    ("retina", "scikit-image", "retina"),
)


def default_root() -> Path:
    """``<cache>/sample_fivek`` with ``<cache>`` = ``$RLISP_CACHE`` or ``~/.cache/rl-isp``."""
    cache = os.environ.get("RLISP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rl-isp")
    return Path(cache) / "sample_fivek"


def load_source(index: int) -> tuple[np.ndarray, str]:
    """Load packaged photograph ``SOURCES[index]``.

    Returns:
        ``(H, W, 3)`` uint8 sRGB image and its license/attribution text.
    """
    name, package, loader = SOURCES[index]
    if package == "scikit-learn":
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(loader))[..., :3], _SKLEARN_LICENSE
    import skimage.data as skd

    fn_name, _, part = loader.partition(":")
    fn = getattr(skd, fn_name)
    img = fn()
    if part:
        img = img[int(part)]
    doc = (fn.__doc__ or "").split("Returns")[0]
    text = " ".join(line.strip() for line in doc.strip().splitlines() if line.strip() and set(line.strip()) != {"-"})
    return np.asarray(img)[..., :3].astype(np.uint8), text


def _resize(img: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = img.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        from PIL import Image

        s = max_side / max(h, w)
        img = np.asarray(Image.fromarray(img).resize((max(2, round(w * s)), max(2, round(h * s))), Image.Resampling.LANCZOS))
    h, w = img.shape[:2]
    return np.ascontiguousarray(img[: h // 2 * 2, : w // 2 * 2])


def _srgb_to_linear(y: np.ndarray) -> np.ndarray:
    return np.where(y <= 0.04045, y / 12.92, ((y + 0.055) / 1.055) ** 2.4)


def _cam_from_srgb(cam: CameraModel) -> np.ndarray:
    from .color import SRGB_TO_XYZ

    xyz_to_cam = np.asarray(cam.xyz_to_cam, dtype=np.float64).reshape(3, 3) / 10000.0
    m = xyz_to_cam @ SRGB_TO_XYZ
    return m / m.sum(axis=1, keepdims=True)


def unprocess(srgb: np.ndarray, camera: CameraModel, rng: np.random.Generator, *, cfa: str | None = None) -> tuple[np.ndarray, dict]:
    """Turn an sRGB photograph into a noisy Bayer mosaic of ``camera``.

    Args:
        srgb: ``(H, W, 3)`` uint8 (or float in ``[0, 1]``) sRGB, H and W even.
        camera: the camera model.
        rng: random generator (white balance, exposure, noise).
        cfa: override the camera's CFA pattern.

    Returns:
        ``(H, W)`` uint16 mosaic and a dict with ``cfa``, ``black`` (4,), ``white``, ``as_shot_neutral``
        (3,), ``noise`` (shot, read variances in normalised units).
    """
    y = srgb.astype(np.float64) / 255.0 if srgb.dtype == np.uint8 else np.asarray(srgb, dtype=np.float64)
    y = np.clip(y, 0.0, 1.0)
    y = 0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)  # inverse smoothstep tone curve
    lin = _srgb_to_linear(y)
    camrgb = lin @ _cam_from_srgb(camera).T
    r_gain, b_gain = rng.uniform(1.7, 2.4), rng.uniform(1.3, 2.0)
    gains = np.array([r_gain, 1.0, b_gain])
    exposure = rng.uniform(0.65, 0.95)
    camraw = np.clip(camrgb / gains * exposure, 0.0, 1.0)
    cfa = cfa or camera.cfa
    h, w = camraw.shape[:2]
    ch = {"R": 0, "G": 1, "B": 2}
    mosaic = np.empty((h, w), dtype=np.float64)
    for pos, letter in enumerate(cfa):
        i, j = divmod(pos, 2)
        mosaic[i::2, j::2] = camraw[i::2, j::2, ch[letter]]
    shot = float(np.exp(rng.uniform(np.log(1e-4), np.log(2e-3))))
    read = float(np.exp(2.18 * np.log(shot) + 1.2 + rng.normal(0.0, 0.26)))
    noisy = mosaic + rng.standard_normal(mosaic.shape) * np.sqrt(read + shot * mosaic)
    black = np.array([camera.black] * 4, dtype=np.float64)
    if camera.black > 0:  # small per-channel offsets, as real sensors have
        black = black + rng.integers(-3, 4, size=4)
    span = camera.white - black.reshape(2, 2)
    counts = np.tile(black.reshape(2, 2), (h // 2, w // 2)) + noisy * np.tile(span, (h // 2, w // 2))
    counts = np.clip(np.rint(counts), 0, camera.white).astype(np.uint16)
    return counts, {
        "cfa": cfa,
        "black": black.astype(np.int64),
        "white": camera.white,
        "as_shot_neutral": 1.0 / gains,
        "noise": (shot, read),
    }


def _rational(v: float, den: int = 1_000_000) -> tuple[int, int]:
    return int(round(v * den)), den


def write_dng(path: str | os.PathLike, mosaic: np.ndarray, camera: CameraModel, info: dict, *, orientation: int = 1) -> Path:
    """Write an uncompressed CFA DNG (atomically) that LibRaw reads like a camera file.

    Args:
        path: output ``.dng``.
        mosaic: ``(H, W)`` uint16 raw counts.
        camera: the camera model (make/model/matrix).
        info: from :func:`unprocess` (``cfa``, ``black``, ``white``, ``as_shot_neutral``).
        orientation: TIFF Orientation tag (1 = none, 3 = 180 deg, 6 = rotate 90 deg CW to display,
            8 = rotate 90 deg CCW to display).
    """
    import tifffile

    path = Path(path)
    code = {"R": 0, "G": 1, "B": 2}
    matrix = [v for x in camera.xyz_to_cam for v in (int(x), 10000)]
    neutral = [v for x in info["as_shot_neutral"] for v in _rational(float(x))]
    tags = [
        (271, "s", 0, camera.make, True),
        (272, "s", 0, camera.model, True),
        (274, "H", 1, int(orientation), True),
        (33421, "H", 2, (2, 2), True),
        (33422, "B", 4, bytes(code[c] for c in info["cfa"]), True),
        (50706, "B", 4, bytes([1, 4, 0, 0]), True),
        (50707, "B", 4, bytes([1, 1, 0, 0]), True),
        (50708, "s", 0, camera.model, True),
        (50710, "B", 3, bytes([0, 1, 2]), True),
        (50711, "H", 1, 1, True),
        (50713, "H", 2, (2, 2), True),
        (50714, "I", 4, tuple(int(b) for b in info["black"]), True),
        (50717, "I", 1, int(info["white"]), True),
        (50721, "2i", 9, tuple(matrix), True),
        (50728, "2I", 3, tuple(neutral), True),
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1 = D65
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.dng")
    try:
        tifffile.imwrite(tmp, np.ascontiguousarray(mosaic, dtype=np.uint16), photometric=32803,
                         subfiletype=0, extratags=tags, metadata=None,
                         software="rl-isp sample_data (unprocessed photograph)")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_prophoto_tiff(path: str | os.PathLike, srgb: np.ndarray) -> Path:
    """Write an sRGB image as a 16-bit ProPhoto RGB TIFF (Bradford D65 -> D50), atomically.

    Args:
        path: output ``.tif``.
        srgb: ``(H, W, 3)`` uint8 sRGB.
    """
    import colour
    import tifffile

    path = Path(path)
    rgb = srgb.astype(np.float64) / 255.0
    pro = colour.RGB_to_RGB(
        rgb, colour.RGB_COLOURSPACES["sRGB"], colour.RGB_COLOURSPACES["ProPhoto RGB"],
        chromatic_adaptation_transform="Bradford", apply_cctf_decoding=True, apply_cctf_encoding=True,
    )
    arr = np.clip(np.rint(np.clip(pro, 0.0, 1.0) * 65535.0), 0, 65535).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.tif")
    try:
        tifffile.imwrite(tmp, arr, photometric="rgb", compression="zlib", metadata=None,
                         description="ProPhoto RGB (ROMM), 16-bit; Expert C stand-in")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _crop_for(index: int, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Extra images beyond the sources are random 60-80 % crops of them."""
    if index < len(SOURCES):
        return img
    h, w = img.shape[:2]
    f = rng.uniform(0.6, 0.8)
    ch, cw = int(h * f), int(w * f)
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return img[top : top + ch, left : left + cw]


def make_sample_set(root: str | os.PathLike, n_images: int = 12, seed: int = 0, max_side: int | None = None,
                    *, progress: bool = False) -> list[Path]:
    """Write the sample set in the MIT-Adobe-5K layout.

    Args:
        root: output folder (created).
        n_images: number of images (>= 1); beyond the 11 packaged photos, crops of them are used.
        seed: random seed; the same seed gives byte-identical files.
        max_side: downscale the photographs so the longer side is at most this (None = as shipped,
            up to 1411 px).
        progress: show a tqdm progress bar.

    Returns:
        The DNG paths, sorted by id.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    root = Path(root)
    photos = root / "raw_photos" / "HQa1to700" / "photos"
    tiffs = root / "tiff16_c"
    photos.mkdir(parents=True, exist_ok=True)
    tiffs.mkdir(parents=True, exist_ok=True)
    licenses: dict[str, tuple[list[str], str]] = {}
    out: list[Path] = []
    it = range(n_images)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="sample set", unit="img")
    for i in it:
        rng = np.random.default_rng([seed, i])
        src = i % len(SOURCES)
        name = SOURCES[src][0] + ("" if i < len(SOURCES) else f"-crop{i // len(SOURCES)}")
        img, lic = load_source(src)
        img = _resize(_crop_for(i, img, rng), max_side)
        camera = CAMERAS[i % len(CAMERAS)]
        cfa = ("RGGB", "BGGR", "GRBG", "GBRG")[(i + i // len(CAMERAS)) % 4]
        orientation = 6 if i % 6 == 4 else (3 if i % 6 == 5 else 1)
        stored = {1: img, 3: img[::-1, ::-1], 6: np.rot90(img, 1)}[orientation]
        mosaic, info = unprocess(np.ascontiguousarray(stored), camera, rng, cfa=cfa)
        stem = f"a{i + 1:04d}-{name}"
        dng = write_dng(photos / f"{stem}.dng", mosaic, camera, info, orientation=orientation)
        write_prophoto_tiff(tiffs / f"{stem}.tif", img)
        licenses.setdefault(SOURCES[src][0], ([], lic))[0].append(stem)
        out.append(dng)
    _write_licenses(root / "LICENSES.md", licenses)
    return sorted(out)


def _write_licenses(path: Path, licenses: dict[str, tuple[list[str], str]]) -> None:
    lines = [
        "# Sample set: sources and licenses",
        "",
        "Every DNG here is a packaged photograph run backwards through a camera pipeline",
        "(`isp.sample_data`, after Brooks et al. 2019); each `tiff16_c` TIFF is the same photograph",
        "converted to 16-bit ProPhoto RGB. They are NOT MIT-Adobe-5K images; the set only mimics its layout.",
        "",
    ]
    for src, (stems, text) in licenses.items():
        pkg = next(p for n, p, _ in SOURCES if n == src)
        lines += [f"## {src} (shipped with {pkg})", "", f"Files: {', '.join(stems)}", "", text, ""]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def ensure_sample_set(root: str | os.PathLike | None = None, n_images: int = 12) -> Path:
    """The default sample set, generated on first use.

    Args:
        root: where it lives (default :func:`default_root`).
        n_images: number of images when it has to be generated.

    Returns:
        The root folder.
    """
    root = Path(root) if root is not None else default_root()
    photos = root / "raw_photos" / "HQa1to700" / "photos"
    marker = root / ".complete"
    if marker.is_file() and any(photos.glob("*.dng")):
        return root
    print(f"[isp] generating the SAMPLE RAW set (packaged photographs unprocessed to DNG, not MIT-Adobe-5K) in {root}",
          file=sys.stderr)
    make_sample_set(root, n_images=n_images, seed=0, progress=True)
    marker.write_text("ok\n")
    return root
