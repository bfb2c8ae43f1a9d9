"""Smoke and unit tests of rl/train_agent.py, the run folder, resuming and the params predictor."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rl.common import ALGOS, load_hyperparams, load_yaml, parse_overrides

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "rl" / "train_agent.py"
# Small everything: 4 envs, 64x64 crops, 5 gradient-ascent steps, learning starts early.
FAST = [
    "--n-envs", "4",
    "--hyperparams", "env.crop=[64,64]", "env.preview_side=128", "env.thumb_size=4", "env.detail_crop=16", "env.detail_halo=8",
    "eval.ga_steps=5", "checkpoint_every=256", "curve_every=128", "eval.every=256", "eval.de_side=64",
]


def run_script(*args, timeout=300):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
    )
    return proc


@pytest.fixture(scope="module")
def smoke_run(sample_root, tiny_attiqa_checkpoint, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    proc = run_script(
        "--reward", "attiqa", "--total-timesteps", 512, "--data", sample_root,
        "--attiqa-checkpoint", tiny_attiqa_checkpoint, "--run-dir", run_dir, "--threads", 1, *FAST,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir, proc


def test_smoke_run_writes_run_folder(smoke_run):
    run_dir, _ = smoke_run
    for name in ("config.yaml", "command.txt", "agent.zip", "vecnormalize.npz", "eval.json", "state.json", "before_after.png",
                 "report.html", "eval_curve.csv"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").iterdir())
    assert list((run_dir / "checkpoints").glob("agent_*_steps.zip"))
    config = load_yaml(run_dir / "config.yaml")
    assert config["reward"] == "attiqa" and config["algo"] == "sac" and config["total_timesteps"] == 512
    assert "--total-timesteps 512" in (run_dir / "command.txt").read_text()
    ev = json.loads((run_dir / "eval.json").read_text())
    for key in ("default", "agent", "random_search", "gradient_ascent"):
        entry = ev[key]
        assert {"mean_score", "per_image", "reward_evals", "seconds"} <= set(entry)
        assert entry["mean_score"] == pytest.approx(np.mean([p["score"] for p in entry["per_image"]]))
    assert ev["random_search"]["reward_evals"] == ev["agent"]["reward_evals"]
    assert {"score_gain_ratio", "compute_ratio"} <= set(ev["amortisation"])
    # Gradient ascent keeps its best iterate, so it cannot end below where it starts: the entries'
    # bases (env.auto_denoise and env.auto_exposure are on in sac.yml: the camera's default,
    # brightened to its highlights, with the measured noise's denoising)
    assert ev["gradient_ascent"]["mean_score"] >= ev["base"]["mean_score"] - 1e-6
    based = ("exposure", "denoise_luma", "denoise_chroma")
    for d, b in zip(ev["default"]["per_image"], ev["base"]["per_image"]):
        assert all(d["params"][k] == 0.0 for k in based)  # the camera's own rendering
        assert b["params"] == {**d["params"], **{k: b["params"][k] for k in based}}
        assert b["params"]["exposure"] >= 0.0
    assert json.loads((run_dir / "state.json").read_text())["num_timesteps"] == 512


def test_periodic_eval_and_final_judges_in_tensorboard(smoke_run):
    """eval.every=256 over 512 steps: two held-out evaluations, then the final judges as hparams metrics."""
    import csv

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, proc = smoke_run
    ev = json.loads((run_dir / "eval.json").read_text())
    rows = list(csv.DictReader(open(run_dir / "eval_curve.csv")))
    assert [int(float(r["timesteps"])) for r in rows] == [256, 512]
    # the default params' score on the held-out views is the final evaluation's (the same views, the same model)
    assert float(rows[0]["default_score"]) == pytest.approx(ev["default"]["mean_score"], abs=1e-6)
    assert all(float(r["delta_e2000"]) > 0 and 0 <= float(r["clipped_fraction"]) <= 1 for r in rows)
    (events,) = {p.parent for p in (run_dir / "tb").rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    assert [(e.step, pytest.approx(e.value)) for e in acc.Scalars("eval/mean_score")] == \
        [(int(float(r["timesteps"])), float(r["mean_score"])) for r in rows]
    assert len(acc.Images("eval/before_after")) == 2 and acc.Images("eval/final_before_after")
    for policy in ("default", "agent", "gradient_ascent"):
        (last,) = acc.Scalars(f"judges/{policy}/delta_e2000")
        assert last.value == pytest.approx(ev[policy]["judges"]["mean"]["delta_e2000"], rel=1e-6)
    assert "_hparams_/experiment" in acc.PluginTagToContent("hparams")
    assert "report.html" in proc.stdout


def test_render_fallback_never_worse_than_default(smoke_run, tmp_path):
    """With inference.fallback=render, each held-out image's regularised score is >= its base's
    (where the agent starts: the trust region is on the offset from it)."""
    import shutil

    import isp

    src, _ = smoke_run
    run_dir = tmp_path / "render_fallback"
    shutil.copytree(src, run_dir)
    proc = run_script("--run-dir", run_dir, "--resume", "--threads", 1, "--hyperparams", "inference.fallback=render")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    config = load_yaml(run_dir / "config.yaml")
    assert config["inference"]["fallback"] == "render"
    env = config["env"]
    ev = json.loads((run_dir / "eval.json").read_text())
    assert ev["agent"]["reward_evals"] == 2
    lo, hi = 0.0, 1.0  # the starter's score range: normalised score == score
    def unit(row):
        return isp.params_to_unit(torch.tensor([[row["params"][n] for n in isp.PARAM_NAMES]]))[0].numpy()

    for d, a in zip(ev["base"]["per_image"], ev["agent"]["per_image"]):
        u = unit(a) - unit(d)
        phi_agent = (
            env["reward_scale"] * (a["score"] - lo) / (hi - lo)
            - env["clip_penalty"] * max(a["clipped_fraction"] - d["clipped_fraction"], 0.0)
            - env["param_penalty"] * float(np.mean(u**2))
        )
        assert phi_agent >= env["reward_scale"] * (d["score"] - lo) / (hi - lo) - 1e-4


def test_resume_continues_timestep_count(smoke_run, tmp_path):
    import shutil

    src, _ = smoke_run
    run_dir = tmp_path / "resumed"
    shutil.copytree(src, run_dir)
    proc = run_script("--run-dir", run_dir, "--resume", "--total-timesteps", 768, "--no-eval", "--threads", 1)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "resuming at timestep 512" in proc.stdout
    assert json.loads((run_dir / "state.json").read_text())["num_timesteps"] == 768
    assert len((run_dir / "command.txt").read_text().splitlines()) == 2
    # Settings that shape the environment or the agent cannot change on resume.
    proc = run_script("--run-dir", run_dir, "--resume", "--no-eval", "--hyperparams", "env.mode=incremental")
    assert proc.returncode == 2 and "env" in proc.stderr and "Traceback" not in proc.stderr


def test_existing_run_dir_is_refused(smoke_run, sample_root, tiny_attiqa_checkpoint):
    run_dir, _ = smoke_run
    proc = run_script("--reward", "attiqa", "--data", sample_root, "--attiqa-checkpoint", tiny_attiqa_checkpoint, "--run-dir", run_dir)
    assert proc.returncode == 2 and "--resume" in proc.stderr


def test_predictor_reproduces_eval_params(smoke_run, sample_root):
    """AgentParamsPredictor (contract) picks the same params as the agent in eval.json."""
    import isp
    from isp import fivek

    from rl.inference import AgentParamsPredictor

    run_dir, _ = smoke_run
    predictor = AgentParamsPredictor.load(run_dir)
    test = fivek.load_split(sample_root)["test"]
    # full-resolution RAWs, as render.py gives it: the predictor measures their noise at 1:1 for
    # the base of the detail controls (env.auto_denoise), as the training run did
    raws = [isp.read_raw(e.dng) for e in test]
    params = predictor.predict(raws)
    assert params.shape == (len(raws), isp.NUM_PARAMS)
    isp.validate_params(params)
    ev = json.loads((run_dir / "eval.json").read_text())
    centers = [e for e in ev["agent"]["per_image"] if "/" not in e["id"]]  # the predictor takes the center crop
    assert [e["id"] for e in centers] == [e.id for e in test]
    for k, entry in enumerate(centers):
        expected = [entry["params"][n] for n in isp.PARAM_NAMES]
        np.testing.assert_allclose(params[k].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_predictor_observes_a_window_of_a_raw_smaller_than_the_detail_window(smoke_run, sample_root, monkeypatch):
    """The smoke agent observes its detail window's scores; a tiny RAW gets the window that fits, not zeros."""
    import isp
    from envs import core as env_core
    from isp import fivek

    from rl.inference import AgentParamsPredictor

    run_dir, _ = smoke_run
    predictor = AgentParamsPredictor.load(run_dir)
    assert predictor.env.detail_observation and predictor.env.detail_crop + 2 * predictor.env.detail_halo == 32
    seen = []
    real_evaluate = env_core.TuningCore.evaluate

    def spy(self, idx, unit, keep_images=False):
        res = real_evaluate(self, idx, unit, keep_images)
        seen.append((self.images.details[0].mosaic.shape if self.images.details else None, res.detail_attributes))
        return res

    monkeypatch.setattr(env_core.TuningCore, "evaluate", spy)
    raw = fivek.cached_preview(fivek.load_split(sample_root)["test"][0].dng, 128)
    tiny = raw.replace(mosaic=np.ascontiguousarray(raw.mosaic[:28, :40]))  # 12 px inside the 8 px halo
    params = predictor.predict([tiny])
    isp.validate_params(params)
    assert seen and all(shape == (28, 28) for shape, _ in seen)
    assert all(np.abs(attrs).max() > 0 for _, attrs in seen)


