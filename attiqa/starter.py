"""The starter ATTIQA model: a working quality reward built offline on a fresh CPU machine.

``python -m attiqa build-starter [--out PATH] [--force] [--tiny] [--threads N] [--report [--report-crops N]]``

No CLIP weights, ImageNet or IQA dataset can be downloaded where this project is built, so
the starter is made from what ships inside installed packages:

1. **Backbone**: EfficientNet-Lite0 with its packaged ImageNet weights
   (``attiqa.models.build_model("efficientnet_lite0", pretrained=True)``).
2. **Attribute heads**: ranking pretraining (``attiqa.pretrain.train_ranking``, margin 0.1)
   against the ``analytic`` teacher on random crops of the photos that ship with
   scikit-image and scikit-learn, each with random ISP-like variations (exposure, white
   balance, gamma/tone, saturation) and, for half of them, one synthetic distortion at a
   random level. The backbone's last stages train along with the heads.
3. **Attributes + MOS head together**: the MOS MLP sits on the heads' features and learns,
   end to end with the trainable backbone part and the heads, to order versions of one crop
   by synthetic distortion level (blur, noise, JPEG, under-/over-exposure, desaturation,
   contrast loss; :mod:`attiqa.distortions`): a pairwise hinge between versions of the same
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

import argparse
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attiqa import ATTRIBUTES
from attiqa.distortions import linear_to_srgb, srgb_to_linear

__all__ = ["StarterConfig", "build_starter", "ensure_starter", "starter_path", "cache_root", "starter_photos",
           "isp_variation", "holdout_report", "format_report", "ranking_stage", "quality_stage", "main",
           "STARTER_DESCRIPTION"]

STARTER_VERSION = 1
STARTER_DESCRIPTION = ("starter model, not the paper's weights: EfficientNet-Lite0 (ImageNet) trained on packaged "
                       "sample photos to follow the analytic teacher's attribute rankings and to rank synthetic "
                       "distortion levels (MOS in (0, 1))")

BUILD_PHOTOS = ("skimage:astronaut", "skimage:chelsea", "skimage:coffee", "skimage:hubble_deep_field",
                "skimage:immunohistochemistry", "skimage:retina", "skimage:motorcycle", "sklearn:china")
HOLDOUT_PHOTOS = ("skimage:rocket", "sklearn:flower")


@dataclass
class StarterConfig:
    """How the starter is built (defaults: ~5-8 minutes on a 2-core CPU).

    Attributes:
        backbone: backbone name for :func:`attiqa.models.build_model`.
        pretrained: start from the packaged ImageNet weights.
        head_hidden: hidden width of the attribute heads.
        mos_hidden: hidden width of the MOS MLP.
        crop: side of the training crops (pixels).
        photo_max_side: photos are downscaled to this longer side first.
        photos: photos used for building (``"skimage:NAME"`` / ``"sklearn:NAME"``).
        holdout: photos kept out of building and used for the report.
        rank_steps: steps of a ranking-only pretraining stage before the joint stage (0 = none;
            the joint stage trains the attribute ranking as well).
        rank_batch_size: images per ranking step.
        rank_lr: learning rate of the ranking stage.
        trainable_backbone_fraction: share of the backbone's parameter tensors (the last ones)
            trained in the ranking stage; 0 freezes it, 1 trains all.
        joint_steps: steps of the joint stage, where the trainable backbone part, the attribute
            heads and the MOS head learn together: attribute ranking against the teacher plus
            MOS ranking by distortion level within each group of versions of one crop.
        joint_groups: base crops per joint step.
        joint_versions: versions (the clean crop + distortions at random levels) per base crop.
        joint_lr: learning rate of the joint stage.
        mos_weight: weight of the MOS loss against the attribute-ranking loss.
        group_isp_strength: strength of the random ISP variation of each group's clean crop
            (:func:`isp_variation`; 1 = exposure ±1.5 EV, so dark and bright renderings both occur).
        mos_samples: distorted crops whose frozen head features re-fit the MOS head after the
            joint stage (0 = keep the jointly trained head).
        mos_group: versions (different distortions/levels) per base crop in that re-fit.
        mos_steps: optimisation steps of the re-fit (on cached features).
        mos_lr: learning rate of the re-fit.
        mos_feature_noise: Gaussian noise added to the cached features in the re-fit, in units of
            each feature's standard deviation (regularises against memorising the few crops).
        report_levels: distortion levels of the hold-out report.
        seed: random seed.
    """

    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    head_hidden: int = 256
    mos_hidden: int = 256
    crop: int = 224
    photo_max_side: int = 512
    photos: tuple[str, ...] = BUILD_PHOTOS
    holdout: tuple[str, ...] = HOLDOUT_PHOTOS
    rank_steps: int = 60
    rank_batch_size: int = 16
    rank_lr: float = 3e-4
    trainable_backbone_fraction: float = 0.5
    joint_steps: int = 240
    joint_groups: int = 4
    joint_versions: int = 4
    joint_lr: float = 3e-4
    mos_weight: float = 1.0
    group_isp_strength: float = 1.0
    mos_samples: int = 0
    mos_group: int = 8
    mos_steps: int = 1500
    mos_lr: float = 1e-3
    mos_feature_noise: float = 1.0
    report_levels: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    seed: int = 0

    @classmethod
    def tiny(cls) -> "StarterConfig":
        """A random-weight model on 32 px crops that builds in a few seconds (tests)."""
        return cls(pretrained=False, head_hidden=16, mos_hidden=16, crop=32, photo_max_side=64,
                   photos=BUILD_PHOTOS[:2], rank_steps=2, rank_batch_size=4, trainable_backbone_fraction=1.0,
                   joint_steps=2, joint_groups=2, joint_versions=3, mos_samples=16, mos_group=4, mos_steps=10,
                   report_levels=(0.0, 0.5, 1.0))


def cache_root() -> Path:
    """``$RLISP_CACHE`` or ``~/.cache/rl-isp``."""
    return Path(os.environ.get("RLISP_CACHE") or Path.home() / ".cache" / "rl-isp")


def starter_path() -> Path:
    """Where the cached starter lives: ``<cache>/attiqa/starter-v1.pt``."""
    return cache_root() / "attiqa" / f"starter-v{STARTER_VERSION}.pt"


# ---------------------------------------------------------------------------------------------
# photos and variations


def _load_photo(spec: str) -> np.ndarray:
    source, name = spec.split(":", 1)
    if source == "skimage":
        import skimage.data as data

        if name == "motorcycle":
            return data.stereo_motorcycle()[0]
        return getattr(data, name)()
    if source == "sklearn":
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    raise ValueError(f"unknown photo source {spec!r}")


def starter_photos(specs, max_side: int) -> dict[str, torch.Tensor]:
    """Loads packaged photos as ``(3, H, W)`` float tensors in ``[0, 1]``, longer side <= ``max_side``."""
    from attiqa.transforms import resize_short_edge

    out = {}
    for spec in specs:
        arr = np.asarray(_load_photo(spec))[..., :3].astype(np.float32) / 255.0
        img = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        h, w = img.shape[-2:]
        if max(h, w) > max_side:
            img = resize_short_edge(img, round(min(h, w) * max_side / max(h, w)))
        out[spec] = img.contiguous()
    return out


def isp_variation(img: torch.Tensor, g: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """A random ISP-like rendering change: exposure, white balance, gamma/tone, saturation.

    Args:
        img: ``(3, H, W)`` sRGB in ``[0, 1]``.
        g: random generator.
        strength: 1 = the full ranges below, smaller = milder.

    Ranges at strength 1: exposure ±1.5 EV, per-channel white-balance gain 0.75-1.33, gamma
    0.6-1.6, S-curve contrast -0.5..0.5, saturation 0-1.8.
    """
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=g))  # noqa: E731
    lin = srgb_to_linear(img)
    lin = lin * 2.0 ** (strength * u(-1.5, 1.5))
    wb = torch.tensor([2.0 ** (strength * u(-0.41, 0.41)) for _ in range(3)]).view(3, 1, 1)
    lin = lin * wb
    out = linear_to_srgb(lin)
    out = out.clamp(0, 1) ** (2.0 ** (strength * u(-0.74, 0.68)))
    k = strength * u(-0.5, 0.5)  # S-curve (k > 0) or flattening (k < 0) around mid-grey
    out = (out + k * out * (1 - out) * (2 * out - 1) * 2).clamp(0, 1)
    grey = (0.2126 * out[0] + 0.7152 * out[1] + 0.0722 * out[2])[None]
    sat = 1.0 + strength * (u(0.0, 1.8) - 1.0)
    return (grey + sat * (out - grey)).clamp(0, 1)


def _random_crop(img: torch.Tensor, crop: int, g: torch.Generator, min_scale: float = 0.45) -> torch.Tensor:
    """A random square crop covering ``min_scale``-1 of the shorter side, resized to ``crop``."""
    _, h, w = img.shape
    short = min(h, w)
    side = int(short * (min_scale + (1 - min_scale) * float(torch.rand((), generator=g))))
    side = max(min(side, short), min(crop, short))
    y = int(torch.randint(0, h - side + 1, (1,), generator=g))
    x = int(torch.randint(0, w - side + 1, (1,), generator=g))
    patch = img[:, y:y + side, x:x + side]
    if side != crop:
        patch = F.interpolate(patch[None], size=(crop, crop), mode="bilinear", align_corners=False,
                              antialias=side > crop)[0].clamp(0, 1)
    return patch


def _distort(img: torch.Tensor, kind: str, level: float, g: torch.Generator) -> torch.Tensor:
    from attiqa.distortions import distort

    return distort(img[None], kind, float(level), generator=g)[0].clamp(0, 1)


class _RankingData(torch.utils.data.Dataset):
    """Crops with ISP variations (and half of them one distortion), labelled by the teacher."""

    def __init__(self, photos: list[torch.Tensor], teacher, n: int, crop: int, seed: int):
        from attiqa.distortions import DISTORTIONS

        self.photos, self.teacher, self.n, self.crop, self.seed = photos, teacher, n, crop, seed
        self.kinds = list(DISTORTIONS)

    def __len__(self):
        return self.n

    @torch.no_grad()
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 7919 + i)
        photo = self.photos[int(torch.randint(0, len(self.photos), (1,), generator=g))]
        x = isp_variation(_random_crop(photo, self.crop, g), g)
        if float(torch.rand((), generator=g)) < 0.5:
            kind = self.kinds[int(torch.randint(0, len(self.kinds), (1,), generator=g))]
            x = _distort(x, kind, float(torch.rand((), generator=g)), g)
        return x, self.teacher(x[None])[0].float()


def _freeze_backbone_prefix(model, trainable_fraction: float) -> None:
    """Freezes the first (1 - fraction) of the backbone's parameter tensors; heads stay trainable."""
    head_names = {n for n, _ in model.named_parameters() if "head" in n.split(".")[0]}
    body = [(n, p) for n, p in model.named_parameters() if n not in head_names]
    n_frozen = int(round(len(body) * (1 - trainable_fraction)))
    for _, p in body[:n_frozen]:
        p.requires_grad_(False)


