"""Compatibility path: the starter model now lives in :mod:`attiqa.training.starter`.

Kept because code and docs outside attiqa use ``attiqa.starter.ensure_starter``,
``attiqa.starter.StarterConfig`` and ``attiqa.starter.build_starter`` (tests/conftest.py,
docs/CONTRACTS.md, docs/rl.md). New code imports from :mod:`attiqa.training.starter.build`.
"""
from __future__ import annotations

from attiqa.training.starter.build import build_starter, ensure_starter
from attiqa.training.starter.config import (BUILD_PHOTOS, HOLDOUT_PHOTOS, STARTER_DESCRIPTION, STARTER_VERSION,
                                            StarterConfig, starter_path)

__all__ = ["StarterConfig", "build_starter", "ensure_starter", "starter_path", "STARTER_VERSION",
           "STARTER_DESCRIPTION", "BUILD_PHOTOS", "HOLDOUT_PHOTOS"]
