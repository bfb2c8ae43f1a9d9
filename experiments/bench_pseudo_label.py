"""Pseudo-labelling throughput against a forward-only ceiling, measured in the same run.

    python experiments/bench_pseudo_label.py --teacher clip-b16 --n-images 192 --batch-size 32

* **pipeline**: :func:`attiqa.training.pseudo_label.label_shards` end to end on JPEG files - DataLoader
  workers decode, resize and crop; the teacher labels; shards are written atomically.
* **ceiling**: the same teacher object, the same batch size and the same images, already decoded
  and cropped in memory: only the teacher's forward passes are timed.

The ratio pipeline / ceiling says how much of the teacher's speed survives the data path
(target >= 0.8). Teachers: ``clip-b16`` is a randomly initialised CLIP with the architecture of
``openai/clip-vit-base-patch16`` (the real teacher's compute, no download needed); ``clip``
loads ``--clip-model``; ``analytic`` is the closed-form teacher (so cheap that decoding JPEGs
dominates on a CPU). The test images are random crops of the photographs that ship with
scikit-image and scikit-learn, saved as JPEG at ``--image-side`` pixels on the long edge.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_images(folder: Path, n: int, side: int, seed: int = 0) -> list[Path]:
    """``n`` JPEGs (long edge ``side``, 4:3) cut from the packaged photographs."""
    import skimage.data as skd
    from PIL import Image
    from sklearn.datasets import load_sample_image

    sources = [skd.astronaut(), skd.coffee(), skd.chelsea(), skd.rocket(), load_sample_image("china.jpg"),
               load_sample_image("flower.jpg")]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        src = Image.fromarray(np.asarray(sources[i % len(sources)])[..., :3])
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = src.crop((x, y, x + cw, y + ch)).resize((side, side * 3 // 4), Image.BICUBIC)
        p = folder / f"{i // 100:03d}" / f"img{i:05d}.jpg"
        p.parent.mkdir(exist_ok=True)
        img.save(p, quality=90)
        files.append(p)
    return files


def build_teacher(name: str, clip_model: str | None):
    if name == "analytic":
        from attiqa.teachers import AnalyticTeacher

        return AnalyticTeacher()
    from attiqa.teachers.clip import CLIPTeacher, random_clip_model

    if name == "clip-b16":
        model, tok = random_clip_model("vit-b/16", seed=0)
        return CLIPTeacher(model, tokenizer=tok)
    if name == "clip":
        return CLIPTeacher(clip_model or "openai/clip-vit-base-patch16")
    raise ValueError(f"unknown teacher {name!r}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--teacher", default="clip-b16", choices=("clip-b16", "clip", "analytic"))
    p.add_argument("--clip-model", default=None, help="hub id or folder for --teacher clip")
    p.add_argument("--images", default=None, help="label this folder instead of generated JPEGs")
    p.add_argument("--n-images", type=int, default=192, help="generated images (or the first N of --images)")
    p.add_argument("--image-side", type=int, default=512, help="long edge of the generated JPEGs")
    p.add_argument("--size", type=int, default=224, help="teacher input side (resize + centre crop)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="DataLoader decoding workers")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads of the teacher "
                                                              "(default: cores minus workers, at least 1)")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true", help="fp16 autocast on CUDA (both measurements)")
    p.add_argument("--repeats", type=int, default=4,
                   help="measurements of each, interleaved with alternating order; the best of each is reported")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    from attiqa.data.image_folder import ImageFolderDataset, list_images
    from attiqa.training.pseudo_label import label_shards

    cores = os.cpu_count() or 1
    threads = args.threads or max(1, cores - args.workers)
    torch.set_num_threads(threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    tmp = Path(tempfile.mkdtemp(prefix="bench_pseudo_label_"))
    try:
        if args.images:
            files = list_images(args.images)[:args.n_images]
        else:
            files = make_images(tmp / "images", args.n_images, args.image_side)
        teacher = build_teacher(args.teacher, args.clip_model).to(device).eval()
        use_amp = args.amp and device.type == "cuda"

        # ceiling: same teacher, same batches, images already decoded
        ds = ImageFolderDataset(files, args.size)
        decoded = torch.stack([ds.load(i) for i in range(len(files))])
        batches = [decoded[i:i + args.batch_size] for i in range(0, len(files), args.batch_size)]

        def forward_only() -> float:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.inference_mode():
                for b in batches:
                    with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                        out = teacher(b.to(device, non_blocking=True))
                    out.float().cpu()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return len(files) / (time.perf_counter() - t0)

        def pipeline(k: int) -> float:
            work = tmp / f"shards{k}"
            t0 = time.perf_counter()
            stats = label_shards(files, teacher, work, shard_size=args.shard_size, batch_size=args.batch_size,
                                 num_workers=args.workers, size=args.size, device=device, amp=args.amp,
                                 progress=False)
            dt = time.perf_counter() - t0
            assert stats["images"] == len(files), stats
            return len(files) / dt

        with torch.inference_mode():  # warm-up (allocator, kernels)
            teacher(batches[0].to(device))
        ceiling, piped = [], []
        for k in range(args.repeats):  # interleaved, alternating order, so drifting load hits both alike
            if k % 2 == 0:
                ceiling.append(forward_only())
                piped.append(pipeline(k))
            else:
                piped.append(pipeline(k))
                ceiling.append(forward_only())
        res = {"teacher": args.teacher, "device": str(device), "cpu_cores": cores, "torch_threads": threads,
               "workers": args.workers, "n_images": len(files), "batch_size": args.batch_size, "size": args.size,
               "image_side": args.image_side if not args.images else None,
               "pipeline_images_per_s": max(piped), "ceiling_images_per_s": max(ceiling),
               "pipeline_runs": piped, "ceiling_runs": ceiling, "torch": torch.__version__,
               "machine": platform.processor() or platform.machine()}
        res["ratio"] = res["pipeline_images_per_s"] / res["ceiling_images_per_s"]
        res["paired_ratios"] = [a / b for a, b in zip(piped, ceiling)]
        res["median_paired_ratio"] = float(np.median(res["paired_ratios"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"teacher {res['teacher']} on {res['device']} ({cores} cores, {threads} torch threads, "
          f"{args.workers} workers), {res['n_images']} images, batch {args.batch_size}, input {args.size}px")
    print(f"  pipeline (decode + label + shards): {res['pipeline_images_per_s']:8.2f} images/s")
    print(f"  forward-only ceiling:               {res['ceiling_images_per_s']:8.2f} images/s")
    print(f"  ratio: {res['ratio']:.3f} (best pipeline / best ceiling; target >= 0.8); median of the "
          f"{len(piped)} back-to-back pairs: {res['median_paired_ratio']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
