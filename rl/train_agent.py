"""Train an agent that sets ISP parameters, rewarded by an image-quality model, and evaluate it.

    python rl/train_agent.py --reward attiqa            # embedded default: sample set + starter ATTIQA
    python rl/train_agent.py --reward attiqa --data /data/fivek --attiqa-checkpoint koniq.pt
    python rl/train_agent.py --run-dir runs/X --resume  # continue a stopped run
    python rl/train_agent.py --run-dir runs/X --resume --hyperparams inference.fallback=render  # re-evaluate

The run folder gets config.yaml (resolved), command.txt, agent.zip, vecnormalize.npz,
TensorBoard logs (tb/), periodic checkpoints (checkpoints/), eval.json, training_curve.png
and before_after.png.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__main__" and "torch" not in sys.modules:
    # torch's CPU allocator reads this once, at start-up: huge pages for image-sized buffers (isp.cpu)
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from rl.common import ALGOS, COMMAND_FILE, CONFIG_FILE, DEMOS_FILE, EVAL_FILE  # noqa: E402

# What --resume may change in a run's config (none of it alters the environment or the agent).
RESUME_OVERRIDABLE = {"eval", "inference", "total_timesteps", "checkpoint_every", "curve_every"}


def parse_args(argv=None) -> argparse.Namespace:
    from envs.rewards import reward_names

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--reward", default="attiqa", choices=reward_names(), help="reward model from the registry")
    p.add_argument("--algo", default="sac", choices=ALGOS, help="Stable-Baselines3 algorithm")
    p.add_argument("--data", default=None, help="an MIT-Adobe-5K root or any folder of camera RAW files (default: the embedded "
                   "sample set, built on first use)")
    p.add_argument("--experts", default=None, help="expert renderings of a RAW folder given by --data, paired by file name "
                   "(16-bit = ProPhoto TIFF, 8-bit = sRGB, or as their ICC profile says); the judges compare with them")
    p.add_argument("--attiqa-checkpoint", default=None, help="ATTIQA checkpoint: a .pt file, a config.json + model.safetensors folder or a Hub id (default: the starter model, built on first use)")
    p.add_argument("--total-timesteps", type=int, default=None, help="environment steps (default: from the hyperparameter file)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the agent, the envs and random search")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--policy-device", default=None,
                   help="device of the agent's networks and their updates (default: --device); e.g. cpu beside "
                   "--device cuda keeps the small MLPs, whose updates are launch-bound on a GPU, on the CPU while the "
                   "ISP and the reward run on the GPU")
    p.add_argument("--run-dir", default=None, help="output folder (default: runs/<timestamp>-<algo>-<reward>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir where it stopped")
    p.add_argument("--n-envs", type=int, default=None, help="vectorised environments (default: from the hyperparameter file)")
    p.add_argument("--hyperparams-file", default=None, help="YAML file to use instead of rl/hyperparams/<algo>.yml")
    p.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, e.g. algo_kwargs.batch_size=64 env.mode=incremental")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    return p.parse_args(argv)


def resolve_config(args) -> dict:
    """The full configuration of a new run: hyperparameter file + overrides + command-line flags."""
    from rl.common import load_hyperparams, merge_config, parse_overrides

    if args.hyperparams_file:
        config = _read(Path(args.hyperparams_file), lambda f: load_hyperparams(args.algo, args.reward, f))
    else:
        config = load_hyperparams(args.algo, args.reward)
    config = merge_config(config, _overrides(args.hyperparams))
    if args.total_timesteps is not None:
        config["total_timesteps"] = args.total_timesteps
    if args.n_envs is not None:
        config["n_envs"] = args.n_envs
    if args.data is None:
        from isp.sample_data import ensure_sample_set

        print("data: no --data given, using the embedded sample set (synthetic RAWs, not MIT-Adobe-5K)")
        args.data = str(ensure_sample_set())
    checkpoint = args.attiqa_checkpoint
    if args.reward == "attiqa" and checkpoint is None:
        print("reward: no --attiqa-checkpoint given, using the STARTER ATTIQA model (not the paper's weights)")
    config.update(
        algo=args.algo,
        reward=args.reward,
        data=str(Path(args.data).resolve()),
        experts=str(Path(args.experts).resolve()) if args.experts else None,
        attiqa_checkpoint=(str(Path(checkpoint).resolve()) if Path(checkpoint).exists() else checkpoint) if checkpoint else None,  # or a Hub id
        seed=args.seed,
        device=args.device,
        policy_device=args.policy_device,
    )
    return config


def main(argv=None) -> int:
    """Runs :func:`run`; a bad input (data, checkpoint, config, agent) ends in one ``error:`` line
    naming the file and the cause, with the project's exit code (``rlisp_common.exit_codes``)."""
    from rlisp_common.exit_codes import EXIT_USAGE, report_error

    try:
        return run(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - one line and its code; a bug (EXIT_INTERNAL) keeps its traceback
        return report_error(e)


class UsageError(Exception):
    """A bad flag or override (exit code 2)."""


def _overrides(items):
    from rl.common import parse_overrides

    try:
        return parse_overrides(items)
    except Exception as exc:  # noqa: BLE001 - a malformed KEY=VALUE is a usage error
        raise UsageError(f"--hyperparams: {' '.join(str(exc).split())}") from None


def _read(path, reader):
    """``reader(path)``, its failure reported as a bad input of ``path``."""
    from rlisp_common.exit_codes import InputError

    try:
        return reader(path)
    except Exception as exc:  # noqa: BLE001 - wrapped with the file's name, bugs re-raised as they are
        raise InputError.wrap(exc, path) from None


def run(argv=None) -> int:
    """The whole job: configure, build envs, train, evaluate. See the module docstring."""
    import torch
    import yaml

    from isp.cpu import tune_allocator

    tune_allocator()  # training, rendering and the starter build reuse freed memory (no page faults)

    from envs.config import EnvConfig
    from envs.core import TuningCore, load_image_set
    from envs.rewards import create_reward
    from envs.vec_env import IspTuningVecEnv
    from rl.common import (
        atomic_write_text, dump_json, load_yaml, merge_config, parse_overrides, resolve_device,
    )
    from rl.evaluate import evaluate_policies, format_judges, judge_policies, save_before_after_grid, save_training_curve
    from rl.inference import AgentParamsPredictor
    from rl.run_state import find_checkpoint, remove_stale_temp
    from rl.training import (
        CurveCallback,
        ProgressCallback,
        add_demonstrations,
        RunStateCallback,
        TrainingStopped,
        build_model,
        normalizer_of,
        restore_run_state,
        save_run_state,
        wrap_env,
    )

    from rlisp_common.exit_codes import EXIT_INTERRUPTED, InputError, describe

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    # 1. Configuration and run folder.
    if args.resume:
        if args.run_dir is None or not (Path(args.run_dir) / CONFIG_FILE).is_file():
            print(f"error: --resume needs --run-dir pointing at an existing run (with {CONFIG_FILE})", file=sys.stderr)
            return 2
        run_dir = Path(args.run_dir)
        config = _read(run_dir / CONFIG_FILE, load_yaml)
        if not isinstance(config, dict) or "algo" not in config:
            raise InputError("not a run configuration (no 'algo' key)", path=run_dir / CONFIG_FILE)
        if args.total_timesteps is not None:
            config["total_timesteps"] = args.total_timesteps
        overrides = _overrides(args.hyperparams)
        frozen = sorted(set(overrides) - RESUME_OVERRIDABLE)
        if frozen:
            raise UsageError(f"--resume can only change {', '.join(sorted(RESUME_OVERRIDABLE))}, not {', '.join(frozen)}")
        config = merge_config(config, overrides)
    else:
        config = resolve_config(args)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.run_dir or f"runs/{stamp}-{args.algo}-{args.reward}")
        if (run_dir / CONFIG_FILE).exists():
            print(f"error: {run_dir} already holds a run; use --resume (continues from its newest complete checkpoint, "
                  "or starts it over when it has none) or another --run-dir", file=sys.stderr)
            return 2
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temp(run_dir):
        print(f"removed {stale} (left by an earlier process that was killed)")
    checkpoint = None
    if args.resume:
        checkpoint, notes = find_checkpoint(run_dir)
        for note in notes:
            print(f"skipping incomplete checkpoint {note}")
        if checkpoint is None:
            print(f"no complete checkpoint in {run_dir}: starting the run over from timestep 0 with its saved config")
    device = resolve_device(config["device"])
    policy_device = resolve_device(config.get("policy_device") or config["device"])
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    with open(run_dir / COMMAND_FILE, "a", encoding="utf-8") as f:
        f.write(command + "\n")
    print(f"run folder: {run_dir}  (algo {config['algo']}, reward {config['reward']}, device {device}"
          + (f", agent on {policy_device}" if policy_device != device else "") + ")")

    # 2. Reward model and environments (train split for training, test split for evaluation).
    # The registry builds the reward once (for attiqa without a checkpoint: the starter, built on first use).
    reward = create_reward(config["reward"], config.get("attiqa_checkpoint"), device)
    config["attiqa_checkpoint"] = reward.checkpoint
    print(f"reward: {reward.description}; range {reward.score_range}, lower_better={reward.lower_better}")
    env_config = EnvConfig.from_dict(config["env"])
    config["env"] = env_config.to_dict()
    ev = config.get("eval", {})
    data_kwargs = dict(expert_dir=config.get("experts"))
    train_images = load_image_set(config["data"], "train", **env_config.image_kwargs(), **data_kwargs, augment_seed=int(config["seed"]))
    test_images = load_image_set(config["data"], "test", **{**env_config.image_kwargs(), "crop_mode": ev.get("crop_mode", "center"),
                                                            "flip": False}, **data_kwargs)
    n_train_raws = len({i.split("/")[0] for i in train_images.ids})
    n_test_raws = len({i.split("/")[0] for i in test_images.ids})
    print(f"data: {n_train_raws} training RAWs ({len(train_images)} views) and {n_test_raws} held-out RAWs "
          f"({len(test_images)} views, {ev.get('crop_mode', 'center')}) from {config['data']}")
    core = TuningCore(train_images, reward, **env_config.core_kwargs(), device=device)
    venv = IspTuningVecEnv(int(config["n_envs"]), env_config, core=core)
    venv = wrap_env(venv, bool(config.get("normalize", True)))
    config["obs_dim"] = int(venv.observation_space.shape[0])
    config["act_dim"] = int(venv.action_space.shape[0])
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))

    # 3. Agent (restored when resuming) and training.
    model = build_model(config["algo"], venv, config, int(config["seed"]), policy_device, str(run_dir / "tb"))
    curve: list[dict] = []
    done_steps, pending = 0, None
    if checkpoint is not None:
        done_steps, curve, pending = _read(checkpoint, lambda c: restore_run_state(model, venv, c))
        print(f"resuming at timestep {done_steps} from {checkpoint.path}")
    elif int(config.get("demos", {}).get("steps", 0)) > 0:
        demos = config["demos"]
        demo_stats = add_demonstrations(model, core, env_config, steps=int(demos["steps"]), lr=float(demos.get("lr", 0.05)),
                                        seed=int(config["seed"]), center_only=bool(demos.get("center_only", True)))
        dump_json(run_dir / DEMOS_FILE, demo_stats)
        print(f"demonstrations: {demo_stats['transitions']} gradient-ascent transitions in the replay buffer "
              f"({demo_stats['reward_evals']} reward evaluations, {demo_stats['seconds']:.0f} s)")
    total = int(config["total_timesteps"])
    curve_cb = CurveCallback(curve, every=int(config.get("curve_every", 512)), pending=pending)
    state_cb = RunStateCallback(run_dir, curve_cb, every=int(config.get("checkpoint_every", 4096)))
    callbacks = [curve_cb, state_cb, ProgressCallback(total, done_steps)]
    if not args.no_eval and int(ev.get("every", 4096)) > 0:  # held-out evaluation during training (rl.periodic_eval)
        from rl.periodic_eval import HeldOutEvalCallback

        callbacks.append(HeldOutEvalCallback(TuningCore(test_images, reward, **env_config.core_kwargs(), device=device), config, reward,
                                             int(ev.get("every", 4096)), run_dir, device, de_side=int(ev.get("de_side", 128))))
    t0 = time.perf_counter()

    def on_sigint(signum, frame):  # first Ctrl-C: stop at the next consistent point; second: at once
        state_cb.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nCtrl-C: saving a checkpoint at the end of this step (Ctrl-C again stops without saving)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        if total > done_steps:
            model.learn(total - done_steps, callback=callbacks, reset_num_timesteps=checkpoint is None, tb_log_name="tb",
                        progress_bar=False)
    except TrainingStopped as stop:
        where = stop.checkpoint.path if stop.checkpoint else "nothing new saved"
        print(f"\ninterrupted at timestep {stop.step} ({where}); continue with --run-dir {run_dir} --resume")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        last, _ = find_checkpoint(run_dir)
        print(f"\ninterrupted at timestep {model.num_timesteps} without saving; --run-dir {run_dir} --resume continues "
              f"from {last.path if last else 'the start'}")
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
    train_seconds = time.perf_counter() - t0
    save_run_state(model, venv, run_dir, curve, curve_pending=curve_cb.pending_state())
    print(f"trained to timestep {model.num_timesteps} in {train_seconds:.0f} s; agent saved to {run_dir}")
    if curve:
        save_training_curve(run_dir / "training_curve.png", [c["timesteps"] for c in curve], [c["mean_return"] for c in curve], [c["mean_score"] for c in curve])

    # 4. Held-out evaluation: default params, agent, random search, gradient ascent; then the judges
    #    on the whole held-out RAWs at full resolution.
    if args.no_eval:
        return 0
    test_core = TuningCore(test_images, reward, **env_config.core_kwargs(), device=device)
    model.policy.set_training_mode(False)
    predictor = AgentParamsPredictor(model.policy, config, normalizer_of(venv), reward, device)
    results, units = evaluate_policies(
        test_core,
        predictor,
        ga_steps=int(ev.get("ga_steps", 60)),
        ga_lr=float(ev.get("ga_lr", 0.05)),
        **env_config.penalties.kwargs(),
        seed=int(config["seed"]),
    )
    centers = test_images.center_indices()
    max_side = ev.get("judge_max_side", 2048)
    thumbs = judge_policies(results, [test_images.sources[i] for i in centers], {p: u[centers] for p, u in units.items()},
                            reward, device=device, max_side=None if max_side is None else int(max_side))
    results["meta"] = {
        "reward": config["reward"],
        "reward_description": reward.description,
        "starter_reward": bool(reward.is_starter),
        "data": config["data"],
        "n_test_images": len(test_images),
        "timesteps": int(model.num_timesteps),
        "train_seconds_this_call": train_seconds,
    }
    if (run_dir / DEMOS_FILE).is_file():
        import json

        results["meta"]["demonstrations"] = json.loads((run_dir / DEMOS_FILE).read_text())
    dump_json(run_dir / EVAL_FILE, results)
    save_before_after_grid(run_dir / "before_after.png", thumbs, results)
    d, a = results["default"]["mean_score"], results["agent"]["mean_score"]
    am = results["amortisation"]
    print(f"held-out mean score: default {d:.4f}, agent {a:.4f} ({'+' if a >= d else ''}{a - d:.4f}), "
          f"random search {results['random_search']['mean_score']:.4f}, gradient ascent {results['gradient_ascent']['mean_score']:.4f}")
    ratio = am["score_gain_ratio"]
    print(f"amortisation: gain ratio {ratio if ratio is None else round(ratio, 3)}, compute ratio {am['compute_ratio']:.0f}x")
    print(f"judges on {len(centers)} whole held-out images (longer side <= {max_side}; reward = the env's view, "
          f"reward_full = the whole image):")
    print(format_judges(results))
    print(f"wrote {run_dir / EVAL_FILE} and {run_dir / 'before_after.png'}")
    from rl.periodic_eval import log_final_to_tensorboard
    from rl.report import write_report

    log_final_to_tensorboard(model, results, config, run_dir / "before_after.png")
    print(f"wrote {write_report(run_dir)}  (python -m rl.report {run_dir} rewrites it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
