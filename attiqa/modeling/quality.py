"""The MOS head and the quality model (ATTIQA backbone + attribute heads + MOS regressor).

The five attribute heads' penultimate features ``(B, 5, D)`` are concatenated to ``(B, 5·D)``
and fed to a small MLP that regresses the mean opinion score. The MLP ends in a sigmoid
that is mapped affinely onto the model's declared ``score_range`` (the MOS scale of the
dataset it was fine-tuned on, ``(0, 1)`` for the starter), so every prediction lies inside
that range and the range is a property of the checkpoint.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class QualityOutput(NamedTuple):
    """What a quality model returns.

    Attributes:
        mos: ``(B,)`` predicted mean opinion score inside the model's ``score_range``.
        attributes: ``(B, 5)`` attribute scores in the order of :data:`attiqa.ATTRIBUTES`
            (higher = sharper, more contrast, brighter, more colourful, less noisy).
    """

    mos: torch.Tensor
    attributes: torch.Tensor


class MOSHead(nn.Module):
    """Regression MLP ``(B, in_dim) -> (B,)`` logits (before the sigmoid).

    Args:
        in_dim: input width (5·D).
        hidden: hidden width; 0 makes it a single linear layer (linear probing).
        dropout: dropout before the output layer.
    """

    def __init__(self, in_dim: int, hidden: int = 512, dropout: float = 0.1):
        super().__init__()
        self.in_dim, self.hidden, self.dropout = int(in_dim), int(hidden), float(dropout)
        if hidden > 0:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
                                     nn.Dropout(dropout), nn.Linear(hidden, 1))
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


COLOUR_STATS = ("luma_mean", "luma_std", "chroma", "log_r_g", "log_b_g", "lab_a", "lab_b", "clipped", "crushed")
"""Global statistics a MOS head with ``colour_stats`` sees next to the head features (see
:func:`colour_statistics`)."""


def colour_statistics(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` sRGB in ``[0, 1]`` -> ``(B, 9)`` global tone and colour statistics (differentiable).

    In the order of :data:`COLOUR_STATS`: mean and standard deviation of luma, mean chroma
    (distance of the channels from luma), log ratios of the linear-light red and blue means to
    green (grey world), mean CIELAB a* and b* (/ 20), and the share of near-white and near-black
    luma (soft, above 0.9 / below 0.1). ImageNet features are trained to be invariant to colour
    casts, which an ISP's white balance must not be; these give the MOS head the global colour
    directly. Each is scaled to about unit range.
    """
    from attiqa.utils.color import luma, srgb_to_lab, srgb_to_linear

    x = images.clamp(0, 1)
    y = luma(x)
    lin = srgb_to_linear(x).mean(dim=(2, 3)).clamp_min(1e-4)
    lab = srgb_to_lab(x).mean(dim=(2, 3))
    stats = [2 * y.mean(dim=(1, 2, 3)), 4 * y.std(dim=(1, 2, 3)), 8 * (x - y).abs().mean(dim=(1, 2, 3)),
             2 * torch.log(lin[:, 0] / lin[:, 1]), 2 * torch.log(lin[:, 2] / lin[:, 1]),
             lab[:, 1] / 20, lab[:, 2] / 20,
             4 * (F.relu(y - 0.9) / 0.1).mean(dim=(1, 2, 3)), 4 * (F.relu(0.1 - y) / 0.1).mean(dim=(1, 2, 3))]
    return torch.stack(stats, dim=1)


