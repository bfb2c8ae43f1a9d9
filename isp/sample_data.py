"""The embedded sample RAW set (version 2): packaged photographs unprocessed into camera DNGs
under the capture conditions a real camera produces.

Every natural colour photograph that ships inside an installed package (:data:`SCENES`) is run
backwards through the ISP's *neutral* rendering (after Brooks et al., "Unprocessing Images for
Learned Raw Denoising", CVPR 2019), so that a correctly exposed, correctly white-balanced capture
rendered with neutral parameters gives the photograph back, up to mosaicking, demosaicking and
noise:

1. inverse sRGB transfer -> linear sRGB (the neutral rendering applies no tone curve),
2. inverse colour matrix of a real camera (the sRGB -> camera matrix that the ISP inverts: Adobe's
   D65 ColorMatrix combined with sRGB -> XYZ and row-normalised, :func:`isp.color.camera_to_srgb_matrix`),
3. inverse white balance with the scene illuminant's gains (drawn per capture),
4. the capture's exposure error (``2 ** ev_error``), Bayer mosaic with the camera's CFA phase,
5. heteroscedastic shot + read noise (Brooks et al.'s log-linear model, at base or high ISO), the
   camera's black level and white level, quantisation, and clipping of every photosite at the
   white level (an over-exposed capture loses its highlights as a real file does).

The white balance the file *records* (AsShotNeutral) is the scene's, except under the two
wrong-illuminant conditions, where it is that of a warmer or a cooler light.

Capture conditions (:data:`CONDITIONS`; each is undone by one ISP parameter, see
:func:`correction`):

============  ===================================================  =========================
condition     what the neutral rendering looks like                undone by
============  ===================================================  =========================
``correct``   the photograph (up to demosaicking and noise)        nothing
``under``     darker: exposed ``ev_error`` in [-2, -0.7] EV        ``exposure = -ev_error``
``over``      brighter, highlights clipped: [+0.5, +1] EV          ``exposure = -ev_error``
``wb_warm``   warmer/redder: AsShotNeutral of a *cooler* light;    ``wb_temperature =
              the rendering's log2(R/B) is ``wb_error`` in         -wb_error``
              [+0.3, +0.8] too high
``wb_cool``   cooler/bluer: AsShotNeutral of a *warmer* light;     ``wb_temperature =
              ``wb_error`` in [-0.8, -0.3]                         -wb_error``
``high_iso``  noisier: shot noise 40-100x the base ISO's           (denoise; not exactly)
============  ===================================================  =========================

``wb_error`` is in the unit of the ISP's ``wb_temperature`` (log2 of the red/blue gain ratio, +
warmer): the recorded gains are the scene's times ``2 ** (+wb_error / 2)`` on red and
``2 ** (-wb_error / 2)`` on blue, green unchanged, so ``wb_temperature = -wb_error`` restores the
scene's gains exactly.

The set is a grid of scenes x conditions, numbered in the order of :func:`capture_plan`. The
original photograph, as a 16-bit ProPhoto RGB TIFF, is every variant's Expert C stand-in;
``conditions.csv`` lists each RAW's scene, condition, errors, ISO class, camera, CFA phase and
subset (``test`` for the held-out :data:`TEST_SCENES`, else ``train``). Everything is
deterministic for a seed.

Layout (MIT-Adobe-5K)::

    root/raw_photos/HQa1to700/photos/a0001-<scene>-<condition>.dng
    root/tiff16_c/a0001-<scene>-<condition>.tif
    root/conditions.csv
    root/LICENSES.md
    root/.complete                    (written by ensure_sample_set: the set's version)
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "SAMPLE_SET_VERSION",
    "CameraModel",
    "CAMERAS",
    "Scene",
    "SCENES",
    "TEST_SCENES",
    "Condition",
    "CONDITIONS",
    "Capture",
    "CONDITIONS_CSV_FIELDS",
    "capture_plan",
    "correction",
    "make_sample_set",
    "ensure_sample_set",
    "default_root",
    "read_conditions",
    "unprocess",
    "write_dng",
    "write_prophoto_tiff",
    "load_scene",
    "load_source",
    "scene_image",
    "DEFAULT_MAX_SIDE",
    "OVERSAMPLE",
]

#: Version of the set's recipe; :func:`ensure_sample_set` rebuilds a cached set of another version.
SAMPLE_SET_VERSION = 2


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


@dataclasses.dataclass(frozen=True)
class Scene:
    """One photographed scene that ships inside an installed package.

    Attributes:
        name: short name, used in file names and ``conditions.csv``.
        package: the distribution that ships it (PyPI name).
        views: loader specs of the scene's photographs, ``"<module>:<name>[:<index>]"``; a stereo
            pair is one scene with two views (never split between train and test).
        license: license and attribution of the photograph(s).
        relation: how the views relate (e.g. ``"stereo pair"``), empty for a single photo.
    """

    name: str
    package: str
    views: tuple[str, ...]
    license: str
    relation: str = ""


_CC_BY_20 = ("Creative Commons Attribution 2.0 Generic (CC BY 2.0, https://creativecommons.org/licenses/by/2.0/). "
             "Retrieved from Flickr in 2011 by Robert Layton for scikit-learn; see sklearn/datasets/images/README.txt.")

#: The natural colour photographs found in installed packages, in the order the set numbers them.
#: Left out as scientific or synthetic: scikit-image's hubble_deep_field, immunohistochemistry,
#: retina, cell, colorwheel, logo and the greyscale images; colour-science's and networkx's
#: plots and test plates.
SCENES: tuple[Scene, ...] = (
    Scene("astronaut", "scikit-image", ("skimage:astronaut",),
          "Eileen Collins, NASA photograph from the NASA Great Images database (https://flic.kr/p/r9qvLn); "
          "no known copyright restrictions, public domain (scikit-image's skimage.data.astronaut notes)."),
    Scene("coffee", "scikit-image", ("skimage:coffee",),
          "Coffee cup, courtesy of Pikolo Espresso Bar; CC0 by the photographer, Rachel Michetti "
          "(scikit-image's skimage.data.coffee notes)."),
    Scene("chelsea", "scikit-image", ("skimage:chelsea",),
          "Chelsea the cat; CC0 by the photographer, Stefan van der Walt (scikit-image's skimage.data.chelsea notes)."),
    Scene("rocket", "scikit-image", ("skimage:rocket",),
          "Launch of DSCOVR on Falcon 9, photograph by SpaceX "
          "(https://www.flickr.com/photos/spacexphotos/16511594820/), released into the public domain by SpaceX "
          "(scikit-image's skimage.data.rocket notes)."),
    Scene("motorcycle", "scikit-image", ("skimage:stereo_motorcycle:0", "skimage:stereo_motorcycle:1"),
          "Middlebury 2014 stereo benchmark (N. Nesic, P. Westling, X. Wang, Y. Kitajima, G. Krathwohl, "
          "D. Scharstein, Middlebury College; Scharstein et al., GCPR 2014), 4x down-sampled, redistributed in "
          "scikit-image (BSD-3-Clause package); the dataset states no separate license, cite the paper.",
          relation="stereo pair (view 0 = left, view 1 = right)"),
    Scene("china", "scikit-learn", ("sklearn:china.jpg",),
          "Photograph by danielbuechele (https://www.flickr.com/photos/danielbuechele/6061409035/). " + _CC_BY_20),
    Scene("flower", "scikit-learn", ("sklearn:flower.jpg",),
          "Photograph by vultilion (https://www.flickr.com/photos/vultilion/6056698931/). " + _CC_BY_20),
    Scene("grace_hopper", "matplotlib", ("matplotlib:grace_hopper.jpg",),
          "Commodore Grace M. Hopper, U.S. Navy photograph (Naval History and Heritage Command NH 96919), a "
          "work of the U.S. federal government and so in the public domain; added to matplotlib's sample data "
          "as a public-domain image (matplotlib pull request #1599)."),
)
_SCENE_BY_NAME = {s.name: s for s in SCENES}

#: Held-out scenes: every capture of these is in the test subset, none in train.
TEST_SCENES: tuple[str, ...] = ("rocket", "flower", "coffee")


@dataclasses.dataclass(frozen=True)
class Condition:
    """A capture condition: how the camera got the file wrong (see the module docstring).

    Attributes:
        name: identifier (``conditions.csv`` column ``condition``).
        description: one line, named by what the neutral rendering looks like.
        ev_error: ``(low, high)`` exposure error in EV drawn uniformly (0 = correct).
        wb_error: ``(low, high)`` error of the recorded white balance in log2(R/B) of the rendering.
        iso_class: ``"base"`` or ``"high"`` (noise level).
    """

    name: str
    description: str
    ev_error: tuple[float, float] = (0.0, 0.0)
    wb_error: tuple[float, float] = (0.0, 0.0)
    iso_class: str = "base"


CONDITIONS: tuple[Condition, ...] = (
    Condition("correct", "correct exposure and white balance, base ISO"),
    Condition("under", "under-exposed by 0.7 to 2 EV: the rendering is darker", ev_error=(-2.0, -0.7)),
    Condition("over", "over-exposed by 0.5 to 1 EV: brighter, highlights clipped at the white level", ev_error=(0.5, 1.0)),
    Condition("wb_warm", "white balance recorded for a cooler light: the rendering is too warm (redder)", wb_error=(0.3, 0.8)),
    Condition("wb_cool", "white balance recorded for a warmer light: the rendering is too cool (bluer)", wb_error=(-0.8, -0.3)),
    Condition("high_iso", "high ISO: much more shot and read noise", iso_class="high"),
)
_CONDITION_BY_NAME = {c.name: c for c in CONDITIONS}

#: Shot-noise variance (normalised units, per unit signal) drawn log-uniformly per ISO class;
#: the read-noise variance follows Brooks et al.'s fit ``log read = 2.18 log shot + 1.2 + N(0, 0.26)``.
_SHOT_NOISE = {"base": (5e-5, 2e-4), "high": (4e-3, 1.2e-2)}

#: Columns of ``conditions.csv``.
CONDITIONS_CSV_FIELDS: tuple[str, ...] = (
    "id", "name", "scene", "view", "condition", "ev_error", "wb_error", "iso_class", "shot_noise", "read_noise",
    "camera", "cfa", "orientation", "subset",
)


@dataclasses.dataclass(frozen=True)
class Capture:
    """One RAW of the set: which scene, under which condition, with which camera.

    Attributes:
        index: 0-based position in :func:`capture_plan`.
        scene: scene name (:data:`SCENES`).
        view: which of the scene's views (0 unless a stereo pair).
        condition: condition name (:data:`CONDITIONS`).
        camera: index into :data:`CAMERAS`.
        cfa: CFA phase of the readout.
        orientation: TIFF Orientation tag (1, 3 = 180 deg or 6 = 90 deg CW to display).
    """

    index: int
    scene: str
    view: int
    condition: str
    camera: int
    cfa: str
    orientation: int

    @property
    def id(self) -> str:
        """The ``aNNNN`` id."""
        return f"a{self.index + 1:04d}"

    @property
    def name(self) -> str:
        """File stem, ``aNNNN-<scene>-<condition>``."""
        return f"{self.id}-{self.scene}-{self.condition}"

    @property
    def subset(self) -> str:
        """``"test"`` for the held-out scenes, else ``"train"``."""
        return "test" if self.scene in TEST_SCENES else "train"


def capture_plan(n_images: int | None = None) -> list[Capture]:
    """The captures of the set, in file order.

    Capture ``k`` photographs scene ``s = k mod S`` (S scenes) in round ``r = k div S`` under
    condition ``(s + r) mod C`` (C conditions): the first S captures show every scene once (the
    first C of them every condition), and the first S x C every scene under every condition.
    Beyond S x C the grid repeats with other cameras, CFA phases and random draws. The camera is
    ``k mod 5``, the CFA phase cycles through all four, some files are stored rotated
    (Orientation 6 at ``k mod 5 = 4``, else 3 at ``k mod 6 = 5``; both occur among the first 12
    captures in train and in test), and a stereo scene alternates views
    between rounds.

    Args:
        n_images: number of captures (None = the full grid, ``len(SCENES) * len(CONDITIONS)``).

    Returns:
        ``n_images`` :class:`Capture` objects.
    """
    n_s, n_c = len(SCENES), len(CONDITIONS)
    n = n_s * n_c if n_images is None else int(n_images)
    if n < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    out = []
    for k in range(n):
        s, r = k % n_s, k // n_s
        scene = SCENES[s]
        out.append(Capture(
            index=k, scene=scene.name, view=r % len(scene.views), condition=CONDITIONS[(s + r) % n_c].name,
            camera=k % len(CAMERAS), cfa=("RGGB", "BGGR", "GRBG", "GBRG")[(k + k // len(CAMERAS)) % 4],
            orientation=6 if k % 5 == 4 else (3 if k % 6 == 5 else 1),
        ))
    return out


def correction(row) -> dict[str, float]:
    """The ISP parameters that undo a capture's recorded errors (for oracles and tests).

    Args:
        row: a ``conditions.csv`` row (mapping with ``ev_error`` and ``wb_error``).

    Returns:
        ``{"exposure": -ev_error, "wb_temperature": -wb_error}`` (floats).
    """
    return {"exposure": -float(row["ev_error"]), "wb_temperature": -float(row["wb_error"])}


def default_root() -> Path:
    """``<cache>/sample_fivek`` with ``<cache>`` = ``$RLISP_CACHE`` or ``~/.cache/rl-isp``."""
    cache = os.environ.get("RLISP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rl-isp")
    return Path(cache) / "sample_fivek"


def _load_view(spec: str) -> np.ndarray:
    module, _, rest = spec.partition(":")
    name, _, part = rest.partition(":")
    if module == "skimage":
        import skimage.data as skd

        img = getattr(skd, name)()
        if part:
            img = img[int(part)]
    elif module == "sklearn":
        from sklearn.datasets import load_sample_image

        img = load_sample_image(name)
    elif module == "matplotlib":
        import matplotlib
        from PIL import Image

        with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / name) as im:
            img = np.asarray(im.convert("RGB"))
    else:
        raise ValueError(f"unknown loader {spec!r}")
    return np.ascontiguousarray(np.asarray(img)[..., :3], dtype=np.uint8)


def load_scene(name: str, view: int = 0) -> np.ndarray:
    """Load one view of a packaged scene.

    Args:
        name: scene name (:data:`SCENES`).
        view: view index (0 unless a stereo pair).

    Returns:
        ``(H, W, 3)`` uint8 sRGB photograph.
    """
    if name not in _SCENE_BY_NAME:
        raise ValueError(f"unknown scene {name!r}; known: {', '.join(_SCENE_BY_NAME)}")
    return _load_view(_SCENE_BY_NAME[name].views[view])


def load_source(index: int) -> tuple[np.ndarray, str]:
    """Scene ``SCENES[index]``'s first view and its license text (kept for older callers)."""
    scene = SCENES[index]
    return load_scene(scene.name), scene.license


