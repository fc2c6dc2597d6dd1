"""Segmentation networks in plain PyTorch and their checkpoints.

Importing this package does not import torch; the submodules do:

* :mod:`.resnet`, :mod:`.mobilenetv2` - backbones with torchvision key layouts,
  ``forward_features`` returning intermediate maps (reusable by other engines).
* :mod:`.deeplab` - DeepLabV3 / V3+ (MobileNetV2, ResNet-50, ResNet-101), key-compatible
  with VainF/DeepLabV3Plus-Pytorch checkpoints.
* :mod:`.unet` - classic U-Net, the MobileNetV2 U-Net of the TensorFlow pets tutorial and
  U-Nets on ResNet-18/34/50 encoders.
* :mod:`.encoders` - an ImageNet classifier's state dict (torchvision layout) loaded into
  the encoder of a U-Net or DeepLab, its first convolution adapted to the channels.
* :mod:`.torchvision_seg` - torchvision's FCN / DeepLabV3 / LR-ASPP segmentation models
  (torchvision state-dict keys) and a MobileNetV3-Large backbone.
* :mod:`.fcn` - FCN-32s/16s/8s on VGG-16 (wkentaro/pytorch-fcn layout, Caffe inputs).
* :mod:`.architectures` - the registry of buildable architectures (no torch).
* :mod:`.layouts` - one adapter per external weight layout: recognises an architecture
  from a state dict's keys.
* :mod:`.checkpoints` - loading every file format (VainF dict, bare / ``module.`` state
  dicts, TorchScript, ONNX, bioimage.io packages, this project's format), saving,
  :func:`~.checkpoints.describe`.
* :mod:`.safe_load` - reading pickled weights without running code (PyTorch >= 2.6).
* :mod:`.summary` - :func:`~.summary.describe`: what a loaded model is, in words.
* :mod:`.export` - TorchScript and ONNX export.
* :mod:`.onnx_model` - ONNX models through onnxruntime (optional extra ``onnx``).
* :mod:`.bioimageio` - reading and writing bioimage.io model packages.
* :mod:`.presets` - class names, palettes, :class:`~.presets.ModelConfig` (no torch).
"""

from __future__ import annotations

from .architectures import (
    ARCHITECTURES,
    ARCHS,
    DEEPLAB_ARCHITECTURES,
    build_from_config,
    build_model,
)
from .presets import ModelConfig

__all__ = ["ARCHITECTURES", "ARCHS", "DEEPLAB_ARCHITECTURES", "ModelConfig", "build_model",
           "build_from_config"]
