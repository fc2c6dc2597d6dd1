"""Result writing for the engine widgets: one labels layer per run, and extra layers.

:class:`ResultWriter` applies the rules of :mod:`._layers` across runs:

- previews and the final labels of one run go to one layer: the previous result of
  the same input (image and plane) when it is untouched, else a new layer
  ``"<image> <engine> [2]"``. A layer the user paints on, even mid-run, is never
  written again; the run carries on in a new layer. "new result layer for every
  run" keeps every result.
- **extra layers** (mean colour, confidence, part centres, ...) follow one rule:
  each has a kind; a rerun on the same input replaces the previous run's layer of
  that kind, unless "new result layer for every run" is ticked or the user edited
  it (then it stays, and the new one gets a fresh name).
- **objects**: a model that separates objects returns an instance label image
  (``result.extras["objects"]``: 0 = background, 1..N = objects) beside its classes;
  :meth:`ResultWriter.add_objects` writes it as an editable Labels layer (an extra
  layer of kind "objects"), ready for the Review labels dock.

Main thread only.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ._layers import (
    EditTracker,
    as_label_data,
    find_in_viewer,
    find_reusable,
    unique_name,
    unwrap,
    write_labels,
)
from ._setup import RunSetup


class ResultWriter:
    """Writes the labels and extra layers of runs into a viewer; see the module docstring."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.tracker = EditTracker()
        self._previous: dict[tuple[int, Any], weakref.ref] = {}
        self._extras: dict[tuple[tuple[int, Any], str], list[weakref.ref]] = {}
        self._target: weakref.ref | None = None

    @property
    def layer(self) -> Any:
        """The layer the current or last run wrote (the viewer's handle), or None."""
        return find_in_viewer(self.viewer, self._target()) if self._target else None

    def begin(self) -> None:
        """A new run starts: it has written nothing yet."""
        self._target = None

    def write(self, setup: RunSetup, labels: np.ndarray, metadata: dict[str, Any]) -> Any:
        """Write labels for the current run: into its layer if it may, else a new one."""
        shape = tuple(labels.shape)
        into = None
        if self._target is not None:
            into = find_reusable(self.viewer, self.tracker, self._target(), shape)
        elif not setup.options.get("new_layer"):
            previous = self._previous.get(setup.key)
            if previous is not None:
                into = find_reusable(self.viewer, self.tracker, previous(), shape)
        layer = write_labels(
            self.viewer, self.tracker, labels, into=into, name=setup.name, metadata=metadata,
            transform=setup.transform,
        )
        self._target = weakref.ref(unwrap(layer))
        return layer

    def finish(self, setup: RunSetup, layer: Any) -> None:
        """After a run: remember its layer for reuse by the next run, and select it."""
        self._previous[setup.key] = weakref.ref(unwrap(layer))
        self.viewer.layers.selection.active = layer

    def replace_extra(self, setup: RunSetup, kind: str, add: Callable[[str], Any],
                      name: str | None = None) -> list[Any]:
        """Add this run's extra layer(s) of ``kind``; ``add(name)`` adds and returns them.

        The previous run's layers of that kind on the same input are removed first,
        unless every run keeps its layers or the user edited them. ``name``: the layers'
        name (made unique); default ``"<result name> <kind>"``.
        """
        key = (setup.key, kind)
        if not setup.options.get("new_layer"):
            for ref in self._extras.pop(key, []):
                old = find_in_viewer(self.viewer, ref())
                if old is not None and not self.tracker.is_edited(old):
                    self.viewer.layers.remove(old)
        added = add(unique_name(self.viewer, name or f"{setup.name} {kind}"))
        layers = list(added) if isinstance(added, list | tuple) else [added]
        for layer in layers:
            self.tracker.adopt(layer)
        self._extras[key] = [weakref.ref(unwrap(layer)) for layer in layers]
        return layers

    def add_mean_colour(self, setup: RunSetup, mean: np.ndarray) -> None:
        """Each region filled with its mean colour, as the source is shown."""
        source = setup.source
        kwargs = dict(setup.transform)

        def add(name: str) -> Any:
            if setup.rgb:
                return self.viewer.add_image(mean, name=name, rgb=True, **kwargs)
            if mean.shape[-1] == 1:
                return self.viewer.add_image(
                    mean[..., 0], name=name, colormap=source.colormap.name,
                    contrast_limits=source.contrast_limits, **kwargs,
                )
            names = [f"{name} channel {c}" for c in range(mean.shape[-1])]
            return self.viewer.add_image(mean, channel_axis=-1, name=names, **kwargs)

        self.replace_extra(setup, "mean colour", add)

    def add_objects(self, setup: RunSetup, extras: dict[str, Any],
                    metadata: dict[str, Any]) -> Any | None:
        """The objects a model separated (``extras["objects"]``, shaped like its labels), as
        a Labels layer beside the class layer; None when the model separates none."""
        objects = extras.get("objects")
        if objects is None:
            return None
        data = as_label_data(setup.restore(objects))
        if data.shape != setup.result_shape:  # a model's bug: say so, keep the class layer
            raise ValueError(f"the objects have shape {data.shape}, expected "
                             f"{setup.result_shape}")
        # Marked as the plugin's output: the training dock never takes it for painted labels.
        meta = {**metadata, "napari_unsupseg": "objects (0 = background, 1..N = objects)"}
        # "<image> objects": the objects of an image, whichever model found them.
        name = f"{setup.source_name} objects"
        if setup.plane is not None:
            name += " plane " + ",".join(str(i) for i in setup.plane)
        layers = self.replace_extra(setup, "objects", lambda unique: self.viewer.add_labels(
            data, name=unique, metadata=meta, **setup.transform), name=name)
        return layers[0]
