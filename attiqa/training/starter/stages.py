"""The starter's training stages.

1. :func:`ranking_stage`: the backbone's last part and the five attribute heads learn the
   analytic teacher's rankings (margin-ranking loss, m = 0.1) on pushed crops of the build photos.
2. :func:`joint_stage`: the MOS head on the heads' features learns, end to end with the heads
   and the trainable backbone part, to order the renderings of one crop by their pseudo-MOS
   (a pairwise hinge between renderings of the same crop + the squared error to the
   pseudo-MOS; or a logistic ranking loss on the logits with ``mos_rank_loss="logistic"``), next to the attribute-ranking loss that keeps the heads with the teacher.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from attiqa.training.starter.config import StarterConfig
from attiqa.training.starter.data import PushGroups, RankingData

__all__ = ["ranking_stage", "joint_stage", "quality_stage"]


def _freeze_backbone_prefix(model, trainable_fraction: float) -> None:
    """Freezes the first (1 - fraction) of the backbone's parameter tensors; heads stay trainable."""
    head_names = {n for n, _ in model.named_parameters() if "head" in n.split(".")[0]}
    body = [(n, p) for n, p in model.named_parameters() if n not in head_names]
    n_frozen = int(round(len(body) * (1 - trainable_fraction)))
    for _, p in body[:n_frozen]:
        p.requires_grad_(False)


def _freeze_batch_norm(module: torch.nn.Module) -> None:
    """Batch-norm layers keep their ImageNet statistics: a batch holds only a few distinct crops."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def ranking_stage(photos: list[torch.Tensor], config: StarterConfig, progress: bool = True):
    """Stage 1: backbone + attribute heads ranking-pretrained against the analytic teacher.

    Returns:
        ``(model, info)``: the :class:`attiqa.modeling.heads.ATTIQAModel` in eval mode and
        :func:`attiqa.training.pretrain.train_ranking`'s summary.
    """
    from attiqa.modeling.heads import build_model
    from attiqa.teachers import AnalyticTeacher
    from attiqa.training.pretrain import train_ranking

    torch.manual_seed(config.seed)
    model = build_model(config.backbone, pretrained=config.pretrained, head_hidden=config.head_hidden)
    _freeze_backbone_prefix(model, config.trainable_backbone_fraction)
    if config.rank_steps <= 0:
        return model.eval(), {"steps": 0}
    data = RankingData(photos, AnalyticTeacher().eval(), config.rank_steps * config.rank_batch_size, config.crop,
                       config.seed)
    info = train_ranking(model, data, steps=config.rank_steps, batch_size=config.rank_batch_size,
                         lr=config.rank_lr, loss="margin", margin=0.1, device="cpu", progress=progress,
                         seed=config.seed, freeze_bn=True)
    return model.eval(), info


def joint_stage(qmodel, photos: list[torch.Tensor], config: StarterConfig, progress: bool = True) -> dict:
    """Stage 2: attribute ranking and MOS ranking of pushed renderings, trained together.

    Every step takes ``joint_groups`` crops with ``joint_versions`` renderings each
    (:class:`~attiqa.training.starter.data.PushGroups`). The loss is the margin-ranking loss of the
    five heads against the analytic teacher over all pairs in the batch plus ``mos_weight`` x (a
    hinge that puts the MOS of every pair of renderings of one crop in the order of their
    pseudo-MOS, margin ``mos_margin``, + the squared error of the MOS to the pseudo-MOS). The
    learning rate (``joint_lr``; the fresh MOS head ``mos_head_lr_factor`` times higher) decays on a
    cosine (``torch.optim.lr_scheduler.CosineAnnealingLR``).

    Returns:
        ``{"steps", "final_loss", "final_hinge", "seconds"}``.
    """
    from tqdm.auto import tqdm

    from attiqa.teachers import AnalyticTeacher
    from attiqa.training.losses import margin_ranking_loss

    if config.joint_steps <= 0:
        return {"steps": 0, "final_loss": float("nan"), "final_hinge": float("nan"), "seconds": 0.0}
    t0 = time.perf_counter()
    model = qmodel.attiqa
    qmodel.requires_grad_(True)
    _freeze_backbone_prefix(model, config.trainable_backbone_fraction)
    head = list(qmodel.mos_head.parameters())
    body = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": body, "lr": config.joint_lr},
                             {"params": head, "lr": config.joint_lr * config.mos_head_lr_factor}], weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.joint_steps)
    data = PushGroups(photos, AnalyticTeacher().eval(), config.joint_steps * config.joint_groups, config.crop,
                      config.joint_versions, config.seed + 101, config.min_magnitude, ladder=config.ladder,
                      flips=config.flips)
    loader = torch.utils.data.DataLoader(data, batch_size=config.joint_groups, shuffle=False)
    qmodel.train()
    _freeze_batch_norm(qmodel)
    losses, hinges = [], []
    bar = tqdm(total=config.joint_steps, desc="starter: attributes + MOS", disable=not progress, leave=False)
    for imgs, labels, target in loader:
        gsz, v = imgs.shape[:2]
        feats, scores = qmodel.head_features(imgs.flatten(0, 1))
        logit = qmodel.mos_head(feats).view(gsz, v)
        mos = torch.sigmoid(logit)
        rank, _ = margin_ranking_loss(scores, labels.flatten(0, 1), 0.1)
        better = target[:, :, None] > target[:, None, :] + config.mos_margin  # (G, V, V): i should beat j
        if not better.any():
            hinge = mos.sum() * 0
        elif config.mos_rank_loss == "logistic":  # RankNet on the logits: no sigmoid saturation near the photo
            hinge = F.softplus(logit[:, None, :] - logit[:, :, None])[better].mean()
        else:
            hinge = F.relu(mos[:, None, :] - mos[:, :, None] + config.mos_margin)[better].mean()
        if config.mos_rank_loss == "logistic":  # squared error of the logits: keeps them from growing without bound
            fit = F.mse_loss(logit, torch.logit(target.clamp(0.02, 0.98)))
        else:
            fit = F.mse_loss(mos, target)
        loss = rank + config.mos_weight * (hinge + config.mos_mse_weight * fit)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        hinges.append(float(hinge.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    qmodel.requires_grad_(True)
    qmodel.eval()
    return {"steps": len(losses), "final_loss": float(np.mean(losses[-10:])),
            "final_hinge": float(np.mean(hinges[-10:])), "seconds": time.perf_counter() - t0}


def quality_stage(model, photos: list[torch.Tensor], config: StarterConfig, progress: bool = True):
    """The MOS head on top of the attribute model, trained jointly with it (:func:`joint_stage`).

    Returns:
        ``(quality_model, joint_info)`` with a :class:`attiqa.modeling.quality.QualityModel` in eval mode.
    """
    from attiqa.modeling.quality import QualityModel

    torch.manual_seed(config.seed)
    qmodel = QualityModel(model, head_hidden=config.mos_hidden, dropout=0.0, score_range=(0.0, 1.0),
                          colour_stats=config.colour_stats)
    info = joint_stage(qmodel, photos, config, progress)
    return qmodel.eval(), info
