"""Crash-consistent, exact run-state checkpoints: what ``--resume`` needs, one folder per step.

A checkpoint is the folder ``checkpoints/step_<N>/`` of a run. It is written as a hidden
temporary folder (``checkpoints/.step_<N>.tmp-<pid>``), each file flushed to disk, completed by
``MANIFEST.json`` (every file's size and SHA-256, written last) and renamed into place, so a
folder named ``step_<N>`` is either complete or absent. ``--resume`` takes the newest checkpoint
whose manifest checks out; a kill at any moment loses at most the steps since that checkpoint.

What one holds (nothing is pickled: arrays in ``npz`` loaded with ``allow_pickle=False``,
counters and RNG states in JSON, the agent through SB3's ``set_parameters``, i.e.
``torch.load(weights_only=True)``):

| file | content |
|---|---|
| ``agent.zip`` | policy, target networks, every optimizer (the entropy coefficient's too), ``log_ent_coef`` |
| ``vecnormalize.npz`` | the observation normaliser's running mean, variance and count, its last raw observation |
| ``replay_buffer.npz`` | the filled part of the replay buffer, its position and ``full`` flag |
| ``arrays.npz`` | SB3's ``_last_obs``, ``_last_original_obs``, ``_last_episode_starts``; the episode monitor's running returns/lengths |
| ``state.json`` | timesteps, update and episode counts, learning-rate progress, the Python / NumPy / torch / action-space RNG states, every env's RNG and current episode, the curve callback's unfinished point |
| ``training_curve.csv`` | the curve so far |

It is saved between SB3's rollouts (after the previous round of updates, before the next
environment step), the one point where the replay buffer, the envs and ``_last_obs`` agree, so
a resumed run continues with the same numbers an uninterrupted run computes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from rl.common import AGENT_FILE, CURVE_FILE, REPLAY_FILE, STATE_FILE, VECNORM_FILE, atomic_write_bytes, dump_json, load_npz
from rlisp_common.files import sha256_file

__all__ = [
    "CHECKPOINTS_DIR",
    "Checkpoint",
    "find_checkpoint",
    "remove_stale_temp",
    "restore_run_state",
    "save_run_state",
]

CHECKPOINTS_DIR = "checkpoints"
MANIFEST_FILE = "MANIFEST.json"
ARRAYS_FILE = "arrays.npz"
_STEP_DIR = re.compile(r"^step_(\d+)$")
# Test-only hook: "STEP:K" SIGKILLs this process while saving the checkpoint of timestep STEP
# (``*`` = any) after its K-th file, "STEP:manifest" after the manifest but before the rename,
# "STEP:done" once the checkpoint and the exported files are in place.
KILL_HOOK_ENV = "RLISP_TEST_KILL_IN_SAVE"


class Checkpoint:
    """A complete checkpoint folder: ``path`` and the ``step`` it holds."""

    def __init__(self, path: Path, step: int) -> None:
        self.path = Path(path)
        self.step = int(step)

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, step={self.step})"


# -- finding ------------------------------------------------------------------------------------
def _check_manifest(folder: Path) -> str | None:
    """``None`` when ``folder``'s manifest lists files that all exist with their size and hash,
    else why not."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        files = manifest["files"]
    except FileNotFoundError:
        return "no manifest (the save did not finish)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable manifest ({e})"
    for name, meta in files.items():
        f = folder / name
        if not f.is_file():
            return f"{name} missing"
        if f.stat().st_size != meta["bytes"] or sha256_file(f) != meta["sha256"]:
            return f"{name} does not match its manifest"
    return None


def find_checkpoint(run_dir: str | Path) -> tuple[Checkpoint | None, list[str]]:
    """The newest complete checkpoint of a run, and a note for every step folder passed over.

    Returns:
        ``(checkpoint or None, notes)``; each note names a folder and why it was not used.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    steps = []
    for d in root.iterdir() if root.is_dir() else ():
        m = _STEP_DIR.match(d.name)
        if m and d.is_dir():
            steps.append((int(m.group(1)), d))
    notes = []
    for step, d in sorted(steps, reverse=True):
        problem = _check_manifest(d)
        if problem is None:
            return Checkpoint(d, step), notes
        notes.append(f"{d}: {problem}")
    return None, notes


def remove_stale_temp(run_dir: str | Path) -> list[Path]:
    """Removes hidden temporary checkpoint folders and files left by a killed process."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    removed = []
    for d in list(root.iterdir()) if root.is_dir() else ():
        if d.name.startswith(".") and ".tmp" in d.name:
            shutil.rmtree(d) if d.is_dir() else d.unlink()
            removed.append(d)
    for f in Path(run_dir).glob(".*.tmp*"):  # atomic_write_bytes' temporary files
        if f.is_file():
            f.unlink()
            removed.append(f)
    return removed