def _resize(img: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = img.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        from PIL import Image

        s = max_side / max(h, w)
        img = np.asarray(Image.fromarray(img).resize((max(2, round(w * s)), max(2, round(h * s))), Image.Resampling.LANCZOS))
    h, w = img.shape[:2]
    return np.ascontiguousarray(img[: h // 2 * 2, : w // 2 * 2])


#: Default longest side of the RAWs (and Expert C TIFFs) of the set.
DEFAULT_MAX_SIDE = 1024
#: Sensor pixels per photograph pixel along each axis. The packaged photographs are sharp at the
#: pixel level (already demosaicked and downscaled); sampling each on a sensor twice as fine, as
#: a camera's optical low-pass filter and lens band-limit the image a sensor sees, keeps the
#: bilinear demosaic's error at edges small, so the correct capture renders back to the photo.
OVERSAMPLE = 2


def scene_image(name: str, view: int = 0, max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """The photograph as the set's sensors see it, which is also its Expert C rendering.

    The packaged photograph is downscaled (Lanczos) so that its longer side is at most
    ``max_side / OVERSAMPLE``, then upsampled by :data:`OVERSAMPLE` (Lanczos) and cropped to even
    sizes.

    Args:
        name: scene name (:data:`SCENES`).
        view: view index.
        max_side: longest side of the result (None = the photograph as shipped, upsampled).

    Returns:
        ``(H, W, 3)`` uint8 sRGB, H and W even, longer side at most ``max_side``.
    """
    from PIL import Image

    img = load_scene(name, view)
    if max_side is not None:
        if max_side < 2 * OVERSAMPLE:
            raise ValueError(f"max_side must be >= {2 * OVERSAMPLE}, got {max_side}")
        img = _resize(img, max_side // OVERSAMPLE)
    h, w = img.shape[:2]
    up = Image.fromarray(img).resize((w * OVERSAMPLE, h * OVERSAMPLE), Image.Resampling.LANCZOS)
    return _resize(np.asarray(up), None)


def _srgb_to_linear(y: np.ndarray) -> np.ndarray:
    return np.where(y <= 0.04045, y / 12.92, ((y + 0.055) / 1.055) ** 2.4)


def _cam_from_srgb(cam: CameraModel) -> np.ndarray:
    """Linear sRGB -> white-balanced camera RGB: the inverse of the ISP's colour matrix."""
    from .color import camera_to_srgb_matrix

    xyz_to_cam = np.asarray(cam.xyz_to_cam, dtype=np.float64).reshape(3, 3) / 10000.0
    return np.linalg.inv(camera_to_srgb_matrix(np.linalg.inv(xyz_to_cam)))


def unprocess(srgb: np.ndarray, camera: CameraModel, rng: np.random.Generator, *, cfa: str | None = None,
              ev_error: float = 0.0, wb_error: float = 0.0, iso_class: str = "base") -> tuple[np.ndarray, dict]:
    """Turn an sRGB photograph into the Bayer mosaic ``camera`` would record of the scene.

    The inverse of the ISP's neutral rendering (see the module docstring), plus the capture's
    errors.

    Args:
        srgb: ``(H, W, 3)`` uint8 (or float in ``[0, 1]``) sRGB, H and W even.
        camera: the camera model.
        rng: random generator (scene illuminant, noise).
        cfa: override the camera's CFA pattern.
        ev_error: exposure error in EV (negative = under-exposed); photosites above the white
            level clip there.
        wb_error: error of the recorded white balance in log2(R/B) of the rendering (+ = the
            neutral rendering comes out warmer); 0 records the scene's own white balance.
        iso_class: ``"base"`` or ``"high"`` noise (:data:`_SHOT_NOISE`).

    Returns:
        ``(H, W)`` uint16 mosaic and a dict with ``cfa``, ``black`` (4,), ``white``, ``as_shot_neutral``
        (3,, what the file records), ``scene_neutral`` (3,, the scene illuminant's), ``noise``
        (shot, read variances in normalised units), ``ev_error``, ``wb_error``.
    """
    if iso_class not in _SHOT_NOISE:
        raise ValueError(f"iso_class must be one of {sorted(_SHOT_NOISE)}, got {iso_class!r}")
    y = srgb.astype(np.float64) / 255.0 if srgb.dtype == np.uint8 else np.asarray(srgb, dtype=np.float64)
    lin = _srgb_to_linear(np.clip(y, 0.0, 1.0))
    cam_wb = lin @ _cam_from_srgb(camera).T  # white-balanced camera RGB
    # The scene illuminant's gains (green = 1; red and blue >= 1.4 so that a recorded error of up
    # to 0.8 stops in R/B keeps green the smallest gain, as the ISP's normalisation assumes).
    scene_gains = np.array([rng.uniform(1.7, 2.4), 1.0, rng.uniform(1.4, 2.0)])
    recorded_gains = scene_gains * np.exp2(np.array([wb_error / 2.0, 0.0, -wb_error / 2.0]))
    camraw = np.clip(cam_wb, 0.0, None) / scene_gains * 2.0 ** float(ev_error)
    cfa = cfa or camera.cfa
    h, w = camraw.shape[:2]
    ch = {"R": 0, "G": 1, "B": 2}
    mosaic = np.empty((h, w), dtype=np.float64)
    for pos, letter in enumerate(cfa):
        i, j = divmod(pos, 2)
        mosaic[i::2, j::2] = camraw[i::2, j::2, ch[letter]]
    lo, hi = _SHOT_NOISE[iso_class]
    shot = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    read = float(np.exp(2.18 * np.log(shot) + 1.2 + rng.normal(0.0, 0.26)))
    noisy = mosaic + rng.standard_normal(mosaic.shape) * np.sqrt(read + shot * mosaic)
    black = np.array([camera.black] * 4, dtype=np.float64)
    if camera.black > 0:  # small per-channel offsets, as real sensors have
        black = black + rng.integers(-3, 4, size=4)
    span = camera.white - black.reshape(2, 2)
    counts = np.tile(black.reshape(2, 2), (h // 2, w // 2)) + noisy * np.tile(span, (h // 2, w // 2))
    counts = np.clip(np.rint(counts), 0, camera.white).astype(np.uint16)  # the ADC clips at the white level
    return counts, {
        "cfa": cfa,
        "black": black.astype(np.int64),
        "white": camera.white,
        "as_shot_neutral": 1.0 / recorded_gains,
        "scene_neutral": 1.0 / scene_gains,
        "noise": (shot, read),
        "ev_error": float(ev_error),
        "wb_error": float(wb_error),
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


def _prophoto_tiff_bytes(srgb: np.ndarray) -> bytes:
    """An sRGB image encoded as a zlib-compressed 16-bit ProPhoto RGB TIFF (Bradford D65 -> D50)."""
    import colour
    import tifffile

    rgb = srgb.astype(np.float64) / 255.0
    pro = colour.RGB_to_RGB(
        rgb, colour.RGB_COLOURSPACES["sRGB"], colour.RGB_COLOURSPACES["ProPhoto RGB"],
        chromatic_adaptation_transform="Bradford", apply_cctf_decoding=True, apply_cctf_encoding=True,
    )
    arr = np.clip(np.rint(np.clip(pro, 0.0, 1.0) * 65535.0), 0, 65535).astype(np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="rgb", compression="zlib", metadata=None,
                     description="ProPhoto RGB (ROMM), 16-bit; Expert C stand-in")
    return buf.getvalue()


def write_prophoto_tiff(path: str | os.PathLike, srgb: np.ndarray) -> Path:
    """Write an sRGB image as a 16-bit ProPhoto RGB TIFF (Bradford D65 -> D50), atomically.

    Args:
        path: output ``.tif``.
        srgb: ``(H, W, 3)`` uint8 sRGB.

    Returns:
        The path written.
    """
    path = Path(path)
    _atomic_write_bytes(path, _prophoto_tiff_bytes(srgb))
    return path


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def make_sample_set(root: str | os.PathLike, n_images: int | None = None, seed: int = 0,
                    max_side: int | None = DEFAULT_MAX_SIDE,
                    *, progress: bool = False) -> list[Path]:
    """Write the sample set in the MIT-Adobe-5K layout, with ``conditions.csv`` and ``LICENSES.md``.

    Args:
        root: output folder (created).
        n_images: number of RAWs, the first ``n_images`` of :func:`capture_plan` (None = the full
            grid of every scene under every condition, 48 RAWs; 12 already show every scene and
            every condition, and the test scenes).
        seed: random seed; the same seed gives byte-identical files.
        max_side: longest side of the RAWs and Expert C TIFFs (see :func:`scene_image`; None = the
            photographs as shipped, upsampled by :data:`OVERSAMPLE`, up to 1482 px).
        progress: show a tqdm progress bar.

    Returns:
        The DNG paths, sorted by id.
    """
    plan = capture_plan(n_images)
    root = Path(root)
    photos = root / "raw_photos" / "HQa1to700" / "photos"
    tiffs = root / "tiff16_c"
    photos.mkdir(parents=True, exist_ok=True)
    tiffs.mkdir(parents=True, exist_ok=True)
    images: dict[tuple[str, int], np.ndarray] = {}
    expert: dict[tuple[str, int], bytes | Path] = {}
    rows: list[dict] = []
    out: list[Path] = []
    it = plan
    if progress:
        from tqdm import tqdm

        it = tqdm(plan, desc="sample set", unit="raw")
    for cap in it:
        key = (cap.scene, cap.view)
        if key not in images:
            images[key] = scene_image(cap.scene, cap.view, max_side)
            expert[key] = _prophoto_tiff_bytes(images[key])
        img = images[key]
        cond = _CONDITION_BY_NAME[cap.condition]
        rng = np.random.default_rng([seed, cap.index])
        ev = float(rng.uniform(*cond.ev_error)) if cond.ev_error != (0.0, 0.0) else 0.0
        wb = float(rng.uniform(*cond.wb_error)) if cond.wb_error != (0.0, 0.0) else 0.0
        camera = CAMERAS[cap.camera]
        stored = {1: img, 3: img[::-1, ::-1], 6: np.rot90(img, 1)}[cap.orientation]
        mosaic, info = unprocess(np.ascontiguousarray(stored), camera, rng, cfa=cap.cfa, ev_error=round(ev, 4),
                                 wb_error=round(wb, 4), iso_class=cond.iso_class)
        out.append(write_dng(photos / f"{cap.name}.dng", mosaic, camera, info, orientation=cap.orientation))
        _write_expert(tiffs / f"{cap.name}.tif", expert, key)
        rows.append({
            "id": cap.id, "name": cap.name, "scene": cap.scene, "view": cap.view, "condition": cap.condition,
            "ev_error": f"{info['ev_error']:.4f}", "wb_error": f"{info['wb_error']:.4f}", "iso_class": cond.iso_class,
            "shot_noise": f"{info['noise'][0]:.3e}", "read_noise": f"{info['noise'][1]:.3e}", "camera": camera.model,
            "cfa": cap.cfa, "orientation": cap.orientation, "subset": cap.subset,
        })
    _write_conditions(root / "conditions.csv", rows)
    _write_licenses(root / "LICENSES.md", plan)
    return sorted(out)


def _write_expert(path: Path, expert: dict, key) -> None:
    """Write a scene view's Expert C TIFF; later captures of the view hard-link the first file
    (a copy where the file system has no hard links)."""
    first = expert[key]
    if isinstance(first, Path):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            try:
                os.link(first, tmp)
            except OSError:
                shutil.copyfile(first, tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    else:
        _atomic_write_bytes(path, first)
        expert[key] = path


def _write_conditions(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CONDITIONS_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def read_conditions(root: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Read ``root/conditions.csv``.

    Args:
        root: a sample-set root.

    Returns:
        ``{id: row}`` with every column as a string (see :data:`CONDITIONS_CSV_FIELDS`); empty
        when the file does not exist.

    Raises:
        ValueError: the file lacks a required column or lists an id twice.
    """
    path = Path(root) / "conditions.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"id", "scene", "condition", "subset"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        out: dict[str, dict[str, str]] = {}
        for row in reader:
            rid = row["id"].strip().lower()
            if rid in out:
                raise ValueError(f"{path}: id {rid} is listed twice")
            if row["subset"] not in ("train", "test"):
                raise ValueError(f"{path}: id {rid} has subset {row['subset']!r} (use train or test)")
            out[rid] = row
    return out


def _write_licenses(path: Path, plan: list[Capture]) -> None:
    lines = [
        "# Sample set: sources and licenses",
        "",
        f"Sample set version {SAMPLE_SET_VERSION}. Every DNG here is a packaged photograph run backwards through the",
        "ISP's neutral rendering and a camera model (`isp.sample_data`, after Brooks et al. 2019) under one capture",
        "condition (`conditions.csv`); each `tiff16_c` TIFF is the original photograph converted to 16-bit ProPhoto",
        "RGB. They are NOT MIT-Adobe-5K images; the set only mimics its layout.",
        "",
    ]
    for scene in SCENES:
        names = [c.name for c in plan if c.scene == scene.name]
        if not names:
            continue
        lines += [f"## {scene.name} (shipped with {scene.package})", ""]
        if scene.relation:
            lines += [f"Views: {scene.relation}.", ""]
        lines += [f"Files: {', '.join(names)}", "", scene.license, ""]
    _atomic_write_bytes(path, "\n".join(lines).encode("utf-8"))


def _marker_version(root: Path) -> int | None:
    """The version recorded in ``root/.complete`` (1 for the first set's ``ok``), None when absent."""
    marker = root / ".complete"
    if not marker.is_file():
        return None
    text = marker.read_text(encoding="utf-8", errors="replace").split()
    if len(text) >= 2 and text[0] == "version" and text[1].isdigit():
        return int(text[1])
    return 1


def ensure_sample_set(root: str | os.PathLike | None = None, n_images: int | None = None) -> Path:
    """The default sample set, generated on first use and rebuilt when its version is outdated.

    A set is built in a temporary sibling folder and moved into place when complete, so an
    interrupted build never leaves a half-written set behind; a cached set of another
    :data:`SAMPLE_SET_VERSION` is replaced.

    Args:
        root: where it lives (default :func:`default_root`).
        n_images: number of RAWs when it has to be generated (None = the full grid).

    Returns:
        The root folder.
    """
    root = Path(root) if root is not None else default_root()
    version = _marker_version(root)
    if version == SAMPLE_SET_VERSION and any((root / "raw_photos").rglob("*.dng")):
        return root
    what = "generating" if version is None else f"rebuilding (cached set is version {version})"
    print(f"[isp] {what} the SAMPLE RAW set v{SAMPLE_SET_VERSION} (packaged photographs unprocessed to DNG under "
          f"capture errors, not MIT-Adobe-5K) in {root}", file=sys.stderr)
    if version is None and root.is_dir() and any(root.iterdir()):
        # A folder we did not build: write into it, never delete anything there.
        make_sample_set(root, n_images=n_images, seed=0, progress=True)
        (root / ".complete").write_text(f"version {SAMPLE_SET_VERSION}\n")
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.{os.getpid()}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        make_sample_set(tmp, n_images=n_images, seed=0, progress=True)
        (tmp / ".complete").write_text(f"version {SAMPLE_SET_VERSION}\n")
        if root.exists():
            if _marker_version(root) == SAMPLE_SET_VERSION:  # another process finished first
                return root
            old = root.with_name(f".{root.name}.{os.getpid()}.old")
            os.replace(root, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
