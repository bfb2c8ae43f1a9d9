"""Fixtures of the experiments tests: a short agent run on the sample set, shared by the module tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_run(sample_root, tiny_attiqa_checkpoint, tmp_path_factory):
    """A run folder of ``rl/train_agent.py`` after 64 timesteps on the sample set (tiny ATTIQA reward)."""
    run_dir = tmp_path_factory.mktemp("experiments_run") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "rl" / "train_agent.py"), "--reward", "attiqa", "--total-timesteps", "64",
         "--data", str(sample_root), "--attiqa-checkpoint", str(tiny_attiqa_checkpoint), "--run-dir", str(run_dir),
         "--threads", "1", "--no-eval", "--n-envs", "4", "--hyperparams", "env.crop=[64,64]",
         "env.preview_side=128", "env.thumb_size=4", "checkpoint_every=256", "curve_every=128"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return run_dir


def _best_rotation(img: np.ndarray, ref: np.ndarray) -> int:
    """Quarter turns ``k`` (0-3) of ``img`` whose grey levels best match ``ref`` (resized to fit).

    Used to check orientation independently of ``envs.judges.align_to``: Pearson
    correlation of 32x32 grey thumbnails, computed with scikit-image's resize.
    """
    from skimage.transform import resize

    target = resize(ref.mean(-1), (32, 32), anti_aliasing=True)
    scores = []
    for k in range(4):
        cand = resize(np.rot90(img, k).mean(-1), (32, 32), anti_aliasing=True)
        scores.append(np.corrcoef(cand.ravel(), target.ravel())[0, 1])
    return int(np.argmax(scores))


@pytest.fixture(scope="session")
def best_rotation():
    """The function :func:`_best_rotation` (``best_rotation(img, ref) -> k``)."""
    return _best_rotation