def test_predictor_rejects_foreign_weights(smoke_run, tmp_path):
    import shutil
    import zipfile

    from rl.inference import AgentParamsPredictor

    run_dir, _ = smoke_run
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    with zipfile.ZipFile(bad / "agent.zip", "w") as zf:
        buf = __import__("io").BytesIO()
        torch.save({"weight": torch.zeros(3)}, buf)
        zf.writestr("policy.pth", buf.getvalue())
    with pytest.raises(ValueError, match="architecture"):
        AgentParamsPredictor.load(bad)


def test_bad_data_root_fails_cleanly(tmp_path, tiny_attiqa_checkpoint):
    proc = run_script("--reward", "analytic", "--data", tmp_path / "nothing", "--run-dir", tmp_path / "r", "--total-timesteps", 16)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "nothing" in proc.stderr


def test_ppo_short_run(sample_root, tmp_path):
    """A PPO run, with the agent's networks on a device of their own (``cpu:0`` here: the flag's plumbing; on a
    GPU machine ``--device cuda --policy-device cpu``)."""
    proc = run_script(
        "--reward", "analytic", "--algo", "ppo", "--total-timesteps", 256, "--data", sample_root, "--device", "cpu",
        "--policy-device", "cpu:0", "--run-dir", tmp_path / "ppo", "--threads", 1, *FAST, "algo_kwargs.n_steps=32",
        "algo_kwargs.batch_size=64",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "device cpu, agent on cpu:0)" in proc.stdout
    assert load_yaml(tmp_path / "ppo" / "config.yaml")["policy_device"] == "cpu:0"
    ev = json.loads((tmp_path / "ppo" / "eval.json").read_text())
    assert ev["agent"]["reward_evals"] == 2  # the observation's render + the fallback check


# -- configuration -------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ALGOS)
def test_hyperparams_have_default(algo):
    hp = load_hyperparams(algo, "attiqa")
    assert hp["env"]["mode"] in ("absolute", "incremental")
    assert isinstance(hp["algo_kwargs"]["learning_rate"], float)
    assert hp["total_timesteps"] > 0


def test_hyperparams_reject_duplicate_keys(tmp_path):
    f = tmp_path / "dup.yml"
    f.write_text("default:\n  n_envs: 2\n  n_envs: 3\n")
    with pytest.raises(yaml.YAMLError, match="duplicated"):
        load_hyperparams("sac", "attiqa", f)


def test_reward_entry_overrides_default(tmp_path):
    f = tmp_path / "hp.yml"
    f.write_text("default:\n  n_envs: 2\n  env: {crop: [8, 8], mode: absolute}\nanalytic:\n  env: {crop: [16, 16]}\n")
    hp = load_hyperparams("sac", "analytic", f)
    assert hp["env"] == {"crop": [16, 16], "mode": "absolute"} and hp["n_envs"] == 2
    assert load_hyperparams("sac", "attiqa", f)["env"]["crop"] == [8, 8]


def test_parse_overrides():
    assert parse_overrides(["a.b=3", "a.c=[1, 2]", "d=incremental"]) == {"a": {"b": 3, "c": [1, 2]}, "d": "incremental"}
    with pytest.raises(ValueError):
        parse_overrides(["novalue"])


def test_help_lists_flags():
    proc = run_script("--help", timeout=120)
    assert proc.returncode == 0
    for flag in ("--reward", "--algo", "--data", "--attiqa-checkpoint", "--total-timesteps", "--seed", "--device", "--policy-device", "--run-dir", "--resume", "--n-envs"):
        assert flag in proc.stdout


def test_mixed_raw_folder_trains_and_reports_bad_files(mixed_raw_folder, tmp_path):
    """--data takes any folder of RAW files: bad files are named once and skipped, the rest trains and is judged."""
    run_dir = tmp_path / "mixed"
    proc = run_script("--reward", "analytic", "--total-timesteps", 256, "--data", mixed_raw_folder["raws"],
                      "--experts", mixed_raw_folder["experts"], "--run-dir", run_dir, "--threads", 1, *FAST)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for bad in mixed_raw_folder["bad"]:
        assert proc.stderr.count(str(bad)) == 1, (bad, proc.stderr[-2000:])
    ev = json.loads((run_dir / "eval.json").read_text())
    rows = ev["agent"]["judges"]["per_image"]
    good = {str(p) for p in mixed_raw_folder["good"]}
    assert rows and all(r["clipped_fraction"] is not None for r in rows)
    n_train = int(proc.stdout.split("data: ")[-1].split(" training RAWs")[0])
    assert n_train + len(rows) == len(good)  # every good file is in train or test, no bad one in either