def _mos_training_set(model, photos, config: StarterConfig, progress: bool):
    """Head features of distorted crops: (features (N, 5D), unit targets (N,), group ids (N,))."""
    from tqdm.auto import tqdm

    from attiqa.distortions import DISTORTIONS

    kinds = list(DISTORTIONS)
    g = torch.Generator().manual_seed(config.seed + 17)
    n_groups = max(1, config.mos_samples // config.mos_group)
    feats, targets, groups = [], [], []
    model.eval()
    with torch.no_grad():
        for gi in tqdm(range(n_groups), desc="starter: MOS features", disable=not progress, leave=False):
            photo = photos[int(torch.randint(0, len(photos), (1,), generator=g))]
            base = isp_variation(_random_crop(photo, config.crop, g), g, strength=0.25)
            batch, levels = [], []
            for j in range(config.mos_group):
                level = 0.0 if j == 0 else float(torch.rand((), generator=g))
                kind = kinds[int(torch.randint(0, len(kinds), (1,), generator=g))]
                batch.append(base if level == 0.0 else _distort(base, kind, level, g))
                levels.append(level)
            out = model(torch.stack(batch))
            feats.append(out.head_features.flatten(1))
            targets.append(1.0 - torch.tensor(levels))
            groups.append(torch.full((len(batch),), gi))
    return torch.cat(feats), torch.cat(targets).float(), torch.cat(groups)


def _fit_mos_head(qmodel, feats, targets, groups, config: StarterConfig, progress: bool) -> float:
    """Trains only the MOS MLP on cached head features: MSE to 1 - level + within-crop ranking."""
    from tqdm.auto import tqdm

    head = qmodel.mos_head
    head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=config.mos_lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(config.seed + 23)
    n_groups = int(groups.max()) + 1
    per_step = max(1, min(32, n_groups))
    mu, sd = feats.mean(0), feats.std(0).clamp_min(1e-6)
    loss = torch.tensor(0.0)
    for step in tqdm(range(config.mos_steps), desc="starter: MOS head", disable=not progress, leave=False):
        pick = torch.randperm(n_groups, generator=g)[:per_step]
        mask = torch.isin(groups, pick)
        f, t, gr = feats[mask], targets[mask], groups[mask]
        f = f + config.mos_feature_noise * sd * torch.randn(f.shape, generator=g)  # against memorising crops
        pred = torch.sigmoid(head(f))
        mse = F.mse_loss(pred, t)
        same = (gr[:, None] == gr[None, :]) & (t[:, None] > t[None, :] + 0.05)
        diff = pred[None, :] - pred[:, None] + 0.05  # hinge: higher target should score higher
        rank = F.relu(diff)[same].mean() if same.any() else pred.sum() * 0
        loss = mse + rank
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for pg in opt.param_groups:
            pg["lr"] = config.mos_lr * 0.5 * (1 + math.cos(math.pi * (step + 1) / config.mos_steps))
    head.eval()
    del mu
    return float(loss.detach())


@torch.no_grad()
def holdout_report(model, photos: dict[str, torch.Tensor], crop: int, levels=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                   n_crops: int = 2, seed: int = 1) -> dict:
    """SROCC between distortion level and the model's scores on held-out photos.

    For every held-out photo, ``n_crops`` random ``crop`` crops are distorted at each level with
    each distortion type. ``mos[kind]`` is the SROCC between level and *negative* MOS, pooled over
    all crops of all photos (1 = the MOS falls with every step of distortion; ties broken by
    scipy's averaging); ``attributes[attr]`` the same for each attribute head against its own
    distortion (``attiqa.distortions.ATTRIBUTE_DISTORTION``). The SROCC is computed per crop and
    averaged (``*_per_crop``) and over the pooled values.

    Args:
        model: a :class:`attiqa.quality.QualityModel` (or anything returning ``QualityOutput``).
        photos: held-out photos ``{name: (3, H, W)}``.
    """
    from scipy import stats

    from attiqa.distortions import ATTRIBUTE_DISTORTION, DISTORTIONS

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


# ---------------------------------------------------------------------------------------------
# building


class _GroupData(torch.utils.data.Dataset):
    """Groups of versions of one crop: the clean crop first, then distortions at random levels.

    Item ``i`` -> ``(images (V, 3, c, c), teacher labels (V, 5), levels (V,))``; each group draws
    its versions from two distortion types, so it holds short ladders of one kind as well as
    comparisons across kinds.
    """

    def __init__(self, photos, teacher, n: int, crop: int, versions: int, seed: int, isp_strength: float = 0.5):
        from attiqa.distortions import DISTORTIONS

        self.photos, self.teacher, self.n, self.crop, self.versions = photos, teacher, n, crop, versions
        self.seed, self.kinds, self.isp_strength = seed, list(DISTORTIONS), isp_strength

    def __len__(self):
        return self.n

    @torch.no_grad()
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 104729 + 31 * i + 5)
        photo = self.photos[int(torch.randint(0, len(self.photos), (1,), generator=g))]
        base = isp_variation(_random_crop(photo, self.crop, g), g, strength=self.isp_strength)
        pair = torch.randperm(len(self.kinds), generator=g)[:2].tolist()
        imgs, levels = [base], [0.0]
        for j in range(1, self.versions):
            kind = self.kinds[pair[j % 2]]
            level = 0.1 + 0.9 * float(torch.rand((), generator=g))
            imgs.append(_distort(base, kind, level, g))
            levels.append(level)
        x = torch.stack(imgs)
        return x, self.teacher(x).float(), torch.tensor(levels)


