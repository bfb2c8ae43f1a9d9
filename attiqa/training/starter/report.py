"""The starter's hold-out report: how its scores follow known degradations of photos it never saw."""
from __future__ import annotations

import numpy as np
import torch

from attiqa.attributes import ATTRIBUTES
from attiqa.training.starter.photos import _distort, _random_crop

__all__ = ["holdout_report", "format_report"]


@torch.no_grad()
def holdout_report(model, photos: dict[str, torch.Tensor], crop: int, levels=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                   n_crops: int = 2, seed: int = 1) -> dict:
    """SROCC between distortion level and the model's scores on held-out photos.

    For every held-out photo, ``n_crops`` random ``crop`` crops are distorted at each level with
    each distortion type. ``mos[kind]`` is the SROCC between level and *negative* MOS, pooled over
    all crops of all photos (1 = the MOS falls with every step of distortion; ties broken by
    scipy's averaging); ``attributes[attr]`` the same for each attribute head against its own
    distortion (``attiqa.data.distortions.ATTRIBUTE_DISTORTION``). The SROCC is computed per crop and
    averaged (``*_per_crop``) and over the pooled values.

    Args:
        model: a :class:`attiqa.modeling.quality.QualityModel` (or anything returning ``QualityOutput``).
        photos: held-out photos ``{name: (3, H, W)}``.
    """
    from scipy import stats

    from attiqa.data.distortions import ATTRIBUTE_DISTORTION, DISTORTIONS

    model.eval()
    g = torch.Generator().manual_seed(seed)
    mos_rows = {k: [] for k in DISTORTIONS}
    attr_rows = {a: [] for a in ATTRIBUTES}
    for photo in photos.values():
        for _ in range(n_crops):
            base = _random_crop(photo, crop, g, min_scale=0.6)
            for kind in DISTORTIONS:
                imgs = torch.stack([base if lv == 0 else _distort(base, kind, lv, torch.Generator().manual_seed(7))
                                    for lv in levels])
                out = model(imgs)
                mos_rows[kind].append(out.mos.numpy())
                for ai, attr in enumerate(ATTRIBUTES):
                    if ATTRIBUTE_DISTORTION[attr] == kind:
                        attr_rows[attr].append(out.attributes[:, ai].numpy())
    lv = np.asarray(levels, dtype=np.float64)

    def summarise(rows):
        per = [stats.spearmanr(lv, -r)[0] if np.ptp(r) > 0 else 0.0 for r in rows]
        allv = np.concatenate(rows) if rows else np.zeros(0)
        pooled = stats.spearmanr(np.tile(lv, len(rows)), -allv)[0] if allv.size and np.ptp(allv) > 0 else 0.0
        return float(np.mean(per)) if per else float("nan"), float(pooled)

    report = {"photos": list(photos), "levels": list(levels), "n_crops": n_crops, "mos": {}, "attributes": {}}
    for kind, rows in mos_rows.items():
        per, pooled = summarise(rows)
        report["mos"][kind] = {"srocc_per_crop": per, "srocc_pooled": pooled}
    for attr, rows in attr_rows.items():
        per, pooled = summarise(rows)
        report["attributes"][attr] = {"distortion": ATTRIBUTE_DISTORTION[attr], "srocc_per_crop": per,
                                      "srocc_pooled": pooled}
    return report


def format_report(report: dict) -> str:
    """The hold-out report as a Markdown table."""
    lines = [f"Hold-out photos: {', '.join(report['photos'])}; levels {report['levels']}, "
             f"{report['n_crops']} crops each", "", "| distortion | SROCC(level, −MOS) per crop | pooled |",
             "|---|---|---|"]
    for k, v in report["mos"].items():
        lines.append(f"| {k} | {v['srocc_per_crop']:.3f} | {v['srocc_pooled']:.3f} |")
    lines += ["", "| attribute head | its distortion | SROCC(level, −score) per crop | pooled |", "|---|---|---|---|"]
    for a, v in report["attributes"].items():
        lines.append(f"| {a} | {v['distortion']} | {v['srocc_per_crop']:.3f} | {v['srocc_pooled']:.3f} |")
    return "\n".join(lines)
