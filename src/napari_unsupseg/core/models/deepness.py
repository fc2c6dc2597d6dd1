"""ONNX models published for Deepness (the QGIS plugin of PUT Vision) used as they are.

Deepness keeps what running a model needs in the ONNX file's ``metadata_props``, each
value JSON-encoded: ``model_type`` (only ``Segmentor`` models segment), ``class_names``
(``{id: name}``; a list of such dicts for models with several outputs, of which the
first is used here), ``resolution`` (centimetres per pixel), ``tiles_size`` (pixels),
``tiles_overlap`` (percent of the tile), ``standardization_mean`` / ``_std`` (applied
after scaling the image to 0..1), ``seg_thresh`` and ``seg_small_segment``.

Here the resolution becomes metres per pixel (the unit of projected CRSs, so that a
GeoTIFF's pixel size compares with it directly) and the standardisation the model's
mean and std; the rest is kept in the model's description.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..base.errors import InputError
from .presets import ModelConfig, generic_palette, is_background_name

#: The keys that mark a file as carrying Deepness metadata.
DEEPNESS_KEYS = ("model_type", "class_names", "resolution", "tiles_size", "tiles_overlap",
                 "standardization_mean", "standardization_std", "seg_thresh",
                 "seg_small_segment")


def _value(text: str) -> Any:
    """A metadata value: JSON as Deepness writes it, else a Python literal (files written
    with ``str(dict)``), else the text itself."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError):
            continue
    return text


def read_deepness(metadata: Mapping[str, str]) -> dict[str, Any]:
    """The Deepness entries of an ONNX file's metadata, decoded (empty when none)."""
    return {key: _value(metadata[key]) for key in DEEPNESS_KEYS if key in metadata}


def _class_names(value: Any) -> list[str]:
    if isinstance(value, list):  # one table per output: the first output is the one used
        value = value[0] if value else {}
    if not isinstance(value, Mapping):
        return []
    try:
        table = {int(k): str(v) for k, v in value.items()}
    except (TypeError, ValueError):
        return []
    return [table.get(i, f"class {i}") for i in range(max(table, default=-1) + 1)]


def _floats(value: Any, channels: int) -> list[float] | None:
    values = value if isinstance(value, list) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    if len(numbers) == 1:
        numbers *= channels
    return numbers if len(numbers) == channels else None


def apply_deepness(config: ModelConfig, metadata: Mapping[str, str], name: str
                   ) -> tuple[ModelConfig, dict[str, str]]:
    """``config`` completed from Deepness metadata, and the lines it adds to the model's
    description; a Deepness model that does not segment is refused in one sentence."""
    found = read_deepness(metadata)
    if not found:
        return config, {}
    kind = str(found.get("model_type", "Segmentor"))
    if kind.lower() != "segmentor":
        raise InputError(f"{name} is a Deepness '{kind}' model; only 'Segmentor' models "
                         "give classes per pixel.")
    notes: list[str] = []
    names = _class_names(found.get("class_names"))
    if names and len(names) == config.num_classes:
        config = replace(config, class_names=names, background=is_background_name(names[0]),
                         palette=[list(c) for c in generic_palette(len(names))])
    elif names:
        notes.append(f"{len(names)} class names for {config.num_classes} outputs: not used")
    resolution = _floats(found.get("resolution"), 1)
    if resolution and resolution[0] > 0:
        metres = resolution[0] / 100  # Deepness states centimetres per pixel
        config = replace(config, resolution=[metres, metres], resolution_unit="m")
        notes.append(f"trained at {resolution[0]:g} cm/px")
    tile = _floats(found.get("tiles_size"), 1)
    if tile and tile[0] > 0:
        overlap = _floats(found.get("tiles_overlap"), 1) or [0.0]
        config = replace(config, tile_size=int(tile[0]),
                         tile_overlap=round(tile[0] * overlap[0] / 100))
        notes.append(f"tiles {int(tile[0])} px, overlap {overlap[0]:g}%")
    mean = _floats(found.get("standardization_mean"), config.in_channels)
    std = _floats(found.get("standardization_std"), config.in_channels)
    if mean is not None and std is not None and all(s > 0 for s in std):
        config = replace(config, mean=mean, std=std)
        notes.append("standardised by its mean and std")
    for key in ("seg_thresh", "seg_small_segment"):
        if key in found:
            notes.append(f"{key} {found[key]}")
    return config, {"deepness": "; ".join(notes) or "Deepness metadata"}
