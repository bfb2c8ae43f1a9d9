"""Environment throughput: steps/s of the batched VecEnv vs the reward model's forward alone.

    python experiments/bench_env.py                       # sample set + starter ATTIQA, 16 envs
    python experiments/bench_env.py --reward analytic --n-envs 8 32 --steps 50

For each ``n_envs`` it steps ``IspTuningVecEnv`` with random actions (auto-resets included),
records the (image, params) batches it rendered, then times the reward model's forward alone
on those same rendered batches, and the ISP render alone. Overhead = env time / reward-forward
time - 1 (target <= 25 %). Both are measured ``--repeats`` times, alternating, and the medians
are reported, in wall-clock seconds and in this process's CPU seconds (``time.process_time``;
with one thread the CPU clock is insensitive to other jobs sharing the machine).
Prints one JSON line per setting; ``--out FILE`` also writes them as a JSON list.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _Clock:
    """Context manager measuring wall-clock and process CPU seconds."""

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c
        return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reward", default="attiqa", help="reward registry name")
    p.add_argument("--data", default=None, help="MIT-Adobe-5K root (default: the embedded sample set)")
    p.add_argument("--attiqa-checkpoint", default=None, help="ATTIQA checkpoint (default: the starter model)")
    p.add_argument("--n-envs", type=int, nargs="+", default=[16], help="vectorised env sizes to measure")
    p.add_argument("--steps", type=int, default=30, help="timed VecEnv steps per setting and repeat")
    p.add_argument("--repeats", type=int, default=3, help="measurements per setting (medians are reported)")
    p.add_argument("--crop", type=int, nargs=2, default=[128, 128], help="mosaic crop (H W)")
    p.add_argument("--preview-side", type=int, default=256, help="preview longest side")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--out", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from envs.core import TuningCore, load_image_set
    from envs.rewards import create_reward
    from envs.vec_env import IspTuningVecEnv
    from rl.common import dump_json

    torch.set_num_threads(args.threads)
    if args.data is None:
        from isp.sample_data import ensure_sample_set

        args.data = ensure_sample_set()
    images = load_image_set(args.data, "train", preview_side=args.preview_side, crop=tuple(args.crop))
    reward = create_reward(args.reward, args.attiqa_checkpoint, args.device)
    rows = []
    for n in args.n_envs:
        core = TuningCore(images, reward, thumb_size=8, device=args.device)
        venv = IspTuningVecEnv(n, core=core)
        venv.seed(0)
        venv.reset()
        core.neutral(range(len(images)))  # fill the neutral cache before timing, as in a long run
        rng = np.random.default_rng(0)
        batches: list = []
        original = core.evaluate

        def recording(idx, unit, keep_images=False):
            batches.append((list(idx), np.array(unit, copy=True)))
            return original(idx, unit, keep_images)

        venv.step(rng.uniform(-1, 1, (n,) + venv.action_space.shape).astype(np.float32))  # warm-up
        env_t, reward_t, isp_t = [], [], []
        n_images = 0
        for _ in range(args.repeats):
            batches = []
            core.evaluate = recording
            actions = [rng.uniform(-1, 1, (n,) + venv.action_space.shape).astype(np.float32) for _ in range(args.steps)]
            with _Clock() as c:
                for a in actions:
                    venv.step(a)
            env_t.append(c)
            core.evaluate = original
            n_images = sum(len(b[0]) for b in batches)
            # The same batches, rendered beforehand, through the reward model alone; then the ISP alone.
            with torch.no_grad():
                rendered = [core.render(idx, torch.as_tensor(u, device=core.device)) for idx, u in batches]
                reward(rendered[0])
                with _Clock() as c:
                    for imgs in rendered:
                        reward(imgs)
                reward_t.append(c)
                with _Clock() as c:
                    for idx, u in batches:
                        core.render(idx, torch.as_tensor(u, device=core.device))
                isp_t.append(c)
        med = lambda xs, k: float(np.median([getattr(x, k) for x in xs]))  # noqa: E731
        row = {
            "n_envs": n,
            "steps": args.steps,
            "repeats": args.repeats,
            "crop": list(args.crop),
            "env_steps_per_s": n * args.steps / med(env_t, "wall"),
            "reward_forward_images_per_s": n_images / med(reward_t, "wall"),
            "isp_render_images_per_s": n_images / med(isp_t, "wall"),
            "env_overhead": med(env_t, "wall") / med(reward_t, "wall") - 1.0,
            "env_overhead_cpu_clock": med(env_t, "cpu") / med(reward_t, "cpu") - 1.0,
            "isp_share_of_reward_cpu": med(isp_t, "cpu") / med(reward_t, "cpu"),
            "threads": args.threads,
            "reward": args.reward,
        }
        rows.append(row)
        print(json.dumps(row))
    if args.out:
        dump_json(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
