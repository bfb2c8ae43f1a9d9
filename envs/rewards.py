"""Reward registry: image-quality scorers the environment can be rewarded by.

Every built reward knows its sign (``lower_better``) and its score range, so the environment can
turn any scorer into a "higher is better, roughly in [0, 1]" quantity before taking differences.
Each is declared once, where the scorer is defined: ATTIQA's by its quality model and
``attiqa.QualityMetric`` (read by :func:`_build_attiqa`), the analytic teacher's in
:func:`_build_analytic`; a registry entry only names a builder.

Example:
    >>> reward = create_reward("analytic")                     # doctest: +SKIP
    >>> out = reward(torch.rand(2, 3, 64, 64))                 # doctest: +SKIP
    >>> out.score.shape, out.normalized.shape, out.attributes.shape   # doctest: +SKIP
    (torch.Size([2]), torch.Size([2]), torch.Size([2, 5]))
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import nn

__all__ = [
    "REWARDS",
    "RewardEntry",
    "RewardModel",
    "RewardOutput",
    "create_reward",
    "register_reward",
    "reward_names",
]


class RewardOutput(NamedTuple):
    """What a reward model returns for a batch of images.

    Attributes:
        score: ``(B,)`` the scorer's own score, in its own units and sign.
        normalized: ``(B,)`` the score mapped so that higher is better and the declared range
            becomes ``[0, 1]`` (values may leave that interval slightly).
        attributes: ``(B, 5)`` attribute scores (sharpness, contrast, brightness, colorfulness,
            noisiness; higher = more of the good pole), used as observation features.
    """

    score: torch.Tensor
    normalized: torch.Tensor
    attributes: torch.Tensor


class RewardModel(nn.Module):
    """Wraps a scorer into a uniform, differentiable reward model.

    Args:
        name: registry name.
        scorer: module mapping images ``(B, 3, H, W)`` in ``[0, 1]`` to whatever ``extract`` reads.
        extract: function ``scorer_output -> (score (B,), attributes (B, 5))``.
        lower_better: True when a lower score means a better image.
        score_range: ``(lo, hi)`` typical range of the score, used for normalisation.
        description: one line shown in logs and ``config.yaml``.
        is_starter: True when the scorer is the embedded starter model, not trained weights.
        checkpoint: the file the scorer's weights came from (``None`` for closed-form scorers);
            what a run records so that its reward can be rebuilt.
    """

    def __init__(
        self,
        name: str,
        scorer: nn.Module,
        extract: Callable[[object], tuple[torch.Tensor, torch.Tensor]],
        *,
        lower_better: bool,
        score_range: tuple[float, float],
        description: str = "",
        is_starter: bool = False,
        checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        lo, hi = (float(v) for v in score_range)
        if not hi > lo:
            raise ValueError(f"reward {name!r}: score_range must satisfy lo < hi, got {score_range}")
        self.name = name
        self.scorer = scorer
        self._extract = extract
        self.lower_better = bool(lower_better)
        self.score_range = (lo, hi)
        self.description = description
        self.is_starter = bool(is_starter)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        for p in self.scorer.parameters():
            p.requires_grad_(False)
        self.scorer.eval()

    def train(self, mode: bool = True) -> "RewardModel":  # the scorer stays frozen in eval mode
        super().train(mode)
        self.scorer.eval()
        return self

    def normalize(self, score: torch.Tensor) -> torch.Tensor:
        """Maps raw scores to "higher is better", with the declared range sent to ``[0, 1]``."""
        lo, hi = self.score_range
        unit = (score - lo) / (hi - lo)
        return 1.0 - unit if self.lower_better else unit

    def forward(self, images: torch.Tensor) -> RewardOutput:
        """Scores a batch of images.

        Args:
            images: ``(B, 3, H, W)`` sRGB in ``[0, 1]``.

        Returns:
            RewardOutput with ``(B,)`` score and normalized score, ``(B, 5)`` attributes.
        """
        score, attributes = self._extract(self.scorer(images))
        return RewardOutput(score, self.normalize(score), attributes)


@dataclass(frozen=True)
class RewardEntry:
    """One registry entry.

    Attributes:
        name: registry key (``--reward NAME``).
        description: one line for ``--help`` and logs.
        build: ``(checkpoint, device) -> RewardModel``.
    """

    name: str
    description: str
    build: Callable[[str | None, str], RewardModel]


REWARDS: dict[str, RewardEntry] = {}


def register_reward(entry: RewardEntry) -> RewardEntry:
    """Adds an entry to :data:`REWARDS` (an existing name is an error)."""
    if entry.name in REWARDS:
        raise ValueError(f"reward {entry.name!r} is already registered")
    REWARDS[entry.name] = entry
    return entry


def reward_names() -> list[str]:
    """Registered reward names, sorted."""
    return sorted(REWARDS)


def create_reward(name: str, checkpoint: str | None = None, device: str | torch.device = "cpu") -> RewardModel:
    """Builds the reward model registered under ``name``.

    Args:
        name: a key of :data:`REWARDS` (``attiqa``, ``analytic``).
        checkpoint: model file for learned rewards (``attiqa``: ``None`` = the starter model).
        device: torch device.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; choose one of {', '.join(reward_names())}")
    model = REWARDS[name].build(checkpoint, str(device))
    return model.to(device)


# --------------------------------------------------------------------------------------------
# Entries


def _build_attiqa(checkpoint: str | None, device: str) -> RewardModel:
    import attiqa

    metric = attiqa.create_metric(checkpoint=checkpoint, device=device)
    starter = bool(getattr(metric, "is_starter", checkpoint is None))
    desc = "ATTIQA MOS" + (" (starter model, not the paper's weights)" if starter else f" ({checkpoint})")
    return RewardModel(
        "attiqa",
        metric.model,  # the quality model itself: its forward gives the named (mos, attributes) output
        lambda out: (out.mos, out.attributes),
        lower_better=bool(metric.lower_better),
        score_range=tuple(metric.score_range),
        description=desc,
        is_starter=starter,
        checkpoint=None if metric.checkpoint_path is None else str(Path(metric.checkpoint_path).resolve()),
    )


def _build_analytic(checkpoint: str | None, device: str) -> RewardModel:
    from attiqa.teachers import AnalyticTeacher

    if checkpoint is not None:
        raise ValueError("the 'analytic' reward takes no checkpoint")
    return RewardModel(
        "analytic",
        AnalyticTeacher(),
        lambda attrs: (attrs.mean(dim=1), attrs),
        lower_better=False,
        score_range=ANALYTIC_RANGE,
        description="mean of the five closed-form attribute scores (AnalyticTeacher)",
    )


# The analytic teacher's attributes each lie in [0, 1] (higher = better pole), so their mean does too.
ANALYTIC_RANGE: tuple[float, float] = (0.0, 1.0)

register_reward(
    RewardEntry(
        name="attiqa",
        description="ATTIQA predicted MOS (any checkpoint; the starter model when none is given)",
        build=_build_attiqa,
    )
)
register_reward(
    RewardEntry(
        name="analytic",
        description="mean of the analytic teacher's five attribute scores (no model file)",
        build=_build_analytic,
    )
)
