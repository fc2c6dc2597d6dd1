"""One adapter per external weight layout: which architecture a state dict was made for.

Each :class:`Layout` recognises the keys of one project's state dicts and returns the
:class:`~.presets.ModelConfig` (architecture, classes, input channels, preprocessing)
they fit, or ``None``; ``adapt`` turns its keys into this package's (e.g. dropping
torchvision's training-only auxiliary head). :data:`LAYOUTS` is tried in order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..base.errors import InputError
from .architectures import ARCHS
from .fcn import caffe_normalisation
from .presets import ModelConfig

State = Mapping[str, Any]  # name -> torch.Tensor


def _max_index(keys: set[str], pattern: str) -> int:
    regex = re.compile(pattern)
    found = [int(m.group(1)) for k in keys if (m := regex.match(k))]
    return max(found) if found else -1


def resnet_variant(keys: set[str], prefix: str = "") -> str | None:
    """Which torchvision ResNet (``resnet18`` .. ``resnet101``) the keys under ``prefix``
    are, or ``None``: the block type (a bottleneck has ``conv3``) and the blocks in
    ``layer3`` tell them apart."""
    if prefix + "conv1.weight" not in keys:
        return None
    blocks = _max_index(keys, re.escape(prefix) + r"layer3\.(\d+)\.") + 1
    bottleneck = prefix + "layer1.0.conv3.weight" in keys
    return {(2, False): "resnet18", (6, False): "resnet34", (6, True): "resnet50",
            (23, True): "resnet101"}.get((blocks, bottleneck))


def _resnet_depth(keys: set[str], prefix: str) -> str:
    blocks = _max_index(keys, re.escape(prefix) + r"layer3\.(\d+)\.") + 1
    depth = resnet_variant(keys, prefix)
    if depth not in ("resnet50", "resnet101"):
        raise InputError(
            f"The checkpoint's ResNet has {blocks} blocks in layer3; only ResNet-50 (6) "
            "and ResNet-101 (23) backbones are supported.")
    return depth


def _vainf(state: State) -> ModelConfig | None:
    """VainF/DeepLabV3Plus-Pytorch: ``backbone.*`` + ``classifier.classifier.*``."""
    keys = set(state)
    plus = "classifier.project.0.weight" in keys
    if not plus and not any(k.startswith("classifier.classifier.0.convs.") for k in keys):
        return None
    if "backbone.low_level_features.0.0.weight" in keys:
        backbone, first = "mobilenet", "backbone.low_level_features.0.0.weight"
    elif "backbone.conv1.weight" in keys:
        backbone, first = _resnet_depth(keys, "backbone."), "backbone.conv1.weight"
    else:
        return None
    last = "classifier.classifier.3.weight" if plus else "classifier.classifier.4.weight"
    if last not in keys:
        return None
    return ModelConfig(
        architecture=("deeplabv3plus_" if plus else "deeplabv3_") + backbone,
        num_classes=int(state[last].shape[0]), in_channels=int(state[first].shape[1]),
        separable=any(k.startswith("classifier.") and ".body.0." in k for k in keys))


def _unets(state: State) -> ModelConfig | None:
    """This package's U-Nets (plain state dicts)."""
    keys = set(state)
    if {"encoder.0.block.0.weight", "head.weight"} <= keys:
        first = state["encoder.0.block.0.weight"]
        return ModelConfig(
            architecture="unet", num_classes=int(state["head.weight"].shape[0]),
            in_channels=int(first.shape[1]), depth=_max_index(keys, r"up\.(\d+)\.weight") + 1,
            base_channels=int(first.shape[0]),
            batch_norm="encoder.0.block.1.running_mean" in keys)
    if {"encoder.features.0.0.weight", "head.weight"} <= keys:
        return ModelConfig(
            architecture="unet_mobilenet", num_classes=int(state["head.weight"].shape[1]),
            in_channels=int(state["encoder.features.0.0.weight"].shape[1]))
    resnet = resnet_variant(keys, "encoder.")
    if "head.weight" in keys and f"unet_{resnet}" in ARCHS:
        return ModelConfig(
            architecture=f"unet_{resnet}", num_classes=int(state["head.weight"].shape[0]),
            in_channels=int(state["encoder.conv1.weight"].shape[1]))
    return None


def _torchvision(state: State) -> ModelConfig | None:
    """torchvision.models.segmentation: ``backbone.*``, ``classifier.{0..4}`` or LR-ASPP."""
    keys = set(state)
    if "classifier.low_classifier.weight" in keys:
        head, last = "lraspp", "classifier.low_classifier.weight"
    elif "classifier.0.convs.0.0.weight" in keys and "classifier.4.weight" in keys:
        head, last = "deeplabv3", "classifier.4.weight"
    elif {"classifier.0.weight", "classifier.1.running_mean", "classifier.4.weight"} <= keys:
        head, last = "fcn", "classifier.4.weight"
    else:
        return None
    if "backbone.conv1.weight" in keys:
        backbone, first = _resnet_depth(keys, "backbone."), "backbone.conv1.weight"
    elif "backbone.16.0.weight" in keys:
        backbone, first = "mobilenet_v3_large", "backbone.0.0.weight"
    else:
        return None
    arch = f"torchvision_{head}_{backbone}"
    if arch not in ARCHS:
        return None
    return ModelConfig(arch, num_classes=int(state[last].shape[0]),
                       in_channels=int(state[first].shape[1]))


def _without_aux(state: State) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}


def _pytorch_fcn(state: State) -> ModelConfig | None:
    """wkentaro/pytorch-fcn: flat ``conv1_1`` .. ``score_fr`` / ``upscore*`` keys."""
    keys = set(state)
    if not {"conv1_1.weight", "fc6.weight", "score_fr.weight"} <= keys:
        return None
    variant = 8 if "upscore8.weight" in keys else 16 if "upscore16.weight" in keys else 32
    channels = int(state["conv1_1.weight"].shape[1])
    mean, std = caffe_normalisation(channels)
    return ModelConfig(f"fcn{variant}s_vgg16", num_classes=int(state["score_fr.weight"].shape[0]),
                       in_channels=channels, mean=mean, std=std, bgr=channels == 3)


def _same(state: State) -> dict[str, Any]:
    return dict(state)


@dataclass(frozen=True)
class Layout:
    """The state-dict layout of one project."""

    name: str
    detect: Callable[[State], ModelConfig | None]
    adapt: Callable[[State], dict[str, Any]] = _same


LAYOUTS: tuple[Layout, ...] = (
    Layout("deeplabv3plus-pytorch", _vainf),
    Layout("napari-unsupseg", _unets),
    Layout("torchvision", _torchvision, _without_aux),
    Layout("pytorch-fcn", _pytorch_fcn),
)


def find_layout(state: State) -> tuple[Layout, ModelConfig] | None:
    """The layout whose keys ``state`` has, and the configuration it implies."""
    for layout in LAYOUTS:
        config = layout.detect(state)
        if config is not None:
            return layout, config
    return None


def detect_config(state: State) -> ModelConfig | None:
    """The architecture and sizes a state dict was made for, or ``None`` if unknown."""
    found = find_layout(state)
    return None if found is None else found[1]


def guess_classes(state: State, architecture: str) -> int:
    """The class count of ``architecture``'s weights in ``state`` (21 when absent)."""
    arch = ARCHS.get(architecture)
    if arch is not None and arch.classes_key in state:
        return int(state[arch.classes_key].shape[arch.classes_axis])
    return 21
