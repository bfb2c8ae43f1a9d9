"""Helpers of the bad-input corpus tests (``tests/experiments/test_bad_inputs.py``,
``tests/attiqa/test_cli_bad_inputs.py``): run a command as a subprocess that cannot read a
``chmod 000`` file even as root, make a file unreadable, a torch file whose unpickling would
create a marker file, and pick out the one-line ``error:`` reports.

"Permission denied" as root: root bypasses file modes through the capabilities
CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so the CLI is started with both dropped from its
capability bounding set (``prctl(PR_CAPBSET_DROP)`` before ``exec``; uid 0 then gets only the
bounding set's capabilities). A ``chmod 000`` file then really fails to open with EACCES; a
canary subprocess checks that, so the case can never pass by not testing anything.
"""
from __future__ import annotations

import ctypes
import io
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

__all__ = ["PY", "REPO", "Poison", "cli", "error_lines", "line_for", "poisoned_torch_bytes", "unreadable"]


def _drop_dac_override():  # preexec_fn: runs in the child before exec
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                os._exit(97)


def cli(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("RLISP_TEST_KILL_IN_SAVE", None)
    proc = subprocess.run([PY, *map(str, args)], capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout,
                          preexec_fn=_drop_dac_override)
    assert proc.returncode != 97, "could not drop CAP_DAC_OVERRIDE"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def unreadable(path: Path) -> Path:
    path.chmod(0)
    probe = subprocess.run([PY, "-c", f"open({str(path)!r}, 'rb')"], capture_output=True, preexec_fn=_drop_dac_override)
    assert probe.returncode != 0 and b"Permission denied" in probe.stderr, "the unreadable file is readable"
    return path


class Poison:
    """Unpickling this would create ``marker``: proof that no code from a data file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def poisoned_torch_bytes(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"weight": Poison(marker)}, buf)
    return buf.getvalue()


def error_lines(stderr: str, prefix: str = "error:") -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith(prefix)]


def line_for(stderr: str, name: str, prefix: str = "error:") -> str:
    hits = [ln for ln in error_lines(stderr, prefix) if name in ln]
    assert len(hits) == 1, (name, stderr)
    return hits[0]
