"""DeepLabV3 and DeepLabV3+ in plain PyTorch, key-compatible with VainF/DeepLabV3Plus-Pytorch.

A model has two children, ``backbone`` and ``classifier``, so the ``model_state``
of that project's released ``.pth`` files loads unchanged:

* ResNet backbones: torchvision layout (``backbone.conv1``, ``backbone.layer1`` ..);
  low-level features from ``layer1`` (256 channels, stride 4).
* MobileNetV2 backbone: ``backbone.low_level_features.{0..3}`` and
  ``backbone.high_level_features.{4..17}`` (torchvision indices kept, the final 1x1
  conv to 1280 channels dropped); VainF's padding convention
  (see :mod:`.mobilenetv2`). Low-level features: 24 channels, stride 4.
* DeepLabV3+ head: ``classifier.project`` (1x1 to 48 channels), ``classifier.aspp``
  (``convs.0`` 1x1, ``convs.1..3`` atrous 3x3, ``convs.4`` image pooling,
  ``project`` 1x1 to 256 + dropout), ``classifier.classifier`` (3x3 304->256, BN,
  ReLU, 1x1 to the classes).
* DeepLabV3 head: ``classifier.classifier`` = (ASPP, 3x3 conv, BN, ReLU, 1x1 conv).
* ``separable=True`` replaces every 3x3 conv of the head by a depthwise + pointwise
  pair (``.body.0`` / ``.body.1``, no bias), as that project's ``--separable_conv``.

Output stride 16: ASPP rates 6/12/18; 8: 12/24/36. Logits are upsampled
bilinearly (``align_corners=False``) to the input size. Inputs are RGB normalised
with the ImageNet mean and standard deviation for the released checkpoints.

Note for tiled prediction: the image-pooling branch (``aspp.convs.4``) averages
over the whole input, so a tile sees its own average, not the image's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .mobilenetv2 import MobileNetV2
from .resnet import resnet50, resnet101

__all__ = ["ASPP", "DeepLab", "DeepLabHead", "DeepLabHeadV3Plus", "MobileNetV2Backbone",
           "SeparableConv2d", "deeplab", "BACKBONES"]

BACKBONES = ("mobilenet", "resnet50", "resnet101")


class SeparableConv2d(nn.Module):
    """Depthwise (``body.0``) then pointwise (``body.1``) convolution."""

    def __init__(self, cin: int, cout: int, kernel: int, padding: int = 0, dilation: int = 1,
                 bias: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, kernel, padding=padding, dilation=dilation, groups=cin,
                      bias=bias),
            nn.Conv2d(cin, cout, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _conv3x3(cin: int, cout: int, dilation: int, separable: bool) -> nn.Module:
    if separable:
        return SeparableConv2d(cin, cout, 3, padding=dilation, dilation=dilation)
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False)


class _ASPPPooling(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear",
                             align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three atrous 3x3, image pooling; 256 channels."""

    def __init__(self, cin: int, rates: tuple[int, int, int], separable: bool = False,
                 channels: int = 256) -> None:
        super().__init__()
        branches: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(cin, channels, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True))]
        for rate in rates:
            branches.append(nn.Sequential(
                _conv3x3(cin, channels, rate, separable), nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True)))
        branches.append(_ASPPPooling(cin, channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(5 * channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabHeadV3Plus(nn.Module):
    """DeepLabV3+ decoder: ASPP on the deep features, fused with projected low-level ones."""

    def __init__(self, cin: int, low_level_channels: int, num_classes: int,
                 rates: tuple[int, int, int], separable: bool = False) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Conv2d(low_level_channels, 48, 1, bias=False), nn.BatchNorm2d(48),
            nn.ReLU(inplace=True))
        self.aspp = ASPP(cin, rates, separable)
        self.classifier = nn.Sequential(
            _conv3x3(304, 256, 1, separable), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1))

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low = self.project(features["low_level"])
        deep = self.aspp(features["out"])
        deep = F.interpolate(deep, size=low.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([low, deep], dim=1))


class DeepLabHead(nn.Module):
    """DeepLabV3 head: ASPP, 3x3 conv, BN, ReLU, 1x1 conv (as ``classifier.{0,1,2,4}``)."""

    def __init__(self, cin: int, num_classes: int, rates: tuple[int, int, int],
                 separable: bool = False) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            ASPP(cin, rates, separable), _conv3x3(256, 256, 1, separable), nn.BatchNorm2d(256),
            nn.ReLU(inplace=True), nn.Conv2d(256, num_classes, 1))

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(features["out"])


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 split as VainF does: ``low_level_features`` (blocks 0-3, stride 4) and
    ``high_level_features`` (blocks 4-17, 320 channels); original block indices kept."""

    def __init__(self, in_channels: int = 3, output_stride: int = 16) -> None:
        super().__init__()
        net = MobileNetV2(in_channels, output_stride, padding="vainf", last_conv=False)
        blocks = list(net.features.named_children())
        self.low_level_features = nn.Sequential(OrderedDict(blocks[:4]))
        self.high_level_features = nn.Sequential(OrderedDict(blocks[4:18]))
        self.channels = {"low_level": 24, "out": 320}

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low = self.low_level_features(x)
        return {"low_level": low, "out": self.high_level_features(low)}


class DeepLab(nn.Module):
    """A DeepLabV3 / V3+ network: ``backbone`` + ``classifier`` (see the module docstring).

    ``forward(x)`` takes ``(N, C, H, W)`` and returns logits ``(N, classes, H, W)``;
    any ``H`` and ``W`` work (sizes need not be multiples of the stride).
    """

    def __init__(self, backbone: str = "mobilenet", num_classes: int = 21, plus: bool = True,
                 output_stride: int = 16, in_channels: int = 3, separable: bool = False) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, not {backbone!r}")
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, not {output_stride}")
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        if backbone == "mobilenet":
            self.backbone: nn.Module = MobileNetV2Backbone(in_channels, output_stride)
            deep, low = 320, 24
        else:
            make = resnet50 if backbone == "resnet50" else resnet101
            self.backbone = make(in_channels, output_stride)
            deep, low = 2048, 256
        if plus:
            self.classifier: nn.Module = DeepLabHeadV3Plus(deep, low, num_classes, rates,
                                                           separable)
        else:
            self.classifier = DeepLabHead(deep, num_classes, rates, separable)
        self.backbone_name = backbone
        self.plus = plus
        self.output_stride = output_stride
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.separable = separable
        #: Inputs padded to a multiple of this keep the feature grids aligned (tiling).
        self.size_multiple = output_stride if backbone != "mobilenet" else 16
        for m in self.classifier.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(self.backbone, MobileNetV2Backbone):
            return self.backbone.forward_features(x)
        feats = self.backbone.forward_features(x)
        return {"low_level": feats["layer1"], "out": feats["layer4"]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        thin = self.backbone_name == "mobilenet" and min(size) < 3
        if thin:  # VainF's stem convolution is unpadded: it needs 3 px a side
            x = F.pad(x, (0, max(0, 3 - size[1]), 0, max(0, 3 - size[0])), mode="replicate")
        logits = self.classifier(self._features(x))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :size[0], :size[1]] if thin else logits


def deeplab(arch: str, num_classes: int = 21, output_stride: int = 16, in_channels: int = 3,
            separable: bool = False) -> DeepLab:
    """Build by VainF-style name: ``deeplabv3plus_mobilenet``, ``deeplabv3_resnet101``, ..."""
    head, _, backbone = arch.partition("_")
    if head not in ("deeplabv3", "deeplabv3plus") or backbone not in BACKBONES:
        raise ValueError(f"unknown DeepLab architecture {arch!r}")
    return DeepLab(backbone, num_classes, head == "deeplabv3plus", output_stride, in_channels,
                   separable)
