"""Writing result layers: transforms, names, label dtypes and edit safety.

The rules every widget follows (see :class:`EditTracker` and :func:`find_reusable`):

- A result is a :class:`napari.layers.Labels` layer with an unsigned integer dtype
  (at least uint16, so that painting new labels does not overflow at once), not
  multiscale, so brush, fill and undo work on it.
- It carries the source layer's ``scale``, ``translate``, ``rotate``, ``shear`` and
  ``affine`` restricted to the axes it keeps (:func:`transform_for`), so it overlays
  the source exactly.
- A layer the user has edited (painted, filled, erased, or had its data replaced)
  is never written again. A rerun may write into the previous run's layer only if
  that layer is still in the viewer, was made by this widget, has the same shape
  and nobody touched it; otherwise the result goes to a new layer with a fresh
  name (``"coffee backprop [2]"``).
- Our own writes replace ``layer.data`` (no undo entry: the replaced labels were
  untouched output that its metadata can reproduce); they are not counted as edits.

Everything here runs on the main thread.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..core.base.images import label_dtype

#: Labels layer modes in which a mouse press starts an edit.
EDIT_MODES = frozenset({"paint", "erase", "fill", "polygon"})


def unwrap(obj: Any) -> Any:
    """The napari object behind a plugin proxy (identity checks need it)."""
    return getattr(obj, "__wrapped__", obj)


def same(a: Any, b: Any) -> bool:
    """Whether two (possibly proxied) objects are the same object."""
    return a is not None and b is not None and unwrap(a) is unwrap(b)


def find_in_viewer(viewer: Any, layer: Any) -> Any | None:
    """The viewer's own handle on ``layer`` if it is still in the viewer, else None."""
    if layer is None:
        return None
    target = unwrap(layer)
    for candidate in viewer.layers:
        if unwrap(candidate) is target:
            return candidate
    return None


def plugin_output(layer: Any) -> bool:
    """Whether this plugin wrote ``layer`` (a result or a preview: its metadata says so)."""
    metadata = getattr(layer, "metadata", None) or {}
    return "engine" in metadata or "napari_unsupseg" in metadata


def unique_name(viewer: Any, base: str) -> str:
    """``base``, or ``base [2]``, ``base [3]``, ... whichever is not taken yet."""
    names = {layer.name for layer in viewer.layers}
    if base not in names:
        return base
    k = 2
    while f"{base} [{k}]" in names:
        k += 1
    return f"{base} [{k}]"


def _shear_matrix(shear: np.ndarray, ndim: int) -> np.ndarray:
    shear = np.asarray(shear, dtype=float)
    if shear.ndim == 2:
        return shear
    matrix = np.eye(ndim)
    matrix[np.triu_indices(ndim, 1)] = shear
    return matrix


def transform_for(layer: Any, keep: Sequence[int]) -> dict[str, Any]:
    """Keyword arguments (scale, translate, rotate, shear, affine) for a layer over ``keep``.

    ``keep`` lists the axes of ``layer`` (its ``ndim`` axes; an RGB layer's colour
    axis is not one) that the new layer has, in order. Matrices are restricted to
    those axes, which is exact when the dropped axes (channels, the stack axis of a
    one-plane run) are not mixed with the kept ones by a rotation or shear, as in
    every usual case.
    """
    keep = list(keep)
    ndim = int(layer.ndim)
    square = np.ix_(keep, keep)
    affine = np.asarray(layer.affine.affine_matrix, dtype=float)
    rows = [*keep, ndim]
    return {
        "scale": tuple(np.asarray(layer.scale, dtype=float)[keep]),
        "translate": tuple(np.asarray(layer.translate, dtype=float)[keep]),
        "rotate": np.asarray(layer.rotate, dtype=float)[square],
        "shear": _shear_matrix(layer.shear, ndim)[square],
        "affine": affine[np.ix_(rows, rows)],
        "units": tuple(np.asarray(layer.units, dtype=object)[keep]),
        "axis_labels": tuple(np.asarray(layer.axis_labels, dtype=object)[keep]),
    }


def as_label_data(array: Any) -> np.ndarray:
    """Labels as a napari-editable array: the smallest unsigned type of at least 16 bits
    that holds them (16 bits, so that painting new labels does not overflow at once)."""
    labels = np.asarray(array)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, not {labels.dtype}")
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise ValueError("labels must not be negative")
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint64 if top > np.iinfo(np.uint32).max else label_dtype(max(top, 256))
    if labels.dtype != dtype:
        labels = labels.astype(dtype)
    return np.ascontiguousarray(labels)


