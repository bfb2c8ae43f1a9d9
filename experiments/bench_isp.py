"""Benchmark: our differentiable ISP against LibRaw (rawpy) on one full-resolution DNG.

Usage::

    python experiments/bench_isp.py [--dng FILE.dng] [--threads 1] [--repeats 3] [--device cpu]

Without ``--dng`` a 6-MP-class DNG (3008 x 2000, Canon EOS 5D Mark II matrix, RGGB, 14-bit) is
synthesised from a packaged photograph with :mod:`isp.sample_data` into a temporary folder.
In the same run, on the same file and the same number of threads, it times

* ``rawpy.postprocess`` with AHD and with bilinear (``LINEAR``) demosaicing, 16-bit linear
  output with camera white balance and sRGB primaries (decoding excluded: the file is opened
  and unpacked once),
* our pipeline forward, from the decoded :class:`isp.RawImage` (black level, normalisation and
  all 12 controls active at non-neutral values) to the ``(1, 3, H, W)`` sRGB tensor, under
  ``torch.inference_mode``,
* our pipeline forward + backward: the gradient w.r.t. the ``(1, P)`` parameter vector of the
  image's mean (its upstream gradient ``dL/dimage`` is made once, outside the timing: the time
  is the ISP's, not the loss's),
* for reference, forward with neutral parameters (stages at their identity are skipped) and
  :func:`isp.read_raw` (decoding into a RawImage).

The measurements are interleaved: each round calls every one of them once, ``--repeats`` rounds
after a warm-up round. Each time is the median over rounds, each ratio the median of the rounds'
ratios (both sides of a ratio ran moments apart, under the same machine load). The allocators
are tuned first, for both libraries (:func:`isp.cpu.tune_allocator` and torch's
``THP_MEM_ALLOC_ENABLE=1``; ``--no-tune-allocator`` skips both). It prints a table and the
ratios; the last line is ``isp_forward_vs_rawpy_ahd=<ratio>`` (target <= 1.0; forward +
backward target <= 3.0 x AHD). ``--json`` writes the numbers to a file (atomically).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dng", type=Path, default=None, help="RAW file to time (default: a synthetic 6-MP DNG)")
    p.add_argument("--width", type=int, default=3008, help="width of the synthetic DNG (default 3008)")
    p.add_argument("--height", type=int, default=2000, help="height of the synthetic DNG (default 2000)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for both LibRaw (OpenMP) and torch (default 1; 0 = library defaults)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement after one warm-up (default 3)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time (default); cpu: this process's CPU time, steadier on a shared "
                        "machine (equal to wall time with one thread on an idle one; use it with CPU runs only)")
    p.add_argument("--device", default="cpu", help="device of our pipeline: cpu, cuda or auto (default cpu)")
    p.add_argument("--no-tune-allocator", dest="tune_allocator", action="store_false",
                   help="leave the allocators at their defaults (by default isp.cpu.tune_allocator() keeps "
                        "freed memory in the process and torch's CPU allocator uses transparent huge pages, "
                        "THP_MEM_ALLOC_ENABLE=1, for both libraries, as the CLIs do)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    return p


def timeit(fn, repeats: int, sync=None, clock=time.perf_counter) -> float:
    """Median time of ``fn()`` over ``repeats`` calls on ``clock``, after one warm-up call."""
    return statistics.median(timed_rounds({"fn": fn}, repeats, sync, clock)["fn"])


def timed_rounds(calls: dict, repeats: int, sync=None, clock=time.perf_counter) -> dict[str, list[float]]:
    """Times every call once per round, ``repeats`` rounds after one warm-up round.

    Interleaving the measurements (rather than timing each one ``repeats`` times in a row)
    exposes all of them to the same machine load, so per-round ratios are steadier.
    """
    times: dict[str, list[float]] = {k: [] for k in calls}
    for i in range(repeats + 1):
        for name, fn in calls.items():
            if sync:
                sync()
            t = clock()
            fn()
            if sync:
                sync()
            if i:
                times[name].append(clock() - t)
    return times


def synthetic_dng(folder: Path, width: int, height: int) -> Path:
    """A full-resolution camera-like DNG from a packaged photograph (upscaled, then unprocessed)."""
    import numpy as np
    from PIL import Image

    from isp.sample_data import CAMERAS, load_source, unprocess, write_dng

    img, _ = load_source(0)
    big = np.asarray(Image.fromarray(img).resize((width // 2 * 2, height // 2 * 2), Image.Resampling.BICUBIC))
    camera = CAMERAS[0]
    mosaic, info = unprocess(big, camera, np.random.default_rng(0), cfa="RGGB")
    return write_dng(folder / "bench-6mp.dng", mosaic, camera, info)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or args.threads < 0 or args.width < 16 or args.height < 16:
        print("error: --repeats >= 1, --threads >= 0, --width/--height >= 16", file=sys.stderr)
        return 2
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # LibRaw's OpenMP; set before rawpy loads
    huge_pages = False
    if args.tune_allocator and "torch" not in sys.modules:  # read by torch's CPU allocator at start-up
        huge_pages = os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1") == "1"
    import numpy as np
    import rawpy
    import torch

    import isp
    from isp.cpu import tune_allocator

    tuned = tune_allocator() if args.tune_allocator else False
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {device}: CUDA is not available", file=sys.stderr)
        return 2
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    if args.clock == "cpu" and device != "cpu":
        print("error: --clock cpu measures CPU work only; use --clock wall with a GPU", file=sys.stderr)
        return 2
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    with tempfile.TemporaryDirectory() as tmp:
        if args.dng is None:
            print(f"synthesising a {args.width}x{args.height} DNG ...", file=sys.stderr)
            path = synthetic_dng(Path(tmp), args.width, args.height)
        else:
            path = args.dng
        try:
            raw = isp.read_raw(path)
        except isp.RawError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        res: dict[str, float] = {}
        res["read_raw"] = timeit(lambda: isp.read_raw(path), args.repeats, clock=clock)

        pipeline = isp.ISP().to(device)
        # A typical edit: every control away from neutral, so that every stage runs.
        unit = torch.tensor([0.2, 0.1, -0.1, -0.3, 0.3, 0.1, 0.2, 0.15, 0.2, 0.3, 0.4, 0.25])
        params = isp.unit_to_params(unit[: isp.NUM_PARAMS]).unsqueeze(0).to(device)
        neutral = isp.neutral_params(1, device=device)

        def forward(p):
            with torch.inference_mode():
                return pipeline(isp.RawBatch.from_raws([raw], device=device), p)

        # The upstream gradient dL/dimage of a downstream loss (here the mean's) is made once:
        # the timing is of the ISP's forward and backward, not of the loss.
        with torch.inference_mode():
            upstream = torch.full_like(forward(params), 1.0 / (3 * raw.shape[0] * raw.shape[1]))
        upstream = upstream.clone()  # a normal tensor (inference tensors cannot enter autograd)

        def forward_backward():
            p = params.clone().requires_grad_(True)
            out = pipeline(isp.RawBatch.from_raws([raw], device=device), p)
            out.backward(upstream)
            return p.grad

        with rawpy.imread(str(path)) as rp:
            rp.raw_image_visible  # unpack once; postprocess then only develops
            common = dict(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True,
                          output_color=rawpy.ColorSpace.sRGB, user_flip=0)
            calls = {
                "rawpy_ahd": lambda: rp.postprocess(demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD, **common),
                "rawpy_linear": lambda: rp.postprocess(demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR, **common),
                "isp_forward": lambda: forward(params),
                "isp_forward_neutral": lambda: forward(neutral),
                "isp_forward_backward": forward_backward,
            }
            rounds = timed_rounds(calls, args.repeats, sync, clock)
        res.update({k: statistics.median(v) for k, v in rounds.items()})
        grad = forward_backward()
        if not torch.isfinite(grad).all():
            print("error: non-finite gradient", file=sys.stderr)
            return 1

    h, w = raw.shape
    threads = args.threads or torch.get_num_threads()
    print(f"file: {path if args.dng else 'synthetic'} {w}x{h} ({w * h / 1e6:.1f} MP), device {device}, "
          f"threads {threads}, {args.clock} clock, median of {args.repeats}, "
          f"allocator {'tuned (isp.cpu.tune_allocator)' if tuned else 'default'}, "
          f"huge pages {'on (THP_MEM_ALLOC_ENABLE=1)' if huge_pages else 'off'}")
    print(f"{'measurement':<28}{'seconds':>10}")
    for k, v in res.items():
        print(f"{k:<28}{v:>10.3f}")
    pairs = (("isp_forward_neutral", "rawpy_ahd"), ("isp_forward", "rawpy_linear"),
             ("isp_forward_backward", "rawpy_ahd"), ("isp_forward", "rawpy_ahd"))
    # each ratio is the median over rounds of that round's ratio: both sides of a round ran
    # moments apart, so load on a shared machine affects them alike
    ratios = {f"{a}_vs_{b}": statistics.median(x / y for x, y in zip(rounds[a], rounds[b])) for a, b in pairs}
    if args.json:
        out = {"file": str(path) if args.dng else "synthetic", "width": w, "height": h, "device": device,
               "threads": threads, "clock": args.clock, "repeats": args.repeats, "allocator_tuned": tuned, "huge_pages": huge_pages, "seconds": res, "ratios": ratios,
               "torch": torch.__version__, "libraw": ".".join(map(str, rawpy.libraw_version))}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmpf = args.json.with_name(f".{args.json.name}.{os.getpid()}.tmp")
        tmpf.write_text(json.dumps(out, indent=2))
        os.replace(tmpf, args.json)
    for k, v in ratios.items():  # the forward-vs-AHD ratio is the last line
        print(f"{k}={v:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
