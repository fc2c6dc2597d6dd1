"""MobileNetV2 in plain PyTorch, with torchvision's ``features`` key layout.

``features.0`` is the stem (3x3 stride-2 conv, BN, ReLU6 as ``0.0`` / ``0.1``),
``features.1`` .. ``features.17`` the inverted-residual blocks and ``features.18``
the final 1x1 conv to 1280 channels. A block's ``conv`` holds ``0.0/0.1`` (1x1
expand conv + BN, absent in block 1 whose expansion is 1), ``1.0/1.1`` (3x3
depthwise conv + BN), ``2`` (1x1 projection conv) and ``3`` (BN); in block 1 the
indices shift down by one (``0.0/0.1``, ``1``, ``2``). Activations are ReLU6.

Two padding conventions with the same keys and weights:

* ``padding="vainf"`` (default), as VainF/DeepLabV3Plus-Pytorch: convolutions are
  unpadded, a fixed zero padding (1 px, or ``dilation`` px) is applied to the
  *input* of each inverted-residual block, and the stem conv is unpadded (an
  ``H`` x ``W`` input gives ``(H-3)//2+1`` stem rows). Needed to reproduce the
  outputs of that project's checkpoints.
* ``padding="torchvision"``: "same" padding inside each 3x3 conv (ImageNet
  classifier behaviour).

``output_stride`` 32, 16 or 8: once the running stride reaches it, later strides
become dilation (the first block of a stage keeps the previous dilation).

Example::

    from napari_unsupseg.core.models.mobilenetv2 import mobilenet_v2
    net = mobilenet_v2(in_channels=1, output_stride=16)
    feats = net.forward_features(x)       # {'low_level': stride 4 / 24 ch, 'out': 320 ch}
    every = net.forward_features(x, all_blocks=True)   # {'0': ..., '17': ...}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBNReLU", "InvertedResidual", "MobileNetV2", "mobilenet_v2", "SETTINGS",
           "make_divisible"]

# expansion t, channels c, repeats n, stride s (MobileNetV2 paper, table 2)
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))

PADDINGS = ("vainf", "torchvision")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never dropping by more than 10 %."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def _fixed_padding(kernel: int, dilation: int) -> tuple[int, int, int, int]:
    total = kernel + (kernel - 1) * (dilation - 1) - 1
    begin = total // 2
    return (begin, total - begin, begin, total - begin)


class ConvBNReLU(nn.Sequential):
    """Conv (no bias), BatchNorm, ReLU6 as children ``0``, ``1``, ``2``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1, padding: int = 0) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups,
                      bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise (3x3), project (1x1, linear); residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, dilation: int, expand_ratio: int,
                 padding: str = "vainf") -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_residual = stride == 1 and cin == cout
        self.padding_mode = padding
        inner_pad = 0 if padding == "vainf" else dilation
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU(hidden, hidden, 3, stride, dilation, groups=hidden, padding=inner_pad),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.input_padding = _fixed_padding(3, dilation)
        self.has_expand = expand_ratio != 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = F.pad(x, self.input_padding) if self.padding_mode == "vainf" else x
        out = self.conv(inner)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 feature extractor (``features.0`` .. ``features.18``; no classifier).

    Parameters
    ----------
    in_channels: input channels (any count; 3 for ImageNet / DeepLab weights).
    output_stride: 32, 16 or 8.
    width_mult: channel multiplier (1.0 = the standard network).
    padding: ``"vainf"`` or ``"torchvision"`` (see the module docstring).
    last_conv: keep ``features.18`` (the 1x1 conv to 1280 channels).
    """

    def __init__(self, in_channels: int = 3, output_stride: int = 32, width_mult: float = 1.0,
                 padding: str = "vainf", last_conv: bool = True) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, not {output_stride}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, not {padding!r}")
        self.output_stride = output_stride
        self.padding = padding
        self.in_channels = in_channels
        channels = make_divisible(32 * width_mult)
        stem_pad = 0 if padding == "vainf" else 1
        features: list[nn.Module] = [ConvBNReLU(in_channels, channels, 3, 2, padding=stem_pad)]
        current_stride, dilation = 2, 1
        self.channels: dict[str, int] = {"0": channels}
        for t, c, n, s in SETTINGS:
            out_channels = make_divisible(c * width_mult)
            previous_dilation = dilation
            if current_stride == output_stride:
                stride, dilation = 1, dilation * s
            else:
                stride, current_stride = s, current_stride * s
            for i in range(n):
                if i == 0:
                    block = InvertedResidual(channels, out_channels, stride, previous_dilation, t,
                                             padding)
                else:
                    block = InvertedResidual(channels, out_channels, 1, dilation, t, padding)
                features.append(block)
                channels = out_channels
                self.channels[str(len(features) - 1)] = channels
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        if last_conv:
            features.append(ConvBNReLU(channels, self.last_channel, kernel=1))
            self.channels["18"] = self.last_channel
        self.features = nn.Sequential(*features)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor, all_blocks: bool = False
                         ) -> dict[str, torch.Tensor]:
        """``low_level`` (after ``features.3``: stride 4, 24 channels at width 1) and ``out``
        (after ``features.17``: 320 channels); with ``all_blocks`` every block's output keyed
        by its index as a string."""
        out: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            if index == 18:
                break
            x = module(x)
            if all_blocks:
                out[str(index)] = x
            if index == 3:
                out["low_level"] = x
        out["out"] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All of ``features`` (1280 channels when ``last_conv``)."""
        return self.features(x)


def mobilenet_v2(in_channels: int = 3, output_stride: int = 32, width_mult: float = 1.0,
                 padding: str = "vainf", last_conv: bool = True) -> MobileNetV2:
    """MobileNetV2 (see :class:`MobileNetV2`)."""
    return MobileNetV2(in_channels, output_stride, width_mult, padding, last_conv)
