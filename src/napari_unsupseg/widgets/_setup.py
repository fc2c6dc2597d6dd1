"""The run set-up: every choice read on the main thread into one record (no Qt here).

:func:`make_setup` turns the chosen layer(s), channel axis and plane mode into a
:class:`RunSetup`; :meth:`RunSetup.image` then cuts and reshapes the data in the
worker thread, so a large or lazy (dask) image does not block the window. Both are
testable without a viewer.

Axes: ``data`` is the image layer's data. ``channel_axis`` is the data axis holding
channels (``None``: one channel). With ``channel_data`` (further single-channel
layers of the same shape), each layer is one channel, in order. The last two other
axes are the plane (Y, X); any axes before them are *leading* axes (z, t, ...). In
a current-plane run ``plane`` holds the index on each leading axis; otherwise the
leading axes are flattened into one stack axis for the engine and restored after.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.base.engine import EngineRun, Progress, Result, map_previews
from ..core.base.errors import InputError
from ..core.base.images import as_channels_last, mean_colour
from ._layers import as_label_data, transform_for

CURRENT_PLANE = "current plane"


def layer_data(layer: Any) -> Any:
    """The full-resolution data of an image layer (level 0 of a multiscale one)."""
    return layer.data[0] if layer.multiscale else layer.data


def image_axes(layer: Any, channel_axis: int | None) -> tuple[list[int], list[int]]:
    """(leading axes, spatial axes) of the layer's data, the channel axis left out."""
    shape = layer_data(layer).shape
    if layer.rgb:
        axes = list(range(len(shape) - 1))
    else:
        axes = [a for a in range(len(shape)) if a != channel_axis]
    return axes[:-2], axes[-2:]


@dataclass
class RunSetup:
    """Everything a run needs, read on the main thread when Run is pressed."""

    source: Any
    source_name: str
    data: Any
    channel_axis: int | None
    rgb: bool
    params: Any
    plane_mode: str
    plane: tuple[int, ...] | None
    lead_axes: tuple[int, ...]
    lead_shape: tuple[int, ...]
    spatial_shape: tuple[int, int]
    transform: dict[str, Any]
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    channel_data: tuple[Any, ...] = ()
    channel_names: tuple[str, ...] = ()

    @property
    def stacked(self) -> bool:
        """Whether the engine sees a stack (N, Y, X, C) rather than one plane."""
        return self.plane is None and len(self.lead_shape) > 0

    @property
    def result_shape(self) -> tuple[int, ...]:
        return (*self.lead_shape, *self.spatial_shape) if self.stacked else self.spatial_shape

    @property
    def key(self) -> tuple[int, Any]:
        """What a rerun on the same input shares with this one (for replacing results)."""
        return (id(getattr(self.source, "__wrapped__", self.source)), self.plane)

    def _plane_index(self, ndim: int, lead_axes: tuple[int, ...]) -> tuple[Any, ...]:
        index: list[Any] = [slice(None)] * ndim
        if self.plane is not None:
            for axis, i in zip(lead_axes, self.plane, strict=True):
                index[axis] = i
        return tuple(index)

    def image(self) -> np.ndarray:
        """The engine's input: channels-last ``(Y, X, C)`` or ``(N, Y, X, C)``."""
        index = self._plane_index(len(self.data.shape), self.lead_axes)
        if self.channel_data:
            layers = (self.data, *self.channel_data)
            array = np.stack([np.asarray(layer[index]) for layer in layers], axis=-1)
        else:
            array = np.asarray(self.data[index])
            channel = self.channel_axis
            if channel is not None and self.plane is not None:
                channel -= sum(1 for a in self.lead_axes if a < channel)
            array = array[..., np.newaxis] if channel is None else np.moveaxis(array, channel, -1)
        if array.ndim > 4:
            array = array.reshape((-1, *array.shape[-3:]))
        return as_channels_last(array, -1)

    def select(self, array: Any, what: str = "layer") -> np.ndarray:
        """Cut another layer's data (shaped like the image without channels) like the image.

        Returns a copy shaped like the engine's labels: ``(Y, X)`` or ``(N, Y, X)``.
        A layer that also has the image's channel axis (as napari's "new labels
        layer" makes for a channel-first image) is collapsed along it (maximum).
        """
        array = np.asarray(array)
        full = tuple(self.data.shape)
        if self.rgb:
            full = full[:-1]
            channel = None
        else:
            channel = self.channel_axis
        plain = tuple(n for a, n in enumerate(full) if a != channel)
        if channel is not None and array.shape == full:
            array = array.max(axis=channel)
        if array.shape == self.spatial_shape and (self.plane is not None or not self.lead_shape):
            return np.array(array)
        if array.shape != plain:
            raise InputError(
                f"The {what} has shape {array.shape}, but the image '{self.source_name}' "
                f"has shape {plain} without its channels; they must match."
            )
        n_lead = len(self.plane) if self.plane is not None else len(self.lead_shape)
        array = array[self._plane_index(array.ndim, tuple(range(n_lead)))]
        if array.ndim > 3:
            array = array.reshape((-1, *array.shape[-2:]))
        return np.array(array)

    def restore(self, array: np.ndarray) -> np.ndarray:
        """Engine output ``(N, Y, X, ...)`` back to the leading axes' shape."""
        array = np.asarray(array)
        if self.stacked and len(self.lead_shape) != 1:
            return array.reshape((*self.lead_shape, *array.shape[1:]))
        return array


