"""What a loaded model is, in words: shown by the inference widget before a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .architectures import ARCHS, input_geometry
from .presets import IMAGENET_MEAN, IMAGENET_STD, ModelConfig, resolve_classes

if TYPE_CHECKING:
    from .loaded import LoadedModel

__all__ = ["describe"]

#: The names training gives output 0 and the values nobody painted
#: (``core.train.model.class_names``).
UNPAINTED = "unlabelled"
NEVER_PAINTED = "unused "


def _normalisation_text(config: ModelConfig) -> str:
    mean = [round(m, 3) for m in config.mean]
    std = [round(s, 3) for s in config.std]
    if std and all(abs(s - 1 / 255) < 1e-6 for s in config.std):
        order = " (BGR)" if config.bgr else ""
        return f"Caffe style: 0..255 minus the mean{order} {[round(m * 255, 1) for m in mean]}"
    if mean == [round(m, 3) for m in IMAGENET_MEAN] and std == [round(s, 3) for s in
                                                                IMAGENET_STD]:
        return "ImageNet mean and std"
    if all(m == 0 for m in mean) and all(s == 1 for s in std):
        return "no further normalisation"
    return f"mean {mean}, std {std}"


def _classes_text(config: ModelConfig) -> str:
    """The classes in words. A model trained on painted labels is described as painted:
    the class values and their names; its output 0 (unpainted pixels) and the values
    nobody painted are never predicted, so they are not listed."""
    names = list(config.class_names)
    if names and names[0] == UNPAINTED:
        painted = [f"{value} = {name}" for value, name in enumerate(names)
                   if value and not name.startswith(NEVER_PAINTED)]
        return f"Classes (as painted): {', '.join(painted)}"
    names, _, background = resolve_classes("auto", config.num_classes, config)
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return (f"Classes: {config.num_classes} ({shown})"
            + ("; class 0 is background" if background else ""))


def describe(loaded: LoadedModel) -> str:
    """What was recognised in a loaded model, one fact a line: architecture and format,
    classes, preprocessing, input size (for showing before a run)."""
    config = loaded.config
    arch = ARCHS.get(config.architecture)
    family = arch.family if arch is not None else {
        "torchscript": "TorchScript module (run as it is)", "onnx": "ONNX model"}.get(
        config.architecture, config.architecture)
    lines = [f"Architecture: {family} [{config.architecture}]",
             f"Format: {loaded.format or 'in memory'}"]
    lines.append(_classes_text(config))
    order = "BGR" if config.bgr else "RGB" if config.in_channels == 3 else "channels"
    scaling = {"dtype": "by the image type's range", "percentile": "by percentiles"}.get(
        config.intensity, "by type for 8-bit images, else by percentiles")
    lines.append(f"Input: {config.in_channels} channel(s) ({order}), scaled to 0..1 {scaling}, "
                 f"then {_normalisation_text(config)}")
    multiple, _, fixed = input_geometry(config, loaded.model)
    if fixed:
        lines.append(f"Size: fixed {fixed[0]} x {fixed[1]} px (predicted tile by tile at "
                     "that size)")
    elif multiple > 1:
        lines.append(f"Size: any (tiles padded to a multiple of {multiple})")
    else:
        lines.append("Size: any (no padding)")
    if config.resolution:
        x, y = (config.resolution * 2)[:2]
        size = f"{x:g}" if x == y else f"{x:g} x {y:g}"
        lines.append(f"Resolution: {size} {config.resolution_unit or 'map units'}/px (images "
                     "of another pixel size are resampled to it)")
    lines += [f"{key.capitalize()}: {value}" for key, value in loaded.details.items()]
    return "\n".join(lines)


