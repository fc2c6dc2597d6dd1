"""Parameters of training a segmentation model from painted labels (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.device import DEVICE_CHOICES
from ..base.params import param
from ..models.architectures import ARCHITECTURES

__all__ = ["TrainParams", "TRAIN_ARCHITECTURES"]

#: Every architecture of :mod:`..models` trains; the classic U-Net is the fast default.
TRAIN_ARCHITECTURES = ("unet", "unet_mobilenet",
                       *(a for a in ARCHITECTURES if a.startswith("unet_resnet")),
                       *(a for a in ARCHITECTURES if a.startswith("deeplab")))


@dataclass
class TrainParams:
    """Parameters of :func:`napari_unsupseg.core.train.train` (widget and ``train`` command)."""

    architecture: str = param(
        "unet", "Network to train: the classic U-Net (fastest on a CPU), U-Nets on a "
        "MobileNetV2 or ResNet-18/34/50 encoder (which can start from ImageNet weights), or "
        "DeepLabV3/V3+. Ignored when starting from a checkpoint (its own is kept).",
        choices=TRAIN_ARCHITECTURES)
    init: str = param(
        "", "Checkpoint to start from (a model saved by this plugin, a DeepLabV3Plus-Pytorch "
        "file or a state dict); empty: from scratch. A head with another class count is "
        "replaced.")
    epochs: int = param(
        120, "Most epochs (each of 'steps per epoch' batches); training ends earlier at the "
        "time limit or when the validation loss stops improving.", min=1, max=1_000_000)
    time_limit: float = param(
        60.0, "Most seconds of training (0: no limit). Previews show the model as it learns: "
        "on two 256 x 256 fluorescence images it already beats a threshold after 20 s.",
        min=0.0)
    patience: int = param(
        20, "Epochs without a lower validation loss before training stops (0: never stop "
        "early; runs with no pixels held out for validation always go to their end).",
        min=0, advanced=True)
    steps_per_epoch: int = param(
        20, "Batches per epoch; the validation loss is measured after each epoch.",
        min=1, max=100_000, advanced=True)
    crop_size: int = param(
        64, "Side of the square training crops, taken around labelled pixels.",
        min=32, max=2048, advanced=True)
    batch_size: int = param(8, "Crops per training step.", min=1, max=512, advanced=True)
    learning_rate: float = param(
        1e-2, "Initial learning rate (AdamW, decayed polynomially over the run).",
        min=1e-7, max=1.0, advanced=True)
    validation_fraction: float = param(
        0.15, "Share of the labelled pixels held out (in blocks) to measure the validation "
        "loss and pick the best model (0, or fewer than 1000 pixels held out: none; the "
        "training loss is used).",
        min=0.0, max=0.5, advanced=True)
    unet_depth: int = param(
        3, "Classic U-Net: number of 2x poolings.", min=1, max=6, advanced=True)
    unet_channels: int = param(
        8, "Classic U-Net: channels of the first level (doubled at each level).",
        min=4, max=128, advanced=True)
    class_names: str = param(
        "", "Names of the painted classes in increasing label order, separated by commas "
        "(empty: 'class 1', 'class 2', ...).")
    separate_objects: bool = param(
        True, "With two painted classes, the model also returns every object of the "
        "objects' class (the one that covers less of the image's edges) as its own label, "
        "touching objects split, ready for review.")
    seed: int = param(0, "Random seed (crops, augmentation, initial weights).", min=0)
    device: str = param(
        "auto", "Where to train: auto (CUDA, then Apple MPS, then CPU), or a named device.",
        choices=DEVICE_CHOICES)
    threads: int = param(
        0, "CPU threads for training (0: the cores the load average shows idle, at least "
        "one; on a busy machine fewer threads are much faster).", min=0, max=1024,
        advanced=True)
    mixed_precision: bool = param(
        True, "Half-precision arithmetic on CUDA (ignored elsewhere).", advanced=True)

    encoder_weights: str = param(
        "", "An ImageNet state dict file of the encoder to start from (torchvision layout: "
        "MobileNetV2 for unet_mobilenet and the MobileNet DeepLabs, ResNet-18/34/50 for "
        "unet_resnet18/34/50, ResNet-50/101 for the ResNet DeepLabs); empty: random "
        "weights. Ignored when starting from a checkpoint.", advanced=True, file=True)