class EditTracker:
    """The layers a widget made, and which of them the user has edited since.

    :meth:`adopt` a layer when the widget creates it; from then on a committed
    paint step (brush, eraser, fill, polygon, ``data_setitem``: napari emits
    ``events.paint`` for each) or a replacement of ``layer.data`` by anyone but
    this tracker's :meth:`writing` block marks it edited, for good (undoing the
    edit does not clear the mark: a layer that was ever edited is never written
    again). So does a mouse press on it in paint, erase, fill or polygon mode,
    before the stroke is committed.
    """

    def __init__(self) -> None:
        self._layers: dict[int, weakref.ref] = {}
        self._edited: set[int] = set()
        self._writing: int | None = None

    def _forget(self, key: int) -> None:
        self._layers.pop(key, None)
        self._edited.discard(key)

    def adopt(self, layer: Any) -> None:
        """Start watching a layer this widget created."""
        raw = unwrap(layer)
        key = id(raw)
        if key in self._layers:
            return
        self._layers[key] = weakref.ref(raw, lambda _ref, key=key: self._forget(key))
        layer.events.data.connect(self._on_change)
        if not hasattr(layer.events, "paint"):
            return  # an image or points layer: a change of its data is the edit
        layer.events.paint.connect(self._on_change)
        # A brush stroke commits its paint event only on release; a press in an
        # editing mode already counts, so that a live preview landing mid-stroke
        # goes to a new layer instead of over the stroke.
        layer.mouse_drag_callbacks.append(self._on_press)

    def _on_press(self, layer: Any, event: Any) -> None:
        if str(getattr(layer, "mode", "")) in EDIT_MODES:
            self.mark_edited(layer)

    def _on_change(self, event: Any) -> None:
        key = id(unwrap(event.source))
        if key in self._layers and key != self._writing:
            self._edited.add(key)

    def owns(self, layer: Any) -> bool:
        return layer is not None and id(unwrap(layer)) in self._layers

    def is_edited(self, layer: Any) -> bool:
        return id(unwrap(layer)) in self._edited

    def mark_edited(self, layer: Any) -> None:
        """Treat a layer as edited (never written again)."""
        if self.owns(layer):
            self._edited.add(id(unwrap(layer)))

    @contextmanager
    def writing(self, layer: Any) -> Iterator[None]:
        """Changes made inside this block are the widget's own, not edits."""
        previous, self._writing = self._writing, id(unwrap(layer))
        try:
            yield
        finally:
            self._writing = previous


def find_reusable(viewer: Any, tracker: EditTracker, layer: Any, shape: tuple[int, ...]) -> Any:
    """``layer`` (the viewer's handle on it) if a result may be written into it, else None.

    It may when it is still in the viewer, this widget made it, nobody edited it,
    it has ``shape`` and is not multiscale.
    """
    handle = find_in_viewer(viewer, layer)
    if handle is None or not tracker.owns(handle) or tracker.is_edited(handle):
        return None
    if handle.multiscale or tuple(handle.data.shape) != tuple(shape):
        return None
    return handle


def write_labels(
    viewer: Any,
    tracker: EditTracker,
    labels: np.ndarray,
    *,
    into: Any = None,
    name: str,
    metadata: dict[str, Any],
    transform: dict[str, Any],
) -> Any:
    """Write ``labels`` into ``into`` (already checked with :func:`find_reusable`) or a new layer.

    A new layer gets a unique name from ``name`` and the ``transform`` keywords,
    and is adopted by ``tracker``. Returns the layer written.
    """
    if into is not None:
        with tracker.writing(into):
            into.data = labels
            into.metadata = metadata
        return into
    layer = viewer.add_labels(
        labels, name=unique_name(viewer, name), metadata=metadata, **transform
    )
    tracker.adopt(layer)
    return layer


def show_classes(
    layer: Any, names: Sequence[str], palette: Sequence[Sequence[int]], offset: int = 0
) -> None:
    """Colour a class-label layer with the model's palette (RGB 0..255 per class) and put
    the class names in ``layer.features`` (hover shows them). ``offset``: the label of
    class 0 (1 when the model has no background class: label 0 then means unlabelled)."""
    import pandas as pd
    from napari.utils.colormaps import DirectLabelColormap

    colours: dict[Any, Any] = {None: np.array([0.5, 0.5, 0.5, 1.0]), 0: np.zeros(4)}
    for index, colour in enumerate(palette):
        if index + offset:
            colours[index + offset] = np.array([*(np.asarray(colour[:3], float) / 255.0), 1.0])
    layer.colormap = DirectLabelColormap(color_dict=colours)
    layer.features = pd.DataFrame({"index": list(range(len(names) + offset)),
                                   "class": ["unlabelled"] * offset + list(names)})
