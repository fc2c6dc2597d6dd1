"""The architecture registry: every network this package can build, as typed data.

Importing this module does not import torch; each ``build`` imports its module when
called. :data:`ARCHS` maps an architecture name to an :class:`Arch` that says how to
build the network from a :class:`~.presets.ModelConfig`, which input sizes it takes,
how tiles should be aligned, and which weight gives its class count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..base.errors import InputError
from .presets import ModelConfig

if TYPE_CHECKING:
    from torch import nn


def _any_size(config: ModelConfig) -> int:
    return 1


@dataclass(frozen=True)
class Arch:
    """One buildable architecture.

    ``size_multiple``: input sides must be a multiple of this (tiles are padded up to it);
    1 for networks that take any size (DeepLab, FCN, LR-ASPP), whose inputs are never
    padded. ``tile_align``: tile starts on multiples of this keep each tile's feature grid
    on the whole image's. ``classes_key`` / ``classes_axis``: the weight whose shape gives
    the class count (axis 1 for a transposed convolution, whose weight is (in, out, k, k)).
    """

    build: Callable[[ModelConfig], nn.Module]
    family: str
    classes_key: str
    classes_axis: int = 0
    size_multiple: Callable[[ModelConfig], int] = _any_size
    tile_align: Callable[[ModelConfig], int] = _any_size


def _deeplab(config: ModelConfig) -> nn.Module:
    from .deeplab import deeplab

    return deeplab(config.architecture, config.num_classes, config.output_stride,
                   config.in_channels, config.separable)


def _unet(config: ModelConfig) -> nn.Module:
    from .unet import UNet

    return UNet(config.in_channels, config.num_classes, config.depth, config.base_channels,
                config.batch_norm)


def _unet_mobilenet(config: ModelConfig) -> nn.Module:
    from .unet import MobileNetUNet

    return MobileNetUNet(config.in_channels, config.num_classes)


def _unet_resnet(config: ModelConfig) -> nn.Module:
    from .unet import ResNetUNet

    return ResNetUNet(config.architecture.removeprefix("unet_"), config.in_channels,
                      config.num_classes)


def _torchvision(config: ModelConfig) -> nn.Module:
    from .torchvision_seg import torchvision_segmentation

    return torchvision_segmentation(config.architecture, config.num_classes,
                                    config.in_channels)


def _fcn_vgg16(config: ModelConfig) -> nn.Module:
    from .fcn import FCNVGG16

    return FCNVGG16(int(config.architecture[3:5].rstrip("s")), config.num_classes,
                    config.in_channels)


def _deeplab_align(config: ModelConfig) -> int:
    # VainF's MobileNetV2 pads every block's input: its grid repeats every 16 px.
    return 16 if config.architecture.endswith("mobilenet") else config.output_stride


_DEEPLAB_FAMILIES = {
    "deeplabv3plus": ("DeepLabV3+", "classifier.classifier.3.weight"),
    "deeplabv3": ("DeepLabV3", "classifier.classifier.4.weight"),
}
_DEEPLAB_BACKBONES = {"mobilenet": "MobileNetV2", "resnet50": "ResNet-50",
                      "resnet101": "ResNet-101"}

ARCHS: dict[str, Arch] = {
    f"{head}_{backbone}": Arch(
        _deeplab, f"{title} {bname} (DeepLabV3Plus-Pytorch layout)", key,
        tile_align=_deeplab_align)
    for head, (title, key) in _DEEPLAB_FAMILIES.items()
    for backbone, bname in _DEEPLAB_BACKBONES.items()
}
ARCHS.update({
    "unet": Arch(_unet, "U-Net", "head.weight", size_multiple=lambda c: 2 ** c.depth,
                 tile_align=lambda c: 2 ** c.depth),
    "unet_mobilenet": Arch(_unet_mobilenet, "MobileNetV2 U-Net (TensorFlow pets tutorial)",
                           "head.weight", classes_axis=1, size_multiple=lambda c: 32,
                           tile_align=lambda c: 32),
    **{f"unet_resnet{n}": Arch(
        _unet_resnet, f"ResNet-{n} U-Net (torchvision encoder keys)", "head.weight",
        size_multiple=lambda c: 32, tile_align=lambda c: 32)
       for n in (18, 34, 50)},
    "torchvision_fcn_resnet50": Arch(
        _torchvision, "FCN ResNet-50 (torchvision layout)", "classifier.4.weight",
        tile_align=lambda c: 8),
    "torchvision_fcn_resnet101": Arch(
        _torchvision, "FCN ResNet-101 (torchvision layout)", "classifier.4.weight",
        tile_align=lambda c: 8),
    "torchvision_deeplabv3_resnet50": Arch(
        _torchvision, "DeepLabV3 ResNet-50 (torchvision layout)", "classifier.4.weight",
        tile_align=lambda c: 8),
    "torchvision_deeplabv3_resnet101": Arch(
        _torchvision, "DeepLabV3 ResNet-101 (torchvision layout)", "classifier.4.weight",
        tile_align=lambda c: 8),
    "torchvision_deeplabv3_mobilenet_v3_large": Arch(
        _torchvision, "DeepLabV3 MobileNetV3-Large (torchvision layout)",
        "classifier.4.weight", tile_align=lambda c: 16),
    "torchvision_lraspp_mobilenet_v3_large": Arch(
        _torchvision, "LR-ASPP MobileNetV3-Large (torchvision layout)",
        "classifier.low_classifier.weight", tile_align=lambda c: 16),
})
ARCHS.update({
    f"fcn{n}s_vgg16": Arch(_fcn_vgg16, f"FCN-{n}s VGG-16 (wkentaro/pytorch-fcn layout)",
                           "score_fr.weight", tile_align=lambda c: 32)
    for n in (32, 16, 8)
})

def input_geometry(config: ModelConfig, net: object = None
                   ) -> tuple[int, int, tuple[int, int] | None]:
    """(pad inputs to a multiple of, align tile starts on, fixed input size or None) for a
    model: from the registry, else from the network (TorchScript run as is, ONNX)."""
    arch = ARCHS.get(config.architecture)
    if arch is not None:
        return arch.size_multiple(config), arch.tile_align(config), None
    fixed = (int(config.input_size[0]), int(config.input_size[1])) if config.input_size \
        else None
    multiple = int(getattr(net, "size_multiple", 1) or 1)
    return multiple, multiple, fixed


#: Names of the architectures with DeepLabV3Plus-Pytorch's layout (output stride 8 or 16).
DEEPLAB_ARCHITECTURES = tuple(f"{h}_{b}" for h in _DEEPLAB_FAMILIES for b in _DEEPLAB_BACKBONES)
ARCHITECTURES = tuple(ARCHS)


def build_model(config: ModelConfig) -> nn.Module:
    """A randomly initialised network for ``config`` (in eval mode)."""
    arch = ARCHS.get(config.architecture)
    if arch is None:
        raise InputError(f"Unknown architecture '{config.architecture}'; use one of "
                         f"{', '.join(ARCHITECTURES)}.")
    return arch.build(config).eval()


def build_from_config(**config: object) -> nn.Module:
    """:func:`build_model` from the fields of a :class:`ModelConfig` as keywords (what a
    bioimage.io package written here names as its architecture)."""
    return build_model(ModelConfig.from_mapping(dict(config)))
