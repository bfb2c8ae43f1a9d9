"""Exact resume and crash consistency of rl/train_agent.py.

A = one uninterrupted run of 2N steps. Every other run is the same command killed with SIGKILL
somewhere (after a checkpoint, in the middle of a save, at a random moment) and continued with
``--resume``: each must end with *bitwise* the same weights, optimizer states, replay buffer,
normaliser statistics, RNG states and training curve as A (CPU, one thread, same batches:
nothing is allowed to differ, so no tolerance is used).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "rl" / "train_agent.py"
N = 128  # checkpoint interval; the runs go to 2N
CONFIG = [
    "--reward", "analytic", "--n-envs", "4", "--threads", "1", "--no-eval", "--total-timesteps", str(2 * N),
    "--hyperparams", "env.crop=[64,64]", "env.preview_side=128", "env.thumb_size=4", f"checkpoint_every={N}", "curve_every=32",
    "algo_kwargs.learning_starts=64", "algo_kwargs.batch_size=32", "algo_kwargs.gradient_steps=2",
    "algo_kwargs.policy_kwargs.net_arch=[32,32]",
]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "RLISP_TEST_KILL_IN_SAVE"}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def train(run_dir, *args, kill_in_save=None, timeout=300):
    extra = {"RLISP_TEST_KILL_IN_SAVE": kill_in_save} if kill_in_save else {}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args), "--run-dir", str(run_dir)],
                          capture_output=True, text=True, cwd=REPO, env=_env(**extra), timeout=timeout)


def fresh(run_dir, sample_root, **kw):
    return train(run_dir, "--data", sample_root, *CONFIG, **kw)


def resume(run_dir):
    proc = train(run_dir, "--resume", "--no-eval", "--threads", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def final_state(run_dir, buffer: bool = True) -> dict:
    """Every number of the final checkpoint (step 2N); ``buffer``: an off-policy run's replay buffer."""
    from stable_baselines3.common.save_util import load_from_zip_file

    ckpt = Path(run_dir) / "checkpoints" / f"step_{2 * N}"
    manifest = json.loads((ckpt / "MANIFEST.json").read_text())
    files = {"agent.zip", "vecnormalize.npz", "arrays.npz", "state.json"} | ({"replay_buffer.npz"} if buffer else set())
    assert set(manifest["files"]) >= files
    out = {}
    _, params, variables = load_from_zip_file(ckpt / "agent.zip", device="cpu", load_data=False)
    for group, sd in params.items():  # policy, actor/critic/entropy optimizers
        flat = sd if group == "policy" else {"state": sd["state"], "param_groups": sd["param_groups"]}
        out[f"agent/{group}"] = flat
    out["agent/variables"] = variables
    for name in sorted(files - {"agent.zip", "state.json"}):
        with np.load(ckpt / name, allow_pickle=False) as f:
            out.update({f"{name}/{k}": f[k] for k in f.files})
    out["state.json"] = json.loads((ckpt / "state.json").read_text())
    out["training_curve.csv"] = (ckpt / "training_curve.csv").read_text()
    return out


