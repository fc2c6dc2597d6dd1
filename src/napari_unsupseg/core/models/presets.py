"""Class names, palettes and model configurations (no torch: safe to import anywhere).

Presets: ``voc`` (PASCAL VOC, 21 classes, class 0 = background), ``cityscapes``
(19 train ids, no background class), ``pets`` (Oxford-IIIT pets trimap as in the
TensorFlow tutorial: pet, background, border).

Label values: when class 0 is a background class, the label image holds the class
index (background = 0, which napari shows transparent). Otherwise label = class + 1,
so that every class is visible; :attr:`ModelConfig.label_offset` says which.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..base.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
PETS_CLASSES = ("pet", "background", "border")


def voc_palette(n: int = 256) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map (bit-interleaved class index)."""
    out = []
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        out.append((r, g, b))
    return tuple(out)


def generic_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours for ``n`` classes (the VOC map skipping black)."""
    return voc_palette(n + 1)[1:]


@dataclass(frozen=True)
class ClassPreset:
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    background: bool  # class 0 is "background"


PRESETS: dict[str, ClassPreset] = {
    "voc": ClassPreset(VOC_CLASSES, voc_palette(21), True),
    "cityscapes": ClassPreset(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, False),
    "pets": ClassPreset(PETS_CLASSES, ((255, 160, 0), (40, 40, 40), (240, 240, 240)), False),
}


@dataclass
class ModelConfig:
    """Everything besides the weights that prediction needs (saved as JSON in checkpoints).

    ``architecture``: one of :data:`ARCHITECTURES` (or ``"torchscript"`` for an archive
    run as-is). ``depth`` / ``base_channels`` / ``batch_norm`` only concern ``unet``.
    ``mean`` / ``std``: per-channel normalisation after scaling intensities to [0, 1].
    ``bgr``: the model takes its colour channels in BGR order (Caffe models).
    ``intensity``: how the model wants intensities scaled to [0, 1] when the user leaves
    it on ``auto`` (ONNX models: ``dtype``). ``input_size``: the fixed ``[height, width]``
    the model takes (empty: any size). ``island_floors``: see :mod:`..islands`.
    ``resolution``: the ``[x, y]`` pixel size of the images the model was trained on, in
    ``resolution_unit`` (``m`` for metres, else the CRS's unit name); empty: unknown, and
    prediction then takes images as they come. ``tile_size`` / ``tile_overlap``: the tiles
    (pixels) the model's authors ran it with (0: not said).
    """

    architecture: str
    num_classes: int
    in_channels: int = 3
    output_stride: int = 16
    separable: bool = False
    depth: int = 4
    base_channels: int = 32
    batch_norm: bool = True
    class_names: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)
    background: bool = False
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    bgr: bool = False
    intensity: str = "auto"
    input_size: list[int] = field(default_factory=list)
    #: Models trained here: the island floor of each class value (``core.islands``).
    island_floors: dict[str, int] = field(default_factory=dict)
    #: Models trained here on "objects vs background": the label value of the objects'
    #: class, whose objects prediction also returns one by one (0: none).
    object_class: int = 0
    resolution: list[float] = field(default_factory=list)
    resolution_unit: str = ""
    tile_size: int = 0
    tile_overlap: int = 0

    @property
    def label_offset(self) -> int:
        return 0 if self.background else 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"The model configuration has unknown entries: {', '.join(unknown)}.")
        if "architecture" not in values or "num_classes" not in values:
            raise InputError("The model configuration needs 'architecture' and 'num_classes'.")
        return cls(**values)


def is_background_name(name: str) -> bool:
    """Whether a class name says "background" (class 0 then shows transparent)."""
    return name.strip().lower().lstrip("_") in ("background", "bg", "unlabelled", "unlabeled")


def resolve_classes(spec: str, num_classes: int, config: ModelConfig | None = None
                    ) -> tuple[list[str], list[list[int]], bool]:
    """Class names, palette and whether class 0 is background.

    ``spec``: ``auto`` (the checkpoint's own names, else the preset with that many
    classes - 21 VOC, 19 Cityscapes -, else ``class 0`` ...), a preset name, or a
    comma-separated list of names (class 0 is background when named so).
    """
    spec = (spec or "auto").strip()
    if spec.lower() == "auto":
        if config is not None and config.class_names:
            names = list(config.class_names)
            palette = [list(c) for c in config.palette] or [
                list(c) for c in generic_palette(len(names))]
            return names, palette, config.background
        for preset in PRESETS.values():
            if len(preset.names) == num_classes and preset is not PRESETS["pets"]:
                return list(preset.names), [list(c) for c in preset.palette], preset.background
        names = [f"class {i}" for i in range(num_classes)]
        return names, [list(c) for c in generic_palette(num_classes)], False
    if spec.lower() in PRESETS:
        preset = PRESETS[spec.lower()]
        if len(preset.names) != num_classes:
            raise InputError(
                f"The '{spec}' classes are {len(preset.names)}, but the model predicts "
                f"{num_classes}; choose 'auto' or give {num_classes} names.")
        return list(preset.names), [list(c) for c in preset.palette], preset.background
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if len(names) != num_classes:
        raise InputError(
            f"{len(names)} class names were given, but the model predicts {num_classes} "
            "classes; give one name per class, separated by commas.")
    background = is_background_name(names[0])
    return names, [list(c) for c in generic_palette(num_classes)], background