class QualityModel(nn.Module):
    """ATTIQA model with a MOS head.

    Args:
        attiqa: an :class:`attiqa.modeling.heads.ATTIQAModel` (images in ``[0, 1]``, normalises inside).
        head_hidden: hidden width of the MOS MLP (0 = linear).
        dropout: dropout of the MOS MLP.
        score_range: ``(lo, hi)`` MOS scale the sigmoid output is mapped to.
        colour_stats: the MOS head also sees :func:`colour_statistics` of the image (its input
            is then ``5·D + 9`` wide); off by default and in checkpoints that do not say so.

    Example:
        >>> from attiqa.modeling.heads import build_model
        >>> m = QualityModel(build_model(pretrained=False), score_range=(1.0, 5.0))
        >>> out = m(torch.rand(2, 3, 64, 64))
        >>> out.mos.shape, out.attributes.shape
        (torch.Size([2]), torch.Size([2, 5]))
    """

    def __init__(self, attiqa: nn.Module, head_hidden: int = 512, dropout: float = 0.1,
                 score_range: tuple[float, float] = (0.0, 1.0), colour_stats: bool = False):
        super().__init__()
        lo, hi = float(score_range[0]), float(score_range[1])
        if not hi > lo:
            raise ValueError(f"score_range must be (lo, hi) with hi > lo, got {score_range}")
        self.attiqa = attiqa
        n_attr = 5
        self.colour_stats = bool(colour_stats)
        extra = len(COLOUR_STATS) if self.colour_stats else 0
        self.mos_head = MOSHead(n_attr * int(attiqa.head_feature_dim) + extra, head_hidden, dropout)
        self.register_buffer("score_lo", torch.tensor(lo), persistent=True)
        self.register_buffer("score_hi", torch.tensor(hi), persistent=True)

    #: A higher MOS is a better image (the one declaration of the sign: ``QualityMetric``, the
    #: checkpoint metadata and the RL reward read it from here).
    lower_better = False

    @property
    def score_range(self) -> tuple[float, float]:
        return float(self.score_lo), float(self.score_hi)

    @property
    def config(self) -> dict:
        """JSON-able dict that rebuilds the model with :meth:`from_config`."""
        config = {"type": "QualityModel", "attiqa": dict(self.attiqa.config),
                  "mos_head": {"hidden": self.mos_head.hidden, "dropout": self.mos_head.dropout},
                  "score_range": list(self.score_range)}
        if self.colour_stats:
            config["mos_head"]["colour_stats"] = True
        return config

    @classmethod
    def from_config(cls, config: dict) -> "QualityModel":
        """Builds an untrained model of the architecture ``config`` describes (no weight download)."""
        from attiqa.modeling.heads import build_model

        if not isinstance(config, dict) or config.get("type") != "QualityModel":
            raise ValueError("the configuration does not describe an ATTIQA quality model")
        arch = dict(config["attiqa"])
        arch["pretrained"] = False
        attiqa = build_model(**arch)
        head = config.get("mos_head", {})
        return cls(attiqa, head_hidden=head.get("hidden", 512), dropout=head.get("dropout", 0.1),
                   score_range=tuple(config.get("score_range", (0.0, 1.0))),
                   colour_stats=bool(head.get("colour_stats", False)))

    def head_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> (what the MOS head sees: the concatenated head features
        ``(B, 5·D)``, followed by the :func:`colour_statistics` if ``colour_stats``; attributes ``(B, 5)``)."""
        out = self.attiqa(images)
        feats = out.head_features.flatten(1)
        if self.colour_stats:
            feats = torch.cat([feats, colour_statistics(images)], dim=1)
        return feats, out.scores

    def forward_unit(self, images: torch.Tensor) -> QualityOutput:
        """Like :meth:`forward` but the MOS is in ``(0, 1)`` (before mapping to ``score_range``)."""
        feats, attrs = self.head_features(images)
        return QualityOutput(torch.sigmoid(self.mos_head(feats)), attrs)

    def to_score(self, unit: torch.Tensor) -> torch.Tensor:
        """Maps ``(0, 1)`` to ``score_range``."""
        return self.score_lo + (self.score_hi - self.score_lo) * unit

    def to_unit(self, mos: torch.Tensor) -> torch.Tensor:
        """Maps ``score_range`` to ``[0, 1]``."""
        return (mos - self.score_lo) / (self.score_hi - self.score_lo)

    def forward(self, images: torch.Tensor) -> QualityOutput:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> :class:`QualityOutput` (differentiable)."""
        unit, attrs = self.forward_unit(images)
        return QualityOutput(self.to_score(unit), attrs)