def assert_same(a, b, where=""):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def uninterrupted(sample_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("resume") / "A"
    proc = fresh(run_dir, sample_root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return final_state(run_dir)


def test_resume_after_checkpoint_equals_uninterrupted(uninterrupted, sample_root, tmp_path):
    """Killed right after the checkpoint at N (SIGKILL), resumed to 2N: bitwise equal to A."""
    run_dir = tmp_path / "B"
    proc = fresh(run_dir, sample_root, kill_in_save=f"{N}:done")
    assert proc.returncode == -signal.SIGKILL
    proc = resume(run_dir)
    assert f"resuming at timestep {N} from {run_dir / 'checkpoints' / f'step_{N}'}" in proc.stdout
    b = final_state(run_dir)
    assert b["state.json"]["num_timesteps"] == 2 * N and b["state.json"]["n_updates"] > 0
    assert_same(uninterrupted, b)
    assert len((run_dir / "command.txt").read_text().splitlines()) == 2


def test_kill_mid_save_resumes_from_newest_complete(uninterrupted, sample_root, tmp_path):
    """Killed after 2 files of the checkpoint at 2N were written: the half-written folder is never
    used (nor mixed with step N), --resume says which checkpoint it takes, and ends equal to A."""
    run_dir = tmp_path / "C"
    proc = fresh(run_dir, sample_root, kill_in_save=f"{2 * N}:2")
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers and not (run_dir / "checkpoints" / f"step_{2 * N}").exists()
    proc = resume(run_dir)
    assert f"resuming at timestep {N} from" in proc.stdout and f"step_{N}" in proc.stdout
    assert "removed" in proc.stdout  # the stale temporary folder
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    assert_same(uninterrupted, final_state(run_dir))


def test_killed_before_first_checkpoint_starts_over(uninterrupted, sample_root, tmp_path):
    """Killed during the first save (manifest written, not renamed): nothing complete, so --resume
    says it starts over and still ends equal to A; a fresh start on the folder points to --resume."""
    run_dir = tmp_path / "D"
    proc = fresh(run_dir, sample_root, kill_in_save=f"{N}:manifest")
    assert proc.returncode == -signal.SIGKILL
    again = fresh(run_dir, sample_root)
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    proc = resume(run_dir)
    assert "no complete checkpoint" in proc.stdout and "starting the run over" in proc.stdout
    assert_same(uninterrupted, final_state(run_dir))


def test_random_sigkill_then_resume(uninterrupted, sample_root, tmp_path):
    """SIGKILL at a random moment of a run (seeded, so a failure reproduces), then --resume."""
    rng = random.Random(int(os.environ.get("RESUME_KILL_SEED", "14")))
    run_dir = tmp_path / "E"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--data", str(sample_root), *CONFIG, "--run-dir", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=_env())
    # wait until training has started (the config is written), then kill within the next seconds
    t0 = time.time()
    while not (run_dir / "config.yaml").is_file() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 3.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    resume(run_dir)
    assert_same(uninterrupted, final_state(run_dir))


def test_tampered_checkpoint_is_passed_over(uninterrupted, sample_root, tmp_path):
    """A checkpoint whose files no longer match its manifest is skipped with a note, never mixed."""
    run_dir = tmp_path / "F"
    proc = fresh(run_dir, sample_root, kill_in_save=f"{2 * N}:done")
    assert proc.returncode == -signal.SIGKILL
    newest = run_dir / "checkpoints" / f"step_{2 * N}"
    (newest / "replay_buffer.npz").write_bytes(b"not what the manifest says")
    proc = train(run_dir, "--resume", "--no-eval", "--threads", "1", "--total-timesteps", str(2 * N))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"skipping incomplete checkpoint {newest}" in proc.stdout and f"resuming at timestep {N}" in proc.stdout
    assert_same(uninterrupted, final_state(run_dir))


def test_ppo_resume_after_checkpoint_equals_uninterrupted(sample_root, tmp_path):
    """PPO (on-policy: no replay buffer; a checkpoint falls between rollouts of n_envs * n_steps
    = N transitions): killed after the checkpoint at N and resumed, bitwise equal to a 2N run."""
    ppo = ["--algo", "ppo", "--reward", "analytic", "--n-envs", "4", "--threads", "1", "--no-eval",
           "--total-timesteps", str(2 * N), "--hyperparams", "env.crop=[64,64]", "env.preview_side=128",
           "env.thumb_size=4", f"checkpoint_every={N}", "curve_every=32", f"algo_kwargs.n_steps={N // 4}",
           "algo_kwargs.batch_size=32", "algo_kwargs.n_epochs=2", "algo_kwargs.policy_kwargs.net_arch=[32,32]"]
    a, b = tmp_path / "A", tmp_path / "B"
    proc = train(a, "--data", sample_root, *ppo)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = train(b, "--data", sample_root, *ppo, kill_in_save=f"{N}:done")
    assert proc.returncode == -signal.SIGKILL
    proc = resume(b)
    assert f"resuming at timestep {N}" in proc.stdout
    assert_same(final_state(a, buffer=False), final_state(b, buffer=False))
