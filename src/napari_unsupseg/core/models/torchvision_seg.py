"""torchvision's semantic segmentation models in plain PyTorch, with its state-dict keys.

The weight files of ``torchvision.models.segmentation`` load unchanged (this package
never imports torchvision):

* ``fcn_resnet50`` / ``fcn_resnet101``: ResNet at output stride 8 (layer3 and layer4
  dilated), ``classifier`` = FCN head (3x3 conv to in/4 channels, BN, ReLU, dropout,
  1x1 conv to the classes).
* ``deeplabv3_resnet50`` / ``deeplabv3_resnet101``: the same backbone and a DeepLabV3
  head (ASPP with rates 12/24/36, 3x3 conv, BN, ReLU, 1x1 conv) as ``classifier.0..4``.
* ``deeplabv3_mobilenet_v3_large``: MobileNetV3-Large features 0..16 (the last stage
  dilated, output stride 16) and the same head on its 960 channels.
* ``lraspp_mobilenet_v3_large``: the Lite R-ASPP head on features 4 (40 channels,
  stride 8) and 16 (960 channels, stride 16).

Logits are upsampled bilinearly (``align_corners=False``) to the input size; any input
size works. The auxiliary heads (``aux_classifier.*``, ``aux_loss=True``) only serve
training: :func:`~.layouts.detect_config` recognises them and they are dropped on loading.
Inputs are RGB normalised with the ImageNet mean and standard deviation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .deeplab import ASPP
from .mobilenetv2 import make_divisible
from .resnet import resnet50, resnet101

__all__ = ["MobileNetV3Large", "TorchvisionSegmentation", "torchvision_segmentation",
           "FCNHead", "LRASPPHead"]

# input channels, kernel, expanded channels, output channels, squeeze-excitation,
# hard-swish, stride (torchvision's mobilenet_v3_large table)
_V3_LARGE = (
    (16, 3, 16, 16, False, False, 1), (16, 3, 64, 24, False, False, 2),
    (24, 3, 72, 24, False, False, 1), (24, 5, 72, 40, True, False, 2),
    (40, 5, 120, 40, True, False, 1), (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2), (80, 3, 200, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1), (80, 3, 184, 80, False, True, 1),
    (80, 3, 480, 112, True, True, 1), (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2), (160, 5, 960, 160, True, True, 1),
    (160, 5, 960, 160, True, True, 1),
)
_DILATED_FROM = 12  # blocks from the C4 stage on trade their stride for dilation 2
LOW_INDEX, HIGH_INDEX = 4, 16  # C2 (40 channels, stride 8) and C5 (960, stride 16)


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, dilation: int = 1,
             groups: int = 1, act: type[nn.Module] | None = None) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` (keys ``0`` conv, ``1`` BN, eps 1e-3)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2 * dilation, dilation,
                  groups, bias=False),
        nn.BatchNorm2d(cout, eps=0.001, momentum=0.01)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class _SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class _InvertedResidualV3(nn.Module):
    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, hs: bool,
                 stride: int, dilation: int) -> None:
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(_conv_bn(cin, expanded, act=act))
        layers.append(_conv_bn(expanded, expanded, kernel, 1 if dilation > 1 else stride,
                               dilation, expanded, act))
        if se:
            layers.append(_SqueezeExcitation(expanded, make_divisible(expanded // 4, 8)))
        layers.append(_conv_bn(expanded, cout))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


class MobileNetV3Large(nn.Sequential):
    """MobileNetV3-Large ``features`` (children ``0`` .. ``16``, torchvision keys).

    ``dilated=True`` (segmentation) keeps output stride 16: the last stage's stride
    becomes dilation 2."""

    def __init__(self, in_channels: int = 3, dilated: bool = True) -> None:
        layers: list[nn.Module] = [_conv_bn(in_channels, 16, 3, 2, act=nn.Hardswish)]
        for index, (cin, k, exp, cout, se, hs, stride) in enumerate(_V3_LARGE):
            dilation = 2 if dilated and index >= _DILATED_FROM else 1
            layers.append(_InvertedResidualV3(cin, k, exp, cout, se, hs, stride, dilation))
        layers.append(_conv_bn(160, 960, act=nn.Hardswish))
        super().__init__(*layers)
        self.in_channels = in_channels

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``low``: block 4 (40 channels, stride 8); ``out``: block 16 (960, stride 16)."""
        out = {}
        for index, layer in enumerate(self):
            x = layer(x)
            if index == LOW_INDEX:
                out["low"] = x
        out["out"] = x
        return out


class FCNHead(nn.Sequential):
    """3x3 conv to ``cin // 4``, BN, ReLU, dropout, 1x1 conv to the classes."""

    def __init__(self, cin: int, num_classes: int) -> None:
        inter = cin // 4
        super().__init__(nn.Conv2d(cin, inter, 3, padding=1, bias=False),
                         nn.BatchNorm2d(inter), nn.ReLU(), nn.Dropout(0.1),
                         nn.Conv2d(inter, num_classes, 1))


class _DeepLabV3Head(nn.Sequential):
    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__(ASPP(cin, (12, 24, 36)), nn.Conv2d(256, 256, 3, padding=1, bias=False),
                         nn.BatchNorm2d(256), nn.ReLU(), nn.Conv2d(256, num_classes, 1))


class LRASPPHead(nn.Module):
    """Lite R-ASPP: gated 1x1 branch on the deep features, plus a 1x1 on the low ones."""

    def __init__(self, low: int, high: int, num_classes: int, inter: int = 128) -> None:
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(high, inter, 1, bias=False), nn.BatchNorm2d(inter),
                                 nn.ReLU(inplace=True))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high, inter, 1, bias=False),
                                   nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)


class TorchvisionSegmentation(nn.Module):
    """``backbone`` + ``classifier`` returning logits at the input size (not a dict)."""

    def __init__(self, head: str, backbone: str, num_classes: int = 21,
                 in_channels: int = 3) -> None:
        super().__init__()
        if backbone == "mobilenet_v3_large":
            self.backbone: nn.Module = MobileNetV3Large(in_channels)
            deep = 960
        elif backbone in ("resnet50", "resnet101"):
            make = resnet50 if backbone == "resnet50" else resnet101
            self.backbone = make(in_channels, output_stride=8)
            deep = 2048
        else:
            raise ValueError(f"unknown torchvision backbone {backbone!r}")
        if head == "fcn" and backbone != "mobilenet_v3_large":
            self.classifier: nn.Module = FCNHead(deep, num_classes)
        elif head == "deeplabv3":
            self.classifier = _DeepLabV3Head(deep, num_classes)
        elif head == "lraspp" and backbone == "mobilenet_v3_large":
            self.classifier = LRASPPHead(40, deep, num_classes)
        else:
            raise ValueError(f"torchvision has no {head} on {backbone}")
        self.head = head
        self.num_classes = num_classes
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if isinstance(self.backbone, MobileNetV3Large):
            feats = self.backbone.forward_features(x)
        else:
            layers = self.backbone.forward_features(x)
            feats = {"out": layers["layer4"]}
        if self.head == "lraspp":
            logits = self.classifier(feats["low"], feats["out"])
        else:
            logits = self.classifier(feats["out"])
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def torchvision_segmentation(arch: str, num_classes: int = 21,
                             in_channels: int = 3) -> TorchvisionSegmentation:
    """Build by this package's name, e.g. ``torchvision_deeplabv3_mobilenet_v3_large``."""
    name = arch.removeprefix("torchvision_")
    head, _, backbone = name.partition("_")
    return TorchvisionSegmentation(head, backbone, num_classes, in_channels)
