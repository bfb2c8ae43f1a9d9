"""The packaged photographs the starter learns from: loading, scenes, crops and random renderings.

A photo is named ``"SOURCE:NAME"``: ``skimage:astronaut`` (``skimage.data.astronaut()``),
``skimage:motorcycle_left`` / ``_right`` (the two views of ``stereo_motorcycle``),
``sklearn:china`` (``load_sample_image("china.jpg")``), ``matplotlib:grace_hopper``
(``mpl-data/sample_data/grace_hopper.jpg``). :func:`photo_scene` names the scene a photo shows,
in the spelling of ``isp.sample_data`` (both motorcycle views are one scene).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from attiqa.utils.color import linear_to_srgb, srgb_to_linear

__all__ = ["starter_photos", "photo_scene", "isp_variation", "random_crop"]


def _load_photo(spec: str) -> np.ndarray:
    source, name = spec.split(":", 1)
    if source == "skimage":
        import skimage.data as data

        if name in ("motorcycle", "motorcycle_left", "motorcycle_right"):
            return data.stereo_motorcycle()[1 if name.endswith("right") else 0]
        return getattr(data, name)()
    if source == "sklearn":
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    if source == "matplotlib":
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data(f"{name}.jpg", asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"))
    raise ValueError(f"unknown photo source {spec!r}")


def photo_scene(spec: str) -> str:
    """The scene a photo shows, spelt as in ``isp.sample_data`` (``"skimage:motorcycle_left"`` ->
    ``"motorcycle"``, ``"matplotlib:grace_hopper"`` -> ``"grace-hopper"``)."""
    name = spec.split(":", 1)[1]
    if name.startswith("motorcycle"):
        return "motorcycle"
    return name.replace("_", "-")


def starter_photos(specs, max_side: int) -> dict[str, torch.Tensor]:
    """Loads packaged photos as ``(3, H, W)`` float tensors in ``[0, 1]``, longer side <= ``max_side``."""
    from attiqa.data.transforms import resize_short_edge

    out = {}
    for spec in specs:
        arr = np.asarray(_load_photo(spec))[..., :3].astype(np.float32) / 255.0
        img = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        h, w = img.shape[-2:]
        if max(h, w) > max_side:
            img = resize_short_edge(img, round(min(h, w) * max_side / max(h, w)))
        out[spec] = img.contiguous()
    return out


def isp_variation(img: torch.Tensor, g: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """A random ISP-like rendering change: exposure, white balance, gamma/tone, saturation.

    Args:
        img: ``(3, H, W)`` sRGB in ``[0, 1]``.
        g: random generator.
        strength: 1 = the full ranges below, smaller = milder.

    Ranges at strength 1: exposure ±1.5 EV, per-channel white-balance gain 0.75-1.33, gamma
    0.6-1.6, S-curve contrast -0.5..0.5, saturation 0-1.8.
    """
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=g))  # noqa: E731
    lin = srgb_to_linear(img)
    lin = lin * 2.0 ** (strength * u(-1.5, 1.5))
    wb = torch.tensor([2.0 ** (strength * u(-0.41, 0.41)) for _ in range(3)]).view(3, 1, 1)
    lin = lin * wb
    out = linear_to_srgb(lin)
    out = out.clamp(0, 1) ** (2.0 ** (strength * u(-0.74, 0.68)))
    k = strength * u(-0.5, 0.5)  # S-curve (k > 0) or flattening (k < 0) around mid-grey
    out = (out + k * out * (1 - out) * (2 * out - 1) * 2).clamp(0, 1)
    grey = (0.2126 * out[0] + 0.7152 * out[1] + 0.0722 * out[2])[None]
    sat = 1.0 + strength * (u(0.0, 1.8) - 1.0)
    return (grey + sat * (out - grey)).clamp(0, 1)


def random_crop(img: torch.Tensor, crop: int, g: torch.Generator, min_scale: float = 0.45) -> torch.Tensor:
    """A random square crop covering ``min_scale``-1 of the shorter side, resized to ``crop``."""
    _, h, w = img.shape
    short = min(h, w)
    side = int(short * (min_scale + (1 - min_scale) * float(torch.rand((), generator=g))))
    side = max(min(side, short), min(crop, short))
    y = int(torch.randint(0, h - side + 1, (1,), generator=g))
    x = int(torch.randint(0, w - side + 1, (1,), generator=g))
    patch = img[:, y:y + side, x:x + side]
    if side != crop:
        patch = F.interpolate(patch[None], size=(crop, crop), mode="bilinear", align_corners=False,
                              antialias=side > crop)[0].clamp(0, 1)
    return patch


def _distort(img: torch.Tensor, kind: str, level: float, g: torch.Generator) -> torch.Tensor:
    from attiqa.data.distortions import distort

    return distort(img[None], kind, float(level), generator=g)[0].clamp(0, 1)
