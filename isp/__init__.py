"""Differentiable camera ISP: RAW decoding, parameter specs, pipeline, rendering, sample data.

Public API (see ``docs/CONTRACTS.md``): :class:`RawImage`, :func:`read_raw`, the ``RawError``
family, :class:`ParamSpec`, :data:`PARAM_SPECS`, :data:`PARAM_NAMES`, :data:`NUM_PARAMS`,
:func:`neutral_params`, :func:`unit_to_params`, :func:`params_to_unit`, :func:`validate_params`,
:func:`params_from_dict`, :func:`params_to_dict`, :class:`RawBatch`, :class:`ISP`, :func:`render`,
:func:`apply_orientation`, :func:`save_image`; ``isp.sample_data``, ``isp.fivek`` and ``isp.noise`` (a RAW's
measured noise and the denoising it calls for) submodules;
``isp.reference`` (the Kornia reference of :class:`ISP`, imported on demand: it loads Kornia);
``isp.cpu.tune_allocator`` for CPU command-line tools.
"""
from .io import save_image
from .params import (
    NUM_PARAMS,
    PARAM_INDEX,
    PARAM_NAMES,
    PARAM_SPECS,
    ParamSpec,
    neutral_params,
    params_from_dict,
    params_to_dict,
    params_to_unit,
    unit_to_params,
    validate_params,
)
from .pipeline import ISP, RawBatch, apply_orientation, render
from .raw import (
    BAYER_PATTERNS,
    CorruptRawError,
    MonochromeError,
    NonBayerError,
    NotRawError,
    RawError,
    RawFileNotFoundError,
    RawImage,
    read_raw,
)

__all__ = [
    "BAYER_PATTERNS", "CorruptRawError", "MonochromeError", "NonBayerError", "NotRawError", "RawError",
    "RawFileNotFoundError", "RawImage", "read_raw",
    "NUM_PARAMS", "PARAM_INDEX", "PARAM_NAMES", "PARAM_SPECS", "ParamSpec", "neutral_params",
    "params_from_dict", "params_to_dict", "params_to_unit", "unit_to_params", "validate_params",
    "ISP", "RawBatch", "apply_orientation", "render", "save_image",
]
