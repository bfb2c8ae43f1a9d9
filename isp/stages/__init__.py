"""ISP stages: each a plain function on tensors plus a thin ``nn.Module`` that calls it.

Per-image parameters are floats or ``(B,)`` tensors broadcast against ``(B, C, H, W)``.
"""
from ..color import ColorMatrix, SRGBEncode, apply_color_matrix, srgb_decode, srgb_encode
from .demosaic import DEFAULT_DEMOSAIC, DEMOSAIC_METHODS, Demosaic, DemosaicMethod, bayer_masks, demosaic, demosaic_bilinear
from .detail import Denoise, Sharpen, binomial_blur, denoise, gaussian_blur, lowpass, sharpen, smooth_half_res
from .adjust import Saturation, luminance, rb_chroma, saturate
from ._util import clamp01
from .tone import (
    Brightness,
    Contrast,
    Exposure,
    HighlightsShadows,
    adjust_brightness,
    adjust_contrast,
    adjust_exposure,
    adjust_highlights_shadows,
)
from .white_balance import DEFAULT_HIGHLIGHT, HIGHLIGHT_MODES, WhiteBalance, clip_level, white_balance, wb_gains

__all__ = [
    "ColorMatrix", "SRGBEncode", "apply_color_matrix", "srgb_decode", "srgb_encode",
    "DEFAULT_DEMOSAIC", "DEMOSAIC_METHODS", "Demosaic", "DemosaicMethod", "bayer_masks", "demosaic", "demosaic_bilinear",
    "Denoise", "Sharpen", "binomial_blur", "denoise", "gaussian_blur", "lowpass", "sharpen", "smooth_half_res",
    "Saturation", "saturate", "luminance", "rb_chroma", "clamp01",
    "Brightness", "Contrast", "Exposure", "HighlightsShadows",
    "adjust_brightness", "adjust_contrast", "adjust_exposure", "adjust_highlights_shadows",
    "DEFAULT_HIGHLIGHT", "HIGHLIGHT_MODES", "WhiteBalance", "clip_level", "white_balance", "wb_gains",
]
