"""Per-stage profile of isp.ISP on the benchmark's synthetic 6-MP DNG, one thread, process time.

Usage::

    python experiments/profile_isp.py [menon|mhc|bilinear]

Forward (under ``torch.inference_mode``): timers around each stage function the pipeline calls,
summed over tiles, mean of 5 calls ("rest" = RawBatch, tiling, output copies).
Forward + backward: the same timers in grad mode, then ``torch.profiler``'s time per autograd
backward node (inclusive, with the profiler's own overhead: compare nodes with each other, not
with the totals). Timings on a shared machine are noisy; ratios come from ``bench_isp.py``.
"""
import os, sys, time, collections, tempfile
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
import torch
torch.set_num_threads(1)
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import isp, isp.pipeline as P
from isp.cpu import tune_allocator
tune_allocator()
from experiments.bench_isp import synthetic_dng
demo = sys.argv[1] if len(sys.argv) > 1 else "menon"
tmp = tempfile.mkdtemp()
raw = isp.read_raw(synthetic_dng(Path(tmp), 3008, 2000))
unit = torch.tensor([0.2, 0.1, -0.1, -0.3, 0.3, 0.1, 0.2, 0.15, 0.2, 0.3, 0.4, 0.25])
params = isp.unit_to_params(unit).unsqueeze(0)
pipe = isp.ISP(demosaic=demo)
acc = collections.defaultdict(float)
import isp.stages.native as NT
names = ["white_balance_demosaic", "apply_color_matrix", "denoise", "exposure_tone", "saturate_fused", "encode_tone", "sharpen"]
orig = {n: getattr(P, n) for n in names}
orig["tone_chain"] = NT.tone_chain
def wrap(n):
    f = orig[n]
    def g(*a, **k):
        t = time.process_time(); r = f(*a, **k); acc[n] += time.process_time() - t; return r
    return g
def fwd():
    with torch.inference_mode():
        return pipe(isp.RawBatch.from_raws([raw]), params)
up = None
with torch.inference_mode():
    up = torch.full_like(fwd(), 1.0 / (3 * 6e6))
up = up.clone()
def fb():
    p = params.clone().requires_grad_(True)
    pipe(isp.RawBatch.from_raws([raw]), p).backward(up)
R = 5
for n in names: setattr(P, n, wrap(n))
NT.tone_chain = wrap("tone_chain"); names.append("tone_chain")
fwd(); acc.clear()
tot = 0
for _ in range(R):
    t = time.process_time(); fwd(); tot += time.process_time() - t
print(f"forward total {tot/R:.3f}")
for n in names: print(f"  {n:<26}{acc[n]/R:.3f}")
print(f"  {'rest':<26}{(tot - sum(acc.values()))/R:.3f}")
acc.clear(); fb(); acc.clear(); tot = 0
for _ in range(R):
    t = time.process_time(); fb(); tot += time.process_time() - t
print(f"forward+backward total {tot/R:.3f}; forward part per stage (grad mode):")
for n in names: print(f"  {n:<26}{acc[n]/R:.3f}")
for n in names[:-1]: setattr(P, n, orig[n])
NT.tone_chain = orig["tone_chain"]
from torch.profiler import profile, ProfilerActivity
fb()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(2): fb()
rows = [(e.key, e.cpu_time_total / 2e6) for e in prof.key_averages() if "Backward" in e.key and "autograd::engine" in e.key]
print("backward nodes (s, profiler, incl. children):")
for k, v in sorted(rows, key=lambda r: -r[1])[:14]: print(f"  {k.replace('autograd::engine::evaluate_function: ',''):<44}{v:.3f}")