def joint_stage(qmodel, photos: list[torch.Tensor], config: StarterConfig, progress: bool = True) -> dict:
    """Stage 2: attribute ranking and MOS ranking by distortion level, trained together.

    Every step takes ``joint_groups`` crops with ``joint_versions`` versions each. The loss is the
    margin-ranking loss of the five heads against the analytic teacher over all pairs in the
    batch (as in pretraining) plus ``mos_weight`` x (a hinge that orders the MOS of every pair of
    versions of the same crop by distortion level, margin 0.05, + the squared error of the MOS
    in ``(0, 1)`` to ``1 - level``). Batch-norm layers keep their ImageNet statistics (eval mode),
    since a batch holds only a few distinct crops.

    Returns:
        ``{"steps", "final_loss", "seconds"}``.
    """
    from tqdm.auto import tqdm

    from attiqa.losses import margin_ranking_loss
    from attiqa.teachers import AnalyticTeacher

    if config.joint_steps <= 0:
        return {"steps": 0, "final_loss": float("nan"), "seconds": 0.0}
    t0 = time.perf_counter()
    model = qmodel.attiqa
    _freeze_backbone_prefix(model, config.trainable_backbone_fraction)
    params = [p for p in qmodel.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.joint_lr, weight_decay=1e-4)
    data = _GroupData(photos, AnalyticTeacher().eval(), config.joint_steps * config.joint_groups, config.crop,
                      config.joint_versions, config.seed + 101, config.group_isp_strength)
    loader = torch.utils.data.DataLoader(data, batch_size=config.joint_groups, shuffle=False)
    qmodel.train()
    for m in qmodel.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    losses = []
    bar = tqdm(total=config.joint_steps, desc="starter: attributes + MOS", disable=not progress, leave=False)
    for step, (imgs, labels, levels) in enumerate(loader):
        gsz, v = imgs.shape[:2]
        out = model(imgs.flatten(0, 1))
        mos = torch.sigmoid(qmodel.mos_head(out.head_features.flatten(1))).view(gsz, v)
        rank, _ = margin_ranking_loss(out.scores, labels.flatten(0, 1), 0.1)
        target = 1.0 - levels
        better = target[:, :, None] > target[:, None, :] + 0.05  # (G, V, V): version i should beat j
        hinge = F.relu(mos[:, None, :] - mos[:, :, None] + 0.05)[better].mean() if better.any() else mos.sum() * 0
        loss = rank + config.mos_weight * (hinge + F.mse_loss(mos, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for pg in opt.param_groups:
            pg["lr"] = config.joint_lr * 0.5 * (1 + math.cos(math.pi * (step + 1) / config.joint_steps))
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    qmodel.requires_grad_(True)
    qmodel.eval()
    return {"steps": len(losses), "final_loss": float(np.mean(losses[-10:])),
            "seconds": time.perf_counter() - t0}


def ranking_stage(photos: list[torch.Tensor], config: StarterConfig, progress: bool = True):
    """Stage 1: backbone + attribute heads ranking-pretrained against the analytic teacher.

    Returns:
        ``(model, info)``: the :class:`attiqa.models.ATTIQAModel` in eval mode and
        :func:`attiqa.pretrain.train_ranking`'s summary.
    """
    from attiqa.models import build_model
    from attiqa.pretrain import train_ranking
    from attiqa.teachers import AnalyticTeacher

    torch.manual_seed(config.seed)
    model = build_model(config.backbone, pretrained=config.pretrained, head_hidden=config.head_hidden)
    _freeze_backbone_prefix(model, config.trainable_backbone_fraction)
    if config.rank_steps <= 0:
        return model.eval(), {"steps": 0}
    teacher = AnalyticTeacher().eval()
    data = _RankingData(photos, teacher, config.rank_steps * config.rank_batch_size, config.crop, config.seed)
    info = train_ranking(model, data, steps=config.rank_steps, batch_size=config.rank_batch_size,
                         lr=config.rank_lr, loss="margin", margin=0.1, device="cpu", progress=progress,
                         seed=config.seed)
    model.requires_grad_(True)
    return model.eval(), info


def quality_stage(model, photos: list[torch.Tensor], config: StarterConfig, progress: bool = True):
    """Stages 2-3: the MOS head on top of the attribute model, trained jointly with it
    (:func:`joint_stage`) and, when ``config.mos_samples > 0``, re-fitted on frozen features.

    Returns:
        ``(quality_model, final_loss)`` with a :class:`attiqa.quality.QualityModel` in eval mode.
    """
    from attiqa.quality import QualityModel

    torch.manual_seed(config.seed)
    qmodel = QualityModel(model, head_hidden=config.mos_hidden, dropout=0.0, score_range=(0.0, 1.0))
    info = joint_stage(qmodel, photos, config, progress)
    loss = info["final_loss"]
    if config.mos_samples > 0:
        feats, targets, groups = _mos_training_set(model, photos, config, progress)
        loss = _fit_mos_head(qmodel, feats, targets, groups, config, progress)
    return qmodel.eval(), loss


def build_starter(path, config: StarterConfig | None = None, progress: bool = True) -> Path:
    """Builds the starter model and saves it as a quality checkpoint (atomically).

    Args:
        path: output file.
        config: :class:`StarterConfig` (default: the real starter; ``StarterConfig.tiny()`` for tests).
        progress: progress bars and stage messages on stderr.

    Returns:
        ``path``.
    """
    from attiqa.finetune import save_quality_checkpoint

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
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "w") as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        if not path.is_file():
            print(f"attiqa: building the ATTIQA starter model at {path} (first use, about 5-8 minutes on a "
                  "2-core CPU). It is a starter model, not the paper's weights.", file=sys.stderr, flush=True)
            build_starter(path, StarterConfig(), progress=progress)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attiqa build-starter", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help=f"output checkpoint (default: {starter_path()})")
    p.add_argument("--force", action="store_true", help="rebuild even when the file exists")
    p.add_argument("--tiny", action="store_true", help="the seconds-long test configuration (random weights)")
    p.add_argument("--rank-steps", type=int, default=None, help="override the ranking-pretraining steps")
    p.add_argument("--joint-steps", type=int, default=None, help="override the attributes + MOS steps")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--report", action="store_true", help="print the stored hold-out report of an existing file")
    p.add_argument("--report-crops", type=int, default=None,
                   help="with --report: recompute the hold-out report with this many crops per held-out photo")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else starter_path()
    if args.report:
        from attiqa.api import load_quality_model
        try:
            model, meta = load_quality_model(out)
        except (FileNotFoundError, ValueError) as exc:
            print(f"attiqa build-starter: error: {exc}", file=sys.stderr)
            return 1
        report = meta["holdout_report"]
        if args.report_crops:
            cfg = meta.get("starter_config", {})
            holdout = starter_photos(tuple(cfg.get("holdout", HOLDOUT_PHOTOS)), int(cfg.get("photo_max_side", 512)))
            report = holdout_report(model, holdout, int(cfg.get("crop", 224)),
                                    tuple(cfg.get("report_levels", report["levels"])), n_crops=args.report_crops)
        print(format_report(report))
        cpu = meta.get("build_cpu_seconds")
        print(f"\nbuilt in {meta.get('build_seconds', float('nan')):.0f} s wall"
              + (f", {cpu:.0f} s CPU on {meta.get('torch_threads')} threads" if cpu is not None else "")
              + f"; {meta['description']}")
        return 0
    if out.is_file() and not args.force:
        print(f"{out} exists (use --force to rebuild)")
        return 0
    config = StarterConfig.tiny() if args.tiny else StarterConfig()
    if args.rank_steps is not None:
        config = replace(config, rank_steps=args.rank_steps)
    if args.joint_steps is not None:
        config = replace(config, joint_steps=args.joint_steps)
    build_starter(out, config, progress=True)
    print(f"built the starter model (not the paper's weights): {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