def make_setup(
    layer: Any,
    *,
    params: Any,
    engine_label: str,
    channel_axis: int | None = None,
    channel_layers: Sequence[Any] = (),
    plane_mode: str = CURRENT_PLANE,
    current_point: Sequence[float] | None = None,
    options: dict[str, Any] | None = None,
) -> RunSetup:
    """The :class:`RunSetup` for ``layer`` and the user's choices; InputError in plain words.

    ``channel_layers``: further single-channel image layers of ``layer``'s shape, one
    channel each (then ``channel_axis`` is ignored). ``current_point``: the viewer's
    dims point, for a current-plane run.
    """
    if layer is None:
        raise InputError("Choose an image layer to segment (there is none in the viewer).")
    data = layer_data(layer)
    shape = tuple(data.shape)
    rgb = bool(layer.rgb)
    extra = tuple(channel_layers)
    if extra:
        if rgb:
            raise InputError(f"'{layer.name}' is an RGB image; it cannot take channel layers.")
        for other in extra:
            if other.rgb or tuple(layer_data(other).shape) != shape:
                raise InputError(
                    f"The channel layer '{other.name}' (shape {tuple(layer_data(other).shape)}) "
                    f"does not have the shape of '{layer.name}' {shape}."
                )
        channel_axis = None
    elif rgb:
        channel_axis = len(shape) - 1
    lead, spatial = image_axes(layer, channel_axis)
    if len(spatial) < 2:
        raise InputError(
            f"The image '{layer.name}' (shape {shape}) has no plane left once axis "
            f"{channel_axis} is taken as channels; choose 'none' as the channel axis."
        )
    plane_mode = plane_mode if lead else CURRENT_PLANE
    plane: tuple[int, ...] | None = None
    if lead and plane_mode == CURRENT_PLANE:
        point = current_point if current_point is not None else [0.0] * layer.ndim
        position = np.asarray(layer.world_to_data(point), dtype=float)
        plane = tuple(int(np.clip(np.round(position[a]), 0, shape[a] - 1)) for a in lead)
    # Axes of the layer (an RGB layer's colour axis is not one of them) the result keeps.
    keep = list(spatial) if plane is not None else [*lead, *spatial]
    name = f"{layer.name} {engine_label}"
    if plane is not None:
        name += " plane " + ",".join(str(i) for i in plane)
    return RunSetup(
        source=layer,
        source_name=layer.name,
        data=data,
        channel_axis=channel_axis,
        rgb=rgb,
        params=params,
        plane_mode=plane_mode,
        plane=plane,
        lead_axes=tuple(lead),
        lead_shape=tuple(shape[a] for a in lead) if plane is None else (),
        spatial_shape=(shape[spatial[0]], shape[spatial[1]]),
        transform=transform_for(layer, keep),
        name=name,
        options=dict(options or {}),
        channel_data=tuple(layer_data(other) for other in extra),
        channel_names=tuple(other.name for other in extra),
    )


@dataclass
class Outcome:
    """What the worker hands back: the engine's result, shaped for the layers."""

    result: Result
    labels: np.ndarray
    mean: np.ndarray | None


def run_in_worker(
    setup: RunSetup, start_engine: Callable[[np.ndarray], EngineRun]
) -> Generator[Progress, None, Outcome]:
    """A run in the worker thread: cut the image, run the engine, shape its labels.

    Previews are copied as napari label data in the image's leading-axes shape (the
    engine may keep updating the array it lent); the labels are checked against
    :attr:`RunSetup.result_shape`.
    """
    yield Progress(step=0, total=0, message="reading the image")
    image = setup.image()
    yield Progress(step=0, total=0, message="starting")
    run = start_engine(image)
    try:
        result = yield from map_previews(
            run, lambda preview: as_label_data(np.array(setup.restore(preview))))
    finally:
        run.close()
    if not isinstance(result, Result):
        raise TypeError("the engine returned no Result")
    labels = as_label_data(setup.restore(result.labels))
    if labels.shape != setup.result_shape:
        raise ValueError(
            f"the engine returned labels of shape {labels.shape}, expected {setup.result_shape}"
        )
    mean = None
    if setup.options.get("mean_colour"):
        mean = setup.restore(mean_colour(image, np.asarray(result.labels)))
    return Outcome(result, labels, mean)
