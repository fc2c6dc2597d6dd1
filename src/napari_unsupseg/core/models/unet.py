"""U-Nets in plain PyTorch: the classic encoder-decoder and U-Nets on MobileNetV2 and
ResNet encoders.

:class:`UNet` (Ronneberger et al. 2015, with "same" padding and optional BatchNorm):
``depth`` poolings, ``base_channels`` doubling at each level, transposed-conv
upsampling, skip concatenation, a 1x1 head. Keys: ``encoder.{i}.block.*``,
``up.{j}``, ``decoder.{j}.block.*``, ``head``.

:class:`MobileNetUNet` follows the TensorFlow image-segmentation tutorial (Oxford-IIIT
pets, 3 classes): a MobileNetV2 encoder whose skips are the expansion activations
of blocks 2, 4, 7 and 14 (Keras ``block_1/3/6/13_expand_relu``: 96, 144, 192, 576
channels at strides 2-16) and the projection conv of block 17 (Keras
``block_16_project``, 320 channels at stride 32); a decoder of four 3x3 stride-2
transposed convs (512, 256, 128, 64 channels, BN, ReLU) each followed by skip
concatenation, and a last 3x3 stride-2 transposed conv to the classes. Keys:
``encoder.features.*`` (torchvision layout, so ImageNet MobileNetV2 weights fit),
``decoder.{i}.{0,1}``, ``head``.

:class:`ResNetUNet` is the design of segmentation_models_pytorch's ``Unet`` (not its
keys) on a ResNet-18/34/50 encoder: the skips are the stem's activation (stride 2, 64
channels) and the outputs of ``layer1`` .. ``layer3``; five decoder blocks each upsample
2x (nearest), concatenate the skip and apply two 3x3 conv-BN-ReLU (256, 128, 64, 32, 16
channels; the last has no skip), then a 1x1 head. Keys: ``encoder.*`` (torchvision's
ResNet layout, so ImageNet weights fit), ``decoder.{i}.block.*``, ``head``.

All accept any input size: inputs are padded (reflection) to a multiple of
``size_multiple`` and the output is cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mobilenetv2 import MobileNetV2
from .resnet import resnet18, resnet34, resnet50

__all__ = ["UNet", "MobileNetUNet", "ResNetUNet", "RESNET_ENCODERS", "pad_to_multiple"]

#: The ResNets a :class:`ResNetUNet` can be built on, by torchvision's name.
RESNET_ENCODERS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two axes at the bottom/right to a multiple (reflection where it fits,
    else edge replication); returns the padded tensor and the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class _DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers.append(nn.Conv2d(c, cout, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UNet(nn.Module):
    """Classic U-Net.

    Parameters
    ----------
    in_channels, num_classes: input channels and output classes.
    depth: number of 2x poolings (the input is padded to a multiple of ``2**depth``).
    base_channels: channels of the first level (doubled at each level).
    batch_norm: BatchNorm after each 3x3 conv.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, depth: int = 4,
                 base_channels: int = 32, batch_norm: bool = True) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be at least 1")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList(
            _DoubleConv(in_channels if i == 0 else widths[i - 1], widths[i], batch_norm)
            for i in range(depth + 1))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
            for i in reversed(range(depth)))
        self.decoder = nn.ModuleList(
            _DoubleConv(2 * widths[i], widths[i], batch_norm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.base_channels = base_channels
        self.batch_norm = batch_norm
        self.size_multiple = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.size_multiple)
        skips = []
        for i, block in enumerate(self.encoder):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, block in zip(self.up, self.decoder, strict=True):
            x = block(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)[..., :h, :w]


def _upsample(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MobileNetUNet(nn.Module):
    """The MobileNetV2 U-Net of the TensorFlow pets tutorial (see the module docstring)."""

    SKIP_BLOCKS = (2, 4, 7, 14)
    SKIP_CHANNELS = (96, 144, 192, 576)
    DECODER_CHANNELS = (512, 256, 128, 64)

    def __init__(self, in_channels: int = 3, num_classes: int = 3) -> None:
        super().__init__()
        self.encoder = MobileNetV2(in_channels, 32, padding="torchvision", last_conv=False)
        layers = []
        cin = 320
        for cout, skip in zip(self.DECODER_CHANNELS, reversed(self.SKIP_CHANNELS), strict=True):
            layers.append(_upsample(cin, cout))
            cin = cout + skip
        self.decoder = nn.ModuleList(layers)
        self.head = nn.ConvTranspose2d(cin, num_classes, 3, stride=2, padding=1,
                                       output_padding=1)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.size_multiple = 32

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five skip maps, finest first (strides 2, 4, 8, 16, 32)."""
        skips = []
        for index, block in enumerate(self.encoder.features):
            if index in self.SKIP_BLOCKS:
                expanded = block.conv[0](x)
                skips.append(expanded)
                x = block.conv[1:](expanded)  # first block of a stage: no residual
            elif index == 17:
                skips.append(block.conv[2](block.conv[1](block.conv[0](x))))
                break
            else:
                x = block(x)
        return skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.size_multiple)
        skips = self.encode(x)
        y = skips.pop()
        for up in self.decoder:
            y = torch.cat([up(y), skips.pop()], dim=1)
        return self.head(y)[..., :h, :w]


class ResNetUNet(nn.Module):
    """A U-Net decoder on a torchvision-layout ResNet (see the module docstring);
    ``encoder``: ``resnet18``, ``resnet34`` or ``resnet50``."""

    DECODER_CHANNELS = (256, 128, 64, 32, 16)

    def __init__(self, encoder: str = "resnet34", in_channels: int = 3,
                 num_classes: int = 2) -> None:
        super().__init__()
        if encoder not in RESNET_ENCODERS:
            raise ValueError(f"encoder must be one of {tuple(RESNET_ENCODERS)}, not {encoder!r}")
        self.encoder = RESNET_ENCODERS[encoder](in_channels)
        widths = self.encoder.channels
        skips = (widths["layer3"], widths["layer2"], widths["layer1"], widths["stem"], 0)
        cin = widths["layer4"]
        blocks = []
        for cout, skip in zip(self.DECODER_CHANNELS, skips, strict=True):
            blocks.append(_DoubleConv(cin + skip, cout, batch_norm=True))
            cin = cout
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, num_classes, 1)
        self.encoder_name = encoder
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.size_multiple = 32

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem's activation (stride 2) and ``layer1`` .. ``layer4`` (strides 4-32)."""
        enc = self.encoder
        stem = enc.relu(enc.bn1(enc.conv1(x)))
        maps = [stem]
        x = enc.maxpool(stem)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(enc, name)(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.size_multiple)
        skips = self.encode(x)
        y = skips.pop()
        for block in self.decoder:
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            if skips:
                y = torch.cat([y, skips.pop()], dim=1)
            y = block(y)
        return self.head(y)[..., :h, :w]
