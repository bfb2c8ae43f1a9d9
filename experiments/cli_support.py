"""What the experiments commands share for bad inputs: loading an agent's run folder with one
clear line on failure, and removing temporary files a killed earlier run left behind.

Exit codes and the ``error: <file>: <cause>`` lines come from :mod:`rlisp_common.exit_codes`.
"""
from __future__ import annotations

from pathlib import Path

from rlisp_common.exit_codes import EXIT_INTERNAL, InputError, describe

__all__ = ["load_agent", "remove_stale_temp"]


def load_agent(run_dir: str | Path, device: str = "cpu"):
    """``rl.inference.AgentParamsPredictor.load(run_dir)``; a failure is an :class:`InputError`
    naming the file at fault (``config.yaml`` for YAML problems, ``agent.zip`` for the weights).

    Nothing is unpickled: a pickled payload in ``agent.zip`` is refused (exit code 6)."""
    from rl.common import AGENT_FILE, CONFIG_FILE
    from rl.inference import AgentParamsPredictor

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("no such run folder" if not run_dir.exists() else "not a run folder", 3 if not run_dir.exists() else 5,
                         path=run_dir)
    for name in (CONFIG_FILE, AGENT_FILE):
        if not (run_dir / name).exists():
            raise InputError(f"not a finished run folder: no {name}", 3, path=run_dir)
    try:
        return AgentParamsPredictor.load(run_dir, device)
    except Exception as exc:  # noqa: BLE001 - classified; a bug is re-raised unchanged
        code, _ = describe(exc)
        if code == EXIT_INTERNAL:
            raise
        if exc.__cause__ is not None and describe(exc.__cause__)[0] != EXIT_INTERNAL:
            exc = exc.__cause__  # e.g. ValueError("not an SB3 agent file") from BadZipFile: say the real cause
        names = {c.__name__ for c in type(exc).__mro__}
        at_fault = run_dir / CONFIG_FILE if "YAMLError" in names or CONFIG_FILE in str(exc) else run_dir / AGENT_FILE
        raise InputError.wrap(exc, at_fault) from None


def remove_stale_temp(folder: str | Path) -> int:
    """Deletes hidden ``.*.tmp*`` files under ``folder`` (what an atomic write leaves when its
    process is killed); returns how many. Only files of this form are touched."""
    folder = Path(folder)
    n = 0
    if folder.is_dir():
        for f in folder.rglob(".*.tmp*"):
            if f.is_file() and not f.is_symlink():
                f.unlink()
                n += 1
    return n
