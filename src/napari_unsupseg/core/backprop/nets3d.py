"""The torch side of the backprop segmenter on a volume: 3-D versions of the two networks
and a trainer for one ``(1, C, Z, Y, X)`` volume.

The networks are the plane networks of :mod:`.nets` layer for layer, with Conv3d and
BatchNorm3d: rather than the 2-D networks behind one 3-D first layer, so that every
spatial layer sees the neighbouring planes (an object's label is decided by its whole
3-D neighbourhood, as a pixel's is by its 2-D one) and batch norm pools its statistics
over the whole volume, as joint mode does over the planes of a stack.

On an anisotropic stack (planes at least :data:`ANISOTROPY` pixel widths apart) every
spatial layer but the last has a (1, 3, 3) kernel: planes that far apart look different
enough that mixing them from the first layer blurs objects along z; the last spatial
layer still looks one plane up and down.

Imported lazily, from inside the engine (importing the parameters never imports torch).
"""

from __future__ import annotations

import torch
from torch import nn

from .nets import Trainer

#: Planes this many pixel widths apart (or more) count as anisotropic.
ANISOTROPY = 2.0

Kernel = tuple[int, int, int]


def spatial_kernels(n_spatial: int, spacing: tuple[float, float, float]) -> list[Kernel]:
    """The kernel of each of ``n_spatial`` spatial layers for a voxel ``spacing`` (z, y, x)."""
    flat = spacing[0] >= ANISOTROPY * min(spacing[1], spacing[2])
    first: Kernel = (1, 3, 3) if flat else (3, 3, 3)
    return [first] * (n_spatial - 1) + [(3, 3, 3)]


def _conv(c_in: int, c_out: int, kernel: Kernel | int) -> nn.Conv3d:
    size = (kernel,) * 3 if isinstance(kernel, int) else kernel
    return nn.Conv3d(c_in, c_out, size, padding=tuple(k // 2 for k in size))


def kanezaki_net3d(
    in_channels: int, n_features: int, n_conv: int, spacing: tuple[float, float, float]
) -> nn.Sequential:
    """Kanezaki's network in 3-D: ``n_conv`` conv-ReLU-BN blocks, then 1x1x1 conv + BN."""
    layers: list[nn.Module] = []
    channels = in_channels
    for kernel in spatial_kernels(n_conv, spacing):
        layers += [_conv(channels, n_features, kernel), nn.ReLU(inplace=True),
                   nn.BatchNorm3d(n_features)]
        channels = n_features
    layers += [_conv(n_features, n_features, 1), nn.BatchNorm3d(n_features)]
    return nn.Sequential(*layers)


def fast_net3d(
    in_channels: int, n_features: int, spacing: tuple[float, float, float]
) -> nn.Sequential:
    """The fast network in 3-D: spatial C->64, 1x1x1 64->F, spatial F->64, 1x1x1 64->F."""
    first, second = spatial_kernels(2, spacing)
    widths = [(in_channels, 64, first), (64, n_features, 1), (n_features, 64, second),
              (64, n_features, 1)]
    layers: list[nn.Module] = []
    for index, (c_in, c_out, kernel) in enumerate(widths):
        layers += [_conv(c_in, c_out, kernel), nn.BatchNorm3d(c_out)]
        if index < len(widths) - 1:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def build_network3d(
    name: str, in_channels: int, n_features: int, n_conv: int,
    spacing: tuple[float, float, float],
) -> nn.Sequential:
    if name == "kanezaki":
        return kanezaki_net3d(in_channels, n_features, n_conv, spacing)
    return fast_net3d(in_channels, n_features, spacing)


class VolumeTrainer(Trainer):
    """The plane trainer's step, vote and labelling on one volume ``(1, C, Z, Y, X)``.

    The plane trainer reads its label shape from a ``(n, c, h, w)`` batch: it is given the
    volume with y and x folded into one axis, then the real volume and shape. Its
    continuity term covers two axes; here it covers z, y and x."""

    def __init__(self, model: nn.Module, volume: torch.Tensor, superpixels: torch.Tensor | None,
                 n_superpixels: int, *, lr: float, momentum: float, w_con: float) -> None:
        folded = volume.flatten(3)
        super().__init__(model, folded, superpixels, n_superpixels, lr=lr, momentum=momentum,
                         w_sim=1.0, w_con=0.0)
        self.images = volume
        self.shape = (volume.shape[0], *volume.shape[2:])
        self.w_con_3d = w_con

    def _loss(self, response: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = super()._loss(response, target)
        if self.w_con_3d > 0:
            steps = [response.diff(dim=axis).abs().mean() for axis in (2, 3, 4)
                     if response.shape[axis] > 1]
            loss = loss + self.w_con_3d * sum(steps)
        return loss

