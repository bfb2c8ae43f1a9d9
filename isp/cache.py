"""Where isp keeps what it generates: ``$RLISP_CACHE`` or ``~/.cache/rl-isp``."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """The project's cache folder: ``$RLISP_CACHE`` or ``~/.cache/rl-isp``."""
    env = os.environ.get("RLISP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rl-isp"
