"""Segmentation networks in plain PyTorch and their checkpoints.

Importing this package does not import torch; the submodules do:

* :mod:`.resnet`, :mod:`.mobilenetv2` - backbones with torchvision key layouts,
  ``forward_features`` returning intermediate maps (reusable by other engines).
* :mod:`.deeplab` - DeepLabV3 / V3+ (MobileNetV2, ResNet-50, ResNet-101), key-compatible
  with VainF/DeepLabV3Plus-Pytorch checkpoints.
* :mod:`.unet` - classic U-Net and the MobileNetV2 U-Net of the TensorFlow pets tutorial.
* :mod:`.checkpoints` - loading (VainF dict, bare / ``module.`` state dicts, TorchScript,
  this project's format), architecture detection, saving.
* :mod:`.presets` - class names, palettes, :class:`~.presets.ModelConfig` (no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .presets import ARCHITECTURES, DEEPLAB_ARCHITECTURES, ModelConfig

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ARCHITECTURES", "DEEPLAB_ARCHITECTURES", "ModelConfig", "build_model"]


def build_model(config: ModelConfig) -> nn.Module:
    """A randomly initialised network for ``config`` (in eval mode)."""
    from ..errors import InputError

    arch = config.architecture
    if arch in DEEPLAB_ARCHITECTURES:
        from .deeplab import deeplab

        model = deeplab(arch, config.num_classes, config.output_stride, config.in_channels,
                        config.separable)
    elif arch == "unet":
        from .unet import UNet

        model = UNet(config.in_channels, config.num_classes, config.depth,
                     config.base_channels, config.batch_norm)
    elif arch == "unet_mobilenet":
        from .unet import MobileNetUNet

        model = MobileNetUNet(config.in_channels, config.num_classes)
    else:
        raise InputError(
            f"Unknown architecture '{arch}'; use one of {', '.join(ARCHITECTURES)}.")
    return model.eval()