# -- saving --------------------------------------------------------------------------------------
def _kill_hook(step: int, point: str) -> None:
    spec = os.environ.get(KILL_HOOK_ENV)
    if not spec:
        return
    want_step, _, want_point = spec.partition(":")
    if want_step in ("*", str(step)) and want_point == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _wrappers(venv):
    """``(VecNormalize or None, VecMonitor or None, base VecEnv)`` of a wrapped env."""
    norm = mon = None
    env = venv
    while hasattr(env, "venv"):
        if isinstance(env, VecNormalize):
            norm = env
        elif isinstance(env, VecMonitor):
            mon = env
        env = env.venv
    return norm, mon, env


def _rng_state(model) -> dict:
    np_state = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "action_space": model.action_space.np_random.bit_generator.state,
    }
    return state


def _set_rng_state(model, state: dict) -> None:
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
    model.action_space.np_random.bit_generator.state = state["action_space"]


def _curve_csv(curve: list[dict]) -> str:
    lines = ["timesteps,mean_return,mean_score"] + [f"{c['timesteps']},{c['mean_return']},{c['mean_score']}" for c in curve]
    return "\n".join(lines) + "\n"


def save_run_state(model, venv, run_dir: str | Path, curve: list[dict], save_replay: bool = True, *,
                   curve_pending: dict | None = None, keep: int = 2) -> Checkpoint:
    """Writes checkpoint ``checkpoints/step_<num_timesteps>`` of a run as one atomic unit.

    Call it between rollouts (``RunStateCallback`` does) or after ``learn`` returns. Then the
    run folder's own ``agent.zip``, ``vecnormalize.npz``, ``training_curve.csv`` and
    ``state.json`` (``{"num_timesteps", "checkpoint"}``) are updated from it for inference, and
    all but the newest ``keep`` checkpoints are removed.

    Args:
        model, venv: the agent and its (wrapped) training env.
        curve: the training curve so far; ``curve_pending``: the curve callback's unfinished point.
        save_replay: include the replay buffer (off-policy agents).

    Returns:
        The checkpoint written (or the complete one already there for this step).
    """
    run_dir = Path(run_dir)
    step = int(model.num_timesteps)
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    if final.is_dir() and _check_manifest(final) is None:
        _export(run_dir, Checkpoint(final, step), step)
        return Checkpoint(final, step)
    tmp = root / f".step_{step}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files: dict[str, dict] = {}

    def write(name: str, data: bytes) -> None:
        with open(tmp / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        _kill_hook(step, str(len(files)))

    buf = io.BytesIO()
    model.save(buf)
    write(AGENT_FILE, buf.getvalue())
    norm, mon, base = _wrappers(venv)
    if norm is not None:
        write(VECNORM_FILE, _npz_bytes(
            obs_mean=norm.obs_rms.mean, obs_var=norm.obs_rms.var, obs_count=np.asarray(norm.obs_rms.count),
            clip_obs=np.asarray(norm.clip_obs), epsilon=np.asarray(norm.epsilon),
            ret_mean=norm.ret_rms.mean, ret_var=norm.ret_rms.var, ret_count=np.asarray(norm.ret_rms.count),
            old_obs=np.asarray(norm.old_obs), old_reward=np.asarray(norm.old_reward), returns=np.asarray(norm.returns),
        ))
    buffer = getattr(model, "replay_buffer", None)
    if save_replay and buffer is not None:
        n = buffer.buffer_size if buffer.full else buffer.pos
        write(REPLAY_FILE, _npz_bytes(
            observations=buffer.observations[:n], next_observations=buffer.next_observations[:n], actions=buffer.actions[:n],
            rewards=buffer.rewards[:n], dones=buffer.dones[:n], timeouts=buffer.timeouts[:n],
            pos=np.asarray(buffer.pos), full=np.asarray(buffer.full),
        ))
    arrays = {}
    for name in ("_last_obs", "_last_original_obs", "_last_episode_starts"):
        value = getattr(model, name, None)
        if value is not None:
            arrays[name] = value
    if mon is not None:
        arrays.update(monitor_returns=mon.episode_returns, monitor_lengths=mon.episode_lengths)
    write(ARRAYS_FILE, _npz_bytes(**arrays))
    state = {
        "num_timesteps": step,
        "n_updates": int(getattr(model, "_n_updates", 0)),
        "episode_num": int(getattr(model, "_episode_num", 0)),
        "current_progress_remaining": float(getattr(model, "_current_progress_remaining", 1.0)),
        "monitor_episode_count": int(mon.episode_count) if mon is not None else 0,
        "rng": _rng_state(model),
        "envs": base.get_state() if hasattr(base, "get_state") else None,
        "curve_pending": curve_pending,
    }
    write(STATE_FILE, json.dumps(state).encode("utf-8"))
    write(CURVE_FILE, _curve_csv(curve).encode("utf-8"))
    with open(tmp / MANIFEST_FILE, "w", encoding="utf-8") as f:
        json.dump({"step": step, "files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _kill_hook(step, "manifest")
    if final.exists():  # an incomplete folder of this step from an earlier process
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    ckpt = Checkpoint(final, step)
    _export(run_dir, ckpt, step)
    _prune(root, keep)
    _kill_hook(step, "done")
    return ckpt


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _export(run_dir: Path, ckpt: Checkpoint, step: int) -> None:
    """The run folder's own copies of the newest agent (what inference and ``render.py --run`` read)."""
    for name in (AGENT_FILE, VECNORM_FILE, CURVE_FILE):
        if (ckpt.path / name).is_file():
            atomic_write_bytes(run_dir / name, (ckpt.path / name).read_bytes())
    agent_copy = run_dir / CHECKPOINTS_DIR / f"agent_{step}_steps.zip"
    if not agent_copy.is_file():
        atomic_write_bytes(agent_copy, (ckpt.path / AGENT_FILE).read_bytes())
    dump_json(run_dir / STATE_FILE, {"num_timesteps": step, "checkpoint": str(ckpt.path.relative_to(run_dir))})


def _prune(root: Path, keep: int) -> None:
    steps = sorted((int(m.group(1)), d) for d in root.iterdir() if (m := _STEP_DIR.match(d.name)) and d.is_dir())
    for _, d in steps[: max(len(steps) - max(int(keep), 1), 0)]:
        shutil.rmtree(d, ignore_errors=True)


# -- restoring -----------------------------------------------------------------------------------
def restore_run_state(model, venv, ckpt: Checkpoint | str | Path) -> tuple[int, list[dict], dict | None]:
    """Loads a checkpoint into a freshly built ``model`` / ``venv`` of the same configuration.

    Returns:
        ``(timesteps, curve, curve_pending)``.
    """
    from stable_baselines3.common.save_util import load_from_zip_file

    from rlisp_common.exit_codes import InputError

    folder = ckpt.path if isinstance(ckpt, Checkpoint) else Path(ckpt)
    try:  # weights_only=True inside; a pickled payload is refused, not run
        _, params, variables = load_from_zip_file(folder / AGENT_FILE, device=model.device, load_data=False)
    except Exception as exc:  # noqa: BLE001 - reported with the file's name
        raise InputError.wrap(exc.__cause__ if isinstance(exc, ValueError) and exc.__cause__ else exc, folder / AGENT_FILE) from None
    model.set_parameters(params, exact_match=True, device=model.device)
    for name, value in (variables or {}).items():  # SAC's log_ent_coef (its optimizer is in params)
        if value is not None:
            getattr(model, name).data.copy_(value.data)
    state = json.loads((folder / STATE_FILE).read_text())
    model.num_timesteps = int(state["num_timesteps"])
    model._n_updates = int(state["n_updates"])
    model._episode_num = int(state["episode_num"])
    model._current_progress_remaining = float(state["current_progress_remaining"])
    arrays = load_npz(folder / ARRAYS_FILE)
    norm, mon, base = _wrappers(venv)
    for name in ("_last_obs", "_last_original_obs", "_last_episode_starts"):
        if name in arrays:
            setattr(model, name, arrays[name].copy())
    if mon is not None and "monitor_returns" in arrays:
        mon.episode_returns = arrays["monitor_returns"].copy()
        mon.episode_lengths = arrays["monitor_lengths"].copy()
        mon.episode_count = int(state["monitor_episode_count"])
    if norm is not None and (folder / VECNORM_FILE).is_file():
        d = load_npz(folder / VECNORM_FILE)
        norm.obs_rms.mean, norm.obs_rms.var, norm.obs_rms.count = d["obs_mean"], d["obs_var"], float(d["obs_count"])
        norm.ret_rms.mean, norm.ret_rms.var, norm.ret_rms.count = d["ret_mean"], d["ret_var"], float(d["ret_count"])
        norm.old_obs, norm.old_reward, norm.returns = d["old_obs"], d["old_reward"], d["returns"]
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None and (folder / REPLAY_FILE).is_file():
        d = load_npz(folder / REPLAY_FILE)
        n = len(d["observations"])
        if d["observations"].shape[1:] != buffer.observations.shape[1:] or n > buffer.buffer_size:
            raise ValueError(f"{folder / REPLAY_FILE}: replay buffer of shape {d['observations'].shape} does not fit this agent")
        for key in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
            getattr(buffer, key)[:n] = d[key]
        buffer.pos = int(d["pos"])
        buffer.full = bool(d["full"])
    if state["envs"] is not None:
        base.set_state(state["envs"])
    _set_rng_state(model, state["rng"])
    curve = []
    for line in (folder / CURVE_FILE).read_text().splitlines()[1:]:
        t, r, s = line.split(",")
        curve.append({"timesteps": int(t), "mean_return": float(r), "mean_score": float(s)})
    return model.num_timesteps, curve, state.get("curve_pending")
