"""The starter ATTIQA model: a working quality reward built offline on a fresh CPU machine.

``python -m attiqa build-starter [--out PATH] [--force] [--tiny] [--threads N] [--report [--report-crops N]]``

No CLIP weights, ImageNet or IQA dataset can be downloaded where this project is built, so
the starter is made from what ships inside installed packages:

1. **Backbone**: EfficientNet-Lite0 with its packaged ImageNet weights
   (``attiqa.modeling.heads.build_model("efficientnet_lite0", pretrained=True)``).
2. **Attribute heads**: ranking pretraining (``attiqa.training.pretrain.train_ranking``, margin 0.1)
   against the ``analytic`` teacher on random crops of the photos that ship with
   scikit-image and scikit-learn, each with random ISP-like variations (exposure, white
   balance, gamma/tone, saturation) and, for half of them, one synthetic distortion at a
   random level. The backbone's last stages train along with the heads.
3. **Attributes + MOS head together**: the MOS MLP sits on the heads' features and learns,
   end to end with the trainable backbone part and the heads, to order versions of one crop
   by synthetic distortion level (blur, noise, JPEG, under-/over-exposure, desaturation,
   contrast loss; :mod:`attiqa.data.distortions`): a pairwise hinge between versions of the same
   crop plus the squared error to 1 − level, next to the attribute-ranking loss that keeps
   the heads faithful to the teacher. The score range is ``(0, 1)`` (a sigmoid output),
   higher is better. (Fitting the MOS head alone on frozen features of a few hundred crops
   memorises the crops and does not transfer to new photos; see ``docs/attiqa.md``.)

Two photos (scikit-image ``rocket``, scikit-learn ``flower``) are held out; the build ends
with a report on them: SROCC between distortion level and MOS per distortion type, and of
each attribute head against its own distortion. The report is stored in the checkpoint's
metadata (``meta["holdout_report"]``).

The cached model lives at ``<cache>/attiqa/starter-v1.pt`` (``<cache>`` =
``$RLISP_CACHE`` or ``~/.cache/rl-isp``); :func:`ensure_starter` builds it on first use. Its
metadata says ``starter: True`` and "starter model, not the paper's weights".
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from attiqa.modeling.checkpoint import save_quality_checkpoint
from attiqa.training.starter.config import STARTER_DESCRIPTION, STARTER_VERSION, StarterConfig, starter_path
from attiqa.training.starter.photos import starter_photos
from attiqa.training.starter.report import format_report, holdout_report
from attiqa.training.starter.stages import quality_stage, ranking_stage
from attiqa.utils.files import file_lock

__all__ = ["build_starter", "ensure_starter", "starter_path", "StarterConfig"]


def build_starter(path, config: StarterConfig | None = None, progress: bool = True) -> Path:
    """Builds the starter model and saves it as a quality checkpoint (atomically).

    Args:
        path: output file.
        config: :class:`StarterConfig` (default: the real starter; ``StarterConfig.tiny()`` for tests).
        progress: progress bars and stage messages on stderr.

    Returns:
        ``path``.
    """
    config = config or StarterConfig()
    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(config.seed)
    say = (lambda msg: print(f"attiqa starter: {msg}", file=sys.stderr, flush=True)) if progress else (lambda m: None)
    photos = list(starter_photos(config.photos, config.photo_max_side).values())
    say(f"{len(photos)} packaged photos; ranking pretraining of the attribute heads ({config.rank_steps} steps)")
    model, rank_info = ranking_stage(photos, config, progress)
    t_rank, c_rank = time.perf_counter() - t0, time.process_time() - c0
    say(f"training attributes + MOS head on synthetic distortion levels ({config.joint_steps} steps)")
    qmodel, mos_loss = quality_stage(model, photos, config, progress)
    t_mos, c_mos = time.perf_counter() - t0 - t_rank, time.process_time() - c0 - c_rank
    holdout = starter_photos(config.holdout, config.photo_max_side)
    report = holdout_report(qmodel, holdout, config.crop, config.report_levels)
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    cfg = asdict(config)
    extra = {"starter_version": STARTER_VERSION, "starter_config": cfg, "holdout_report": report,
             "build_seconds": build_s, "build_cpu_seconds": build_cpu, "torch_threads": torch.get_num_threads(),
             "stage_seconds": {"ranking": t_rank, "mos_head": t_mos, "report": build_s - t_rank - t_mos},
             "stage_cpu_seconds": {"ranking": c_rank, "mos_head": c_mos, "report": build_cpu - c_rank - c_mos},
             "mos_head_final_loss": mos_loss,
             "ranking_info": {k: v for k, v in (rank_info or {}).items() if isinstance(v, (int, float, str))},
             "score_note": "MOS in (0, 1): 1 = undistorted, 0 = the strongest synthetic distortion"}
    description = STARTER_DESCRIPTION if config.pretrained else \
        "starter model, not the paper's weights (tiny test configuration, random backbone weights)"
    save_quality_checkpoint(path, qmodel, starter=True, description=description, extra=extra)
    say(f"saved {path} in {build_s:.0f} s (CPU time {build_cpu:.0f} s on {torch.get_num_threads()} threads)")
    if progress:
        print(format_report(report), file=sys.stderr)
    return Path(path)


def ensure_starter(progress: bool = True) -> Path:
    """The cached starter checkpoint; builds it on first use (a few minutes on a CPU).

    Concurrent callers (e.g. vectorised environments) wait for one build through a lock file.
    """
    path = starter_path()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + ".lock")):
        if not path.is_file():
            print(f"attiqa: building the ATTIQA starter model at {path} (first use, about 5-8 minutes on a "
                  "2-core CPU). It is a starter model, not the paper's weights.", file=sys.stderr, flush=True)
            build_starter(path, StarterConfig(), progress=progress)
    return path


