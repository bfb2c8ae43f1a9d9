"""Exposure by the highlights: how far a RAW can be brightened before its highlights reach white.

A correctly exposed photograph nearly always has something close to white in it (a sky, a
lamp, a specular highlight, a white shirt); an under-exposed capture has its brightest tones
well below. :func:`highlight_exposure` is the classic white-point rule of "auto tone" tools,
made one-sided: it brightens the neutral rendering until a high percentile of its brightest
channel reaches a target just under white, and it never darkens, since an over-exposed capture's
highlights are clipped in the RAW already and darkening cannot bring them back (it only turns
them grey).

It is wrong for low-key scenes (a dark subject with nothing bright in the frame: it brightens
them), which is why :mod:`envs` makes it a starting point that the agent can move from, not the
answer (``env.auto_exposure``). The constants were chosen on the embedded sample set's
*training* scenes only (docs/rl.md, session 16): among percentiles 99 / 99.5 / 99.9 of the
brightest channel or of luma, targets 0.8-1.0 and strengths 0.5-1, the one with the lowest
ΔE2000 on capture errors whose correct captures moved by at most +1.0.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .color import srgb_decode

__all__ = ["highlight_exposure", "HIGHLIGHT_PERCENTILE", "HIGHLIGHT_TARGET", "MAX_BRIGHTENING_EV", "EXPOSURE_PREVIEW"]

#: Percentile of the brightest channel (per pixel) of the neutral rendering that is brought to the target.
HIGHLIGHT_PERCENTILE = 99.9
#: sRGB-encoded value that percentile is brought to.
HIGHLIGHT_TARGET = 0.9
#: Largest brightening (EV); the ISP's exposure control spans +-2 EV.
MAX_BRIGHTENING_EV = 2.0
#: Longest side of the preview the percentile is measured on.
EXPOSURE_PREVIEW = 1024


def highlight_exposure(raw, *, percentile: float = HIGHLIGHT_PERCENTILE, target: float = HIGHLIGHT_TARGET,
                       max_ev: float = MAX_BRIGHTENING_EV, device="cpu") -> float:
    """The exposure compensation (EV, ``>= 0``) that brings the highlights of ``raw`` to ``target``.

    Args:
        raw: an :class:`isp.RawImage`; measured on its neutral rendering at most
            :data:`EXPOSURE_PREVIEW` pixels on the longer side.
        percentile: percentile of the per-pixel maximum over R, G, B.
        target: the sRGB-encoded value that percentile is brought to.
        max_ev: the largest brightening.

    Returns:
        ``min(max_ev, max(0, log2(decode(target) / decode(p))))`` with ``p`` the measured
        percentile: 0 when the highlights are at or above the target already (correct and
        over-exposed captures), more the darker they are.
    """
    from .pipeline import render

    small = raw.preview(EXPOSURE_PREVIEW) if max(raw.mosaic.shape) > EXPOSURE_PREVIEW else raw
    img = render(small, device=device)
    p = float(np.percentile(img.amax(dim=0).flatten().cpu().numpy(), percentile))
    if p <= 0.0:
        return float(max_ev)
    linear = srgb_decode(torch.tensor([target, p], dtype=torch.float64))
    return float(min(max_ev, max(0.0, math.log2(float(linear[0]) / float(linear[1])))))
