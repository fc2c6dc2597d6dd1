"""Starting a network's encoder from an ImageNet classifier's weights, as convpaint and
segmentation_models_pytorch do.

The file is a state dict of torchvision's ``resnet18`` / ``resnet34`` / ``resnet50`` /
``resnet101`` (``conv1``, ``bn1``, ``layer1`` .. ``layer4``, ``fc``) or ``mobilenet_v2``
(``features.0`` .. ``features.18``, ``classifier``), bare or under ``state_dict`` /
``model`` (a ``module.`` prefix is removed), read without running code
(:func:`.safe_load.torch_load`). The classifier (``fc``, ``classifier``) and MobileNetV2's
last 1x1 convolution (``features.18``, which no encoder here has) are left out; every
other tensor goes to the encoder: ``encoder.*`` of the U-Nets, ``backbone.*`` of the
DeepLab networks (MobileNetV2 blocks split into ``low_level_features`` 0-3 and
``high_level_features`` 4-17 with their indices kept).

Images with other than 3 channels get the first convolution's RGB kernel averaged over
its channels, repeated for each channel and scaled by 3 / C, so an image whose channels
are all equal excites the network as the same grey RGB image would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.errors import InputError
from .architectures import DEEPLAB_ARCHITECTURES
from .layouts import resnet_variant
from .loaded import file_sha256, unwrap_state_dict
from .safe_load import torch_load

__all__ = ["ENCODER_NAMES", "adapt_first_conv", "classifier_kind", "encoder_of",
           "load_encoder"]

#: The ImageNet classifiers whose weights an encoder here takes, in words.
ENCODER_NAMES = {"resnet18": "ResNet-18", "resnet34": "ResNet-34", "resnet50": "ResNet-50",
                 "resnet101": "ResNet-101", "mobilenet_v2": "MobileNetV2"}
_FIRST_CONV = {"mobilenet_v2": "features.0.0.weight"}  # ResNets: conv1.weight
_MOBILENET_BLOCK = re.compile(r"features\.(\d+)\.(.+)")


def encoder_of(architecture: str) -> str | None:
    """The torchvision classifier (a key of :data:`ENCODER_NAMES`) whose weights fit the
    encoder of ``architecture``, or ``None`` when it has no such encoder."""
    if architecture.startswith("unet_resnet"):
        return architecture.removeprefix("unet_")
    if architecture == "unet_mobilenet":
        return "mobilenet_v2"
    if architecture in DEEPLAB_ARCHITECTURES:
        backbone = architecture.partition("_")[2]
        return "mobilenet_v2" if backbone == "mobilenet" else backbone
    return None


def classifier_kind(state: dict[str, torch.Tensor]) -> str | None:
    """Which torchvision classifier a state dict is (a key of :data:`ENCODER_NAMES`)."""
    keys = set(state)
    if {"features.0.0.weight", "features.17.conv.0.0.weight"} <= keys:
        return "mobilenet_v2"
    return resnet_variant(keys)


def _target(key: str, encoder: str, deeplab: bool) -> str | None:
    """Where a classifier's tensor goes in the network; ``None`` for those it has no use for."""
    if key.startswith(("fc.", "classifier.")):
        return None
    prefix = "backbone." if deeplab else "encoder."
    if encoder != "mobilenet_v2":
        return prefix + key
    match = _MOBILENET_BLOCK.fullmatch(key)
    if match is None or int(match.group(1)) > 17:
        return None
    if deeplab:
        part = "low_level_features" if int(match.group(1)) < 4 else "high_level_features"
        return f"{prefix}{part}.{match.group(1)}.{match.group(2)}"
    return prefix + key


def adapt_first_conv(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """The first convolution's kernel for ``channels`` input channels: unchanged when the
    count is the file's, else its mean over the file's channels repeated, scaled by
    (file's channels) / ``channels`` (see the module docstring)."""
    given = weight.shape[1]
    if given == channels:
        return weight
    mean = weight.mean(dim=1, keepdim=True) * (given / channels)
    return mean.repeat(1, channels, 1, 1)


def load_encoder(net: nn.Module, architecture: str, path: str | Path) -> dict[str, Any]:
    """Load the ImageNet classifier weights in ``path`` into the encoder of ``net`` (an
    ``architecture`` network); returns what the training provenance records. A file that
    is missing, not such a classifier, or of another one than the encoder is an
    :class:`InputError`."""
    path = Path(path).expanduser()
    expected = encoder_of(architecture)
    if expected is None:
        fitting = "unet_resnet18, unet_resnet34, unet_resnet50, unet_mobilenet or a DeepLab"
        raise InputError(f"The architecture '{architecture}' has no ImageNet encoder to start "
                         f"from encoder weights; choose {fitting}, or leave the encoder "
                         "weights empty.")
    if not path.is_file():
        raise InputError(f"The encoder weights file {path} does not exist.")
    state, _, _ = unwrap_state_dict(torch_load(path))
    found = classifier_kind(state)
    want = ENCODER_NAMES[expected]
    if found is None:
        sample = ", ".join(sorted(state)[:4])
        raise InputError(f"{path.name} is not an ImageNet {want} state dict in torchvision's "
                         f"layout, which the encoder of '{architecture}' needs (first keys: "
                         f"{sample}).")
    if found != expected:
        raise InputError(f"{path.name} holds {ENCODER_NAMES[found]} weights but the encoder "
                         f"of '{architecture}' is a {want}; choose a {want} file or an "
                         f"architecture with a {ENCODER_NAMES[found]} encoder.")
    deeplab = architecture in DEEPLAB_ARCHITECTURES
    mapped = {target: value for key, value in state.items()
              if (target := _target(key, expected, deeplab)) is not None}
    own = net.state_dict()
    first = _target(_FIRST_CONV.get(expected, "conv1.weight"), expected, deeplab)
    channels = int(own[first].shape[1])
    mapped[first] = adapt_first_conv(mapped[first], channels)
    prefix = "backbone." if deeplab else "encoder."
    missing = [k for k in own if k.startswith(prefix) and k not in mapped]
    wrong = [k for k in mapped if k not in own or mapped[k].shape != own[k].shape]
    if missing or wrong:  # a file edited or saved from a modified network
        raise InputError(f"{path.name} does not fit the {want} encoder of '{architecture}' "
                         f"({len(missing)} tensors missing, {len(wrong)} of another name or "
                         f"shape, e.g. {(missing + wrong)[0]}).")
    net.load_state_dict({**own, **mapped})
    given = int(state[_FIRST_CONV.get(expected, "conv1.weight")].shape[1])
    return {"encoder_weights": str(path), "encoder_weights_sha256": file_sha256(path),
            "encoder": f"{want} (torchvision layout)", "encoder_tensors": len(mapped),
            "encoder_first_conv": "as in the file" if given == channels else
            f"mean of its {given} channels repeated for {channels}, scaled by "
            f"{given}/{channels}"}
