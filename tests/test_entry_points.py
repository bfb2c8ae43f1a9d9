"""The commands on PATH (``[project.scripts]`` in pyproject.toml) and their ``python ...`` forms.

Every entry point must name an importable ``main(argv)`` that answers ``--help`` with exit status
0. Where the package is installed from this checkout (``pip install -e .``, as ``.ci/run``
does), the installed console scripts must be exactly those of pyproject.toml, and each command on
PATH answers ``--help`` too.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
PYTHON_FORMS = {"rlisp-train": ["rl/train_agent.py"], "rlisp-render": ["experiments/render.py"],
                "rlisp-export": ["experiments/export_pairs.py"], "rlisp-bench": ["experiments/bench_agent.py"],
                "attiqa": ["-m", "attiqa"]}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)


def test_the_five_commands_are_declared():
    assert set(SCRIPTS) == set(PYTHON_FORMS)


@pytest.mark.parametrize("name", sorted(PYTHON_FORMS))
def test_entry_point_main_answers_help_like_the_python_form(name):
    module, func = SCRIPTS[name].split(":")
    via_entry = _run([sys.executable, "-c", f"import sys; from {module} import {func}; sys.exit({func}(['--help']))"])
    via_python = _run([sys.executable, *PYTHON_FORMS[name], "--help"])
    assert via_entry.returncode == 0 == via_python.returncode, via_entry.stderr[-2000:] + via_python.stderr[-2000:]
    assert "usage" in via_entry.stdout.lower()
    # the same parser: the same options listed (the program name may differ)
    opts = lambda out: sorted(w for w in out.split() if w.startswith("--"))  # noqa: E731
    assert opts(via_entry.stdout) == opts(via_python.stdout)


def _installed_here() -> bool:
    # every distribution of that name: the build's own egg-info in the checkout (on sys.path as the
    # working folder) can shadow the installed dist-info, which alone records where it came from
    dists = [d for d in importlib.metadata.distributions() if (d.metadata["Name"] or "").lower() == "rl-isp-attiqa"]
    return any(REPO.as_uri() in (d.read_text("direct_url.json") or "") for d in dists)


@pytest.mark.skipif(not _installed_here(), reason="rl-isp-attiqa is not pip-installed from this checkout (pip install -e .)")
def test_installed_console_scripts_resolve():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name in SCRIPTS}
    assert {n: ep.value for n, ep in eps.items()} == SCRIPTS
    for name, ep in eps.items():
        assert callable(ep.load())
        exe = shutil.which(name) or str(Path(sys.executable).parent / name)
        proc = _run([exe, "--help"])
        assert proc.returncode == 0 and "usage" in proc.stdout.lower(), (name, proc.stderr[-2000:])
