"""ResNet backbones in plain PyTorch, with torchvision's module and key layout.

The state-dict keys are those of ``torchvision.models.resnet*`` without the
classification head (``conv1``, ``bn1``, ``layer1`` .. ``layer4``, with
``downsample.0`` / ``downsample.1`` shortcut projections), so ImageNet weights
and the backbones of DeepLabV3(+) checkpoints (VainF/DeepLabV3Plus-Pytorch,
prefixed ``backbone.``) load unchanged. The stride sits on the 3x3 convolution
of a bottleneck ("ResNet v1.5"), as in torchvision.

``output_stride`` 32 is the classification network; 16 replaces the stride of
``layer4`` by dilation 2, 8 replaces those of ``layer3`` and ``layer4`` (dilation
2 and 4), as torchvision's ``replace_stride_with_dilation``. The first block of a
dilated layer keeps the previous dilation, like torchvision.

Example (another engine using a backbone)::

    from napari_unsupseg.core.models.resnet import resnet50
    net = resnet50(in_channels=4, output_stride=8)
    feats = net.forward_features(x)   # {'stem', 'layer1', ..., 'layer4'}
    feats["layer1"]  # stride 4, 256 channels; feats["layer4"]: stride 8, 2048 channels
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "resnet101"]


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation,
                     groups=groups, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided / dilated), 1x1 expand by 4 (ResNet-50/101)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet feature extractor (no pooling / fully-connected head).

    Parameters
    ----------
    block, layers:
        Block type and number of blocks per stage (``Bottleneck, (3, 4, 6, 3)`` = ResNet-50).
    in_channels:
        Input channels (3 for RGB weights; any count for a new model).
    output_stride:
        32, 16 or 8; strides replaced by dilation as described in the module docstring.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, ...],
                 in_channels: int = 3, output_stride: int = 32) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, not {output_stride}")
        dilate = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}[
            output_stride]
        self.output_stride = output_stride
        self.in_channels = in_channels
        self.inplanes = 64
        self.dilation = 1
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, dilate[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, dilate[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, dilate[2])
        self.channels = {"stem": 64, "layer1": 64 * block.expansion,
                         "layer2": 128 * block.expansion, "layer3": 256 * block.expansion,
                         "layer4": 512 * block.expansion}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1,
                    dilate: bool = False) -> nn.Sequential:
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, dilation=self.dilation))
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All intermediate maps: ``stem`` (stride 4, after max-pool), ``layer1`` (4),
        ``layer2`` (8), ``layer3`` (16 or 8), ``layer4`` (32, 16 or 8)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = {"stem": x}
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            out[name] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (``layer4``)."""
        return self.forward_features(x)["layer4"]


def resnet18(in_channels: int = 3, output_stride: int = 32) -> ResNet:
    """ResNet-18 (BasicBlock, 2-2-2-2; layer4 has 512 channels)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, output_stride)


def resnet34(in_channels: int = 3, output_stride: int = 32) -> ResNet:
    """ResNet-34 (BasicBlock, 3-4-6-3; layer4 has 512 channels)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), in_channels, output_stride)


def resnet50(in_channels: int = 3, output_stride: int = 32) -> ResNet:
    """ResNet-50 (Bottleneck, 3-4-6-3; layer1 256, layer4 2048 channels)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, output_stride)


def resnet101(in_channels: int = 3, output_stride: int = 32) -> ResNet:
    """ResNet-101 (Bottleneck, 3-4-23-3; layer1 256, layer4 2048 channels)."""
    return ResNet(Bottleneck, (3, 4, 23, 3), in_channels, output_stride)
