"""Volumes and large or lazy layers in the engine docks (main thread; no torch).

- **Volume mode**: a dock whose engine can treat a z-stack as one 3-D volume offers it
  as a plane mode ("as a volume (3-D)") beside "every plane", for an image with exactly
  one axis before the plane (z, y, x: one leading axis; a 4-D t/z stack would be
  flattened into one stack, so it is never offered there). The engine's voxel spacing
  fields are filled from the layer's ``scale`` on those three axes (:func:`layer_spacing`),
  hidden from the form, and a line under the plane mode says which spacing is used.
- **Lazy data**: a dask- or zarr-backed layer (or a multiscale one, read at level 0) is
  read in the worker, but only up to :data:`LAZY_READ_LIMIT` bytes (see
  :func:`check_lazy_read`). A layer opened from an OME-Zarr store is not read whole
  by the docks that can run block by block (see :mod:`._zarr_run`): no limit applies.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from magicgui import widgets

from ..core.base.errors import InputError
from ._fit import wrap_text
from ._layers import unwrap
from ._setup import CURRENT_PLANE, RunSetup, image_axes

#: The most bytes a run reads from a lazy (dask, zarr) or multiscale layer's level 0 into
#: memory. Above it the run is refused with a sentence pointing to the current plane or
#: to the command line (which reads and writes files tile by tile), rather than loading
#: a huge array in one go and freezing or killing napari: a displayed-region run would
#: depend on the zoom and give a result whose extent the user did not choose.
LAZY_READ_LIMIT = 2 * 1024**3


def layer_spacing(layer: Any, channel_axis: int | None) -> tuple[float, float, float] | None:
    """The voxel spacing (z, y, x) of a z-stack layer, from its ``scale``; None unless the
    image has exactly one axis before the plane. A scale of 0 or not finite counts as 1."""
    lead, spatial = image_axes(layer, channel_axis)
    if len(lead) != 1:
        return None
    scale = np.abs(np.asarray(layer.scale, dtype=float))
    values = [float(scale[a]) for a in (*lead, *spatial)]
    z, y, x = (v if math.isfinite(v) and v > 0 else 1.0 for v in values)
    return z, y, x


def describe_spacing(spacing: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:g}" for v in spacing)


def stack_values(widget: Any, layer: Any, channel_axis: int | None,
                 plane_mode: str) -> dict[str, Any]:
    """The form values a dock fills itself for ``plane_mode``: its ``stack_param`` (the
    engine's stack mode) and, for a z-stack, its ``spacing_params`` from the layer's scale
    (filled in every mode: the engine reads them only in volume mode, and the result's
    metadata then says which spacing the layer had)."""
    values: dict[str, Any] = {}
    if layer is None or not image_axes(layer, channel_axis)[0]:
        return values
    value = widget.stack_modes.get(plane_mode)
    if plane_mode != CURRENT_PLANE and widget.stack_param and value is not None:
        values[widget.stack_param] = value
    spacing = layer_spacing(layer, channel_axis) if widget.spacing_params else None
    if spacing is not None:
        values.update(zip(widget.spacing_params, spacing, strict=True))
    return values


class SpacingLine:
    """A line under the plane mode saying the voxel spacing a volume run uses (shown only
    in a volume mode)."""

    def __init__(self, image_input: Any, volume_modes: frozenset[str]) -> None:
        self.input = image_input
        self.volume_modes = volume_modes
        self.label = widgets.Label(value="", visible=False)
        wrap_text(self.label)
        self._followed: Any = None  # the layer whose scale changes update the line
        for signal in (image_input.image_picker.changed, image_input.plane_mode.changed,
                       image_input.channel_axis.changed, image_input.channel_layers.changed):
            signal.connect(self.update)
        self.update()

    def _follow(self, layer: Any) -> None:
        layer = None if layer is None else unwrap(layer)
        if layer is self._followed:
            return
        self.disconnect()
        if layer is not None:
            layer.events.scale.connect(self.update)
        self._followed = layer

    def disconnect(self) -> None:
        """Stop following the chosen layer's scale (the dock is going away)."""
        if self._followed is not None:
            self._followed.events.scale.disconnect(self.update)
            self._followed = None

    def update(self, *_: Any) -> None:
        layer = self.input.image
        self._follow(layer)
        spacing = None
        if layer is not None and self.input.plane_mode.value in self.volume_modes:
            axis = None if self.input.extra_channels else self.input.channel_axis.value
            spacing = layer_spacing(layer, axis)
        self.label.visible = spacing is not None
        if spacing is not None:
            self.label.value = (
                f"Voxel spacing (z, y, x): {describe_spacing(spacing)}, the layer's scale "
                "(only the ratios matter; change the layer's scale to change it).")
            if spacing == (1.0, 1.0, 1.0):
                # napari's default scale: often a file that did not say its voxel size.
                self.label.value += (
                    " The layer's scale is napari's default: if the planes are farther "
                    "apart than the pixels (most confocal stacks), set its scale first.")


def check_lazy_read(setup: RunSetup, limit: int | None = None) -> None:
    """Refuse in one sentence a run that would load more than ``limit`` bytes of a lazy
    (dask, zarr, multiscale) layer; an in-memory numpy layer is already loaded (the
    limits line checks the run itself)."""
    arrays = (setup.data, *setup.channel_data)
    if all(isinstance(array, np.ndarray) for array in arrays):
        return
    shape = tuple(setup.data.shape)
    n = math.prod(shape)
    if setup.plane is not None:
        n //= max(1, math.prod(shape[a] for a in setup.lead_axes))
    size = n * np.dtype(setup.data.dtype).itemsize * len(arrays)
    if size <= (LAZY_READ_LIMIT if limit is None else limit):
        return
    gib = size / 1024**3
    plane = "" if setup.plane is not None else "segment the current plane, or "
    raise InputError(
        f"'{setup.source_name}' is read from disk as needed, and this run would load "
        f"{gib:.1f} GiB of it into memory at once; {plane}use the napari-unsupseg command "
        "line on the file instead.")
