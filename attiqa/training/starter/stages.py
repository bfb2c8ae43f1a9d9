"""The starter's training stages: ranking pretraining, then attributes + MOS head together."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from attiqa.training.starter.config import StarterConfig
from attiqa.training.starter.data import _GroupData, _RankingData
from attiqa.training.starter.photos import _distort, _random_crop, isp_variation

__all__ = ["ranking_stage", "joint_stage", "quality_stage"]


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

    from attiqa.data.distortions import DISTORTIONS

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
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.mos_steps)
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
        sched.step()
    head.eval()
    del mu
    return float(loss.detach())


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

    from attiqa.training.losses import margin_ranking_loss
    from attiqa.teachers import AnalyticTeacher

    if config.joint_steps <= 0:
        return {"steps": 0, "final_loss": float("nan"), "seconds": 0.0}
    t0 = time.perf_counter()
    model = qmodel.attiqa
    _freeze_backbone_prefix(model, config.trainable_backbone_fraction)
    params = [p for p in qmodel.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.joint_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.joint_steps)
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
        sched.step()
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
        ``(model, info)``: the :class:`attiqa.modeling.heads.ATTIQAModel` in eval mode and
        :func:`attiqa.training.pretrain.train_ranking`'s summary.
    """
    from attiqa.modeling.heads import build_model
    from attiqa.training.pretrain import train_ranking
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
        ``(quality_model, final_loss)`` with a :class:`attiqa.modeling.quality.QualityModel` in eval mode.
    """
    from attiqa.modeling.quality import QualityModel

    torch.manual_seed(config.seed)
    qmodel = QualityModel(model, head_hidden=config.mos_hidden, dropout=0.0, score_range=(0.0, 1.0))
    info = joint_stage(qmodel, photos, config, progress)
    loss = info["final_loss"]
    if config.mos_samples > 0:
        feats, targets, groups = _mos_training_set(model, photos, config, progress)
        loss = _fit_mos_head(qmodel, feats, targets, groups, config, progress)
    return qmodel.eval(), loss
