"""Pretraining losses: attribute-aware margin ranking (the method) and L2 regression (ablation).

Ranking (ATTIQA, Eq. 3–4): for every pair ``(i, j)`` of images in a batch and every attribute
``k`` with teacher scores ``y`` and predictions ``s``,

    l_ijk = max(0, −sign(y_ik − y_jk) · (s_ik − s_jk) + m)

so the model only has to order the pair as the teacher does, by a margin ``m`` (0.1 in the
paper), not reproduce the teacher's values. Pairs whose teacher scores tie are skipped. The
loss of an attribute is the mean over its pairs; the total is the sum over attributes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["margin_ranking_loss", "l2_loss", "pretraining_loss", "LOSSES"]

LOSSES = ("margin", "l2")


def margin_ranking_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 0.1
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Margin ranking loss over all pairs within the batch.

    Args:
        scores: ``(B, K)`` predicted attribute scores.
        labels: ``(B, K)`` teacher scores.
        margin: ``m``.

    Returns:
        ``(total, per_attribute)``: the sum over attributes (scalar) and ``(K,)`` per-attribute means.
    """
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} must both be (B, K)")
    b = scores.shape[0]
    i, j = torch.triu_indices(b, b, offset=1, device=scores.device)
    sign = torch.sign(labels[i] - labels[j]).to(scores.dtype)  # (P, K)
    hinge = F.relu(-sign * (scores[i] - scores[j]) + margin)
    valid = (sign != 0).to(scores.dtype)
    per_attr = (hinge * valid).sum(0) / valid.sum(0).clamp_min(1)
    return per_attr.sum(), per_attr


def l2_loss(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared error to the teacher scores (the ablation): ``(sum over attributes, (K,) means)``."""
    per_attr = ((scores - labels.to(scores.dtype)) ** 2).mean(0)
    return per_attr.sum(), per_attr


def pretraining_loss(name: str, scores: torch.Tensor, labels: torch.Tensor, margin: float = 0.1):
    """Dispatches to :func:`margin_ranking_loss` (``"margin"``) or :func:`l2_loss` (``"l2"``)."""
    if name == "margin":
        return margin_ranking_loss(scores, labels, margin)
    if name == "l2":
        return l2_loss(scores, labels)
    raise ValueError(f"unknown pretraining loss {name!r}; choose one of {LOSSES}")
