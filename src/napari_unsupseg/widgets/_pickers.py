"""Choosing the input: layer pickers, the channel axis or channel layers, and the planes.

:class:`LayerPicker` is a drop-down of the viewer's layers of one type that follows
layers being added, removed and renamed. :class:`ImageInput` groups what every
engine widget asks about its input image:

- the image layer;
- its channels: an RGB(A) layer's colour axis; or an axis the user names (never
  guessed); or **several single-channel layers of the same shape** taken as the
  channels of one image, as napari opens multichannel data (one Image layer per
  channel). Layers opened together (the same file or sample) are offered ticked;
- for stacks, the plane mode (the plane shown, or every plane in one of the
  engine's stack modes).

Everything here runs on the main thread; the choices are read into a
:class:`~._setup.RunSetup` at Run.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from magicgui import widgets
from napari.layers import Image
from psygnal import Signal as PsygnalSignal

from ._fit import wrap_text
from ._layers import find_in_viewer, plugin_output, same, unwrap
from ._setup import CURRENT_PLANE, image_axes, layer_data

NO_CHANNEL = "none"


class LayerPicker:
    """A drop-down of the viewer's layers of one type, kept up to date.

    It follows layers being added, removed, reordered and renamed, and keeps the
    chosen layer chosen when it is renamed. ``none_label`` adds a first entry for
    "no layer" (value ``None``). ``follow_work``: the choice follows the layer the user
    works on (the active one, a layer just added, else the newest), never a hidden one
    (a sample's ground truth) nor one of the plugin's results unless the user picks it.
    :attr:`changed` is emitted with the new layer (or ``None``) when the choice changes.
    :meth:`disconnect` stops following the viewer (call it when the widget goes away).
    """

    changed = PsygnalSignal(object)

    def __init__(
        self,
        viewer: Any,
        layer_type: type,
        *,
        label: str,
        tooltip: str = "",
        none_label: str | None = None,
        prefer_active: bool = True,
        follow_work: bool = False,
    ) -> None:
        self.viewer = viewer
        self.layer_type = layer_type
        self.none_label = none_label
        # Choices come from a callable, so that any reset_choices() (magicgui containers
        # call it) rebuilds them from the viewer instead of emptying the list.
        self.combo = widgets.ComboBox(label=label, tooltip=tooltip, choices=self._choices)
        self._current: weakref.ref | None = None
        self._following = follow_layers(viewer, self.refresh)
        self.combo.changed.connect(self._on_combo)
        active = viewer.layers.selection.active
        if prefer_active and none_label is None and isinstance(active, layer_type):
            self._current = weakref.ref(unwrap(active))
        if follow_work:
            working = self._working_layer()
            self._current = None if working is None else weakref.ref(unwrap(working))
            viewer.layers.selection.events.active.connect(self._on_worked_on)
            viewer.layers.events.inserted.connect(self._on_worked_on)
            following = self._following

            def undo() -> None:
                following()
                viewer.layers.selection.events.active.disconnect(self._on_worked_on)
                viewer.layers.events.inserted.disconnect(self._on_worked_on)

            self._following = undo
        self.refresh()

    @property
    def value(self) -> Any:
        """The chosen layer (the viewer's handle on it), or None."""
        name = self.combo.value
        if name is None:
            return None
        try:
            layer = self.viewer.layers[name]
        except (KeyError, ValueError):
            return None
        return layer if isinstance(layer, self.layer_type) else None

    @value.setter
    def value(self, layer: Any) -> None:
        self.combo.value = None if layer is None else layer.name

    def disconnect(self) -> None:
        self._following()

    def _usable(self, layer: Any) -> bool:
        """A layer the user works on: of our type, visible, not one of our results."""
        return (isinstance(layer, self.layer_type) and bool(layer.visible)
                and not plugin_output(layer))

    def _working_layer(self) -> Any | None:
        """The layer the user works on: the active one, else the newest."""
        active = self.viewer.layers.selection.active
        if self._usable(active):
            return active
        return next((layer for layer in reversed(self.viewer.layers) if self._usable(layer)),
                    None)

    def _on_worked_on(self, event: Any) -> None:
        """A layer was made active or added: choose it if it is a visible one of ours."""
        if self._usable(event.value):
            self.value = event.value

    def _on_combo(self, _value: Any) -> None:
        layer = self.value
        previous = self._current() if self._current is not None else None
        self._current = weakref.ref(unwrap(layer)) if layer is not None else None
        if not same(layer, previous):
            self.changed.emit(layer)

    def _choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, self.layer_type)]
        choices: list[tuple[str, Any]] = [(n, n) for n in names]
        if self.none_label is not None:
            choices.insert(0, (self.none_label, None))
        return choices

    def refresh(self, *_: Any) -> None:
        """Rebuild the choices from the viewer's layers, keeping the choice if it is there."""
        previous = self._current() if self._current is not None else None
        keep = find_in_viewer(self.viewer, previous) if previous is not None else None
        with self.combo.changed.blocked():
            self.combo.reset_choices()
            if keep is not None and isinstance(keep, self.layer_type):
                self.combo.value = keep.name
            elif self.none_label is not None:
                self.combo.value = None
        self._on_combo(self.combo.value)


def follow_layers(viewer: Any, callback: Callable[..., Any]) -> Callable[[], None]:
    """Call ``callback`` when layers are added, removed, moved or renamed.

    Returns a function that undoes every connection it made.
    """
    layers = viewer.layers
    renamed: list[Any] = []

    def watch_names(*_: Any) -> None:
        for layer in layers:
            if not any(layer is other for other in renamed):
                layer.events.name.connect(callback)
                renamed.append(layer)

    def on_inserted(*args: Any) -> None:
        watch_names()
        callback(*args)

    def on_removed(event: Any) -> None:
        # Let go of a removed layer at once: holding it would keep its data in memory.
        for index, layer in enumerate(renamed):
            if layer is event.value:
                layer.events.name.disconnect(callback)
                del renamed[index]
                break
        callback(event)

    events = [
        (layers.events.inserted, on_inserted),
        (layers.events.removed, on_removed),
        (layers.events.moved, callback),
        (layers.events.reordered, callback),
    ]
    for emitter, slot in events:
        emitter.connect(slot)
    watch_names()

    def undo() -> None:
        for emitter, slot in events:
            emitter.disconnect(slot)
        events.clear()
        for layer in renamed:
            layer.events.name.disconnect(callback)
        renamed.clear()

    return undo


def opened_together(a: Any, b: Any) -> bool:
    """Whether two layers came from one file or one sample (napari's ``layer.source``)."""
    for attribute in ("path", "sample"):
        first = getattr(a.source, attribute, None)
        if first is not None and first == getattr(b.source, attribute, None):
            return True
    return False


class ImageInput:
    """The image, its channels and its planes; see the module docstring."""

    def __init__(self, viewer: Any, *, offer_current_plane: bool, stack_modes: list[str],
                 volume_modes: frozenset[str] = frozenset()):
        self.viewer = viewer
        self.offer_current_plane = offer_current_plane
        self.stack_modes = stack_modes
        #: Stack modes offered only for a z-stack (exactly one axis before the plane).
        self.volume_modes = volume_modes
        self.image_picker = LayerPicker(
            viewer, Image, label="image", tooltip="The image layer to segment."
        )
        self._channel_choices: list[tuple[str, Any]] = [(NO_CHANNEL, None)]
        self._plane_choices: list[str] = [CURRENT_PLANE]
        self._layer_choices: list[tuple[str, Any]] = []
        self.channel_axis = widgets.ComboBox(
            label="channel axis",
            choices=lambda _w: self._channel_choices,
            tooltip="The axis that holds channels (colours, stains, bands), or 'none' for one "
            "channel. RGB(A) layers use their colour axis.",
        )
        self.channel_layers = widgets.Select(
            label="more channels",
            choices=lambda _w: self._layer_choices,
            tooltip="Other single-channel image layers of the same shape to use as further "
            "channels of this image (napari opens multichannel data as one layer per channel). "
            "Layers opened together with the image are ticked.",
        )
        self.channel_hint = widgets.Label(value="")
        wrap_text(self.channel_hint)
        self.plane_mode = widgets.ComboBox(
            label="planes",
            choices=lambda _w: self._plane_choices,
            tooltip="For stacks (z, t, ...): segment only the plane shown, or every plane.",
        )
        self.controls: list[widgets.Widget] = [
            self.image_picker.combo,
            self.channel_axis,
            self.channel_layers,
            self.channel_hint,
            self.plane_mode,
        ]
        self._following = follow_layers(viewer, self._refresh_channel_layers)
        self.image_picker.changed.connect(self._on_image_changed)
        self.channel_axis.changed.connect(self._update_plane_modes)
        self.channel_layers.changed.connect(self._on_channel_layers)
        self._on_image_changed(self.image_picker.value)

    @property
    def image(self) -> Any:
        return self.image_picker.value

    @property
    def extra_channels(self) -> list[Any]:
        """The further channel layers ticked (the viewer's handles), in layer order."""
        offered = {name for name, _ in self._layer_choices}
        names = set(self.channel_layers.value or ()) & offered
        return [layer for layer in self.viewer.layers if layer.name in names]

    def disconnect(self) -> None:
        self.image_picker.disconnect()
        self._following()

    def _candidates(self, image: Any) -> list[Any]:
        """Single-channel image layers shaped like ``image`` (not itself)."""
        if image is None or image.rgb or image.multiscale:
            return []
        shape = tuple(image.data.shape)
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not same(layer, image) and not layer.rgb
            and not layer.multiscale and tuple(layer.data.shape) == shape
        ]

    def _refresh_channel_layers(self, *_: Any, tick_siblings: bool = False) -> None:
        image = self.image
        candidates = self._candidates(image)
        kept = set(self.channel_layers.value or ())
        if tick_siblings:
            kept = {layer.name for layer in candidates if opened_together(layer, image)}
        self._layer_choices = [(layer.name, layer.name) for layer in candidates]
        with self.channel_layers.changed.blocked():
            self.channel_layers.reset_choices()
            self.channel_layers.value = [n for n, _ in self._layer_choices if n in kept]
        self.channel_layers.visible = bool(candidates)
        self._update_channel_axis_state()

    def _update_channel_axis_state(self) -> None:
        # With channel layers ticked, each layer is one channel: no axis to choose.
        ticked = bool(self._layer_choices and self.channel_layers.value)
        self.channel_axis.enabled = len(self._channel_choices) > 1 and not ticked

    def _on_image_changed(self, layer: Any) -> None:
        if layer is None:
            choices: list[tuple[str, Any]] = [(NO_CHANNEL, None)]
            hint = "Open or add an image layer."
        elif layer.rgb:
            choices = [("RGB(A) colours (last axis)", -1)]
            hint = ""
        else:
            shape = tuple(layer_data(layer).shape)
            choices = [(NO_CHANNEL, None)]
            if len(shape) >= 3:
                choices += [(f"axis {i} (size {n})", i) for i, n in enumerate(shape)]
            small = [i for i, n in enumerate(shape) if n <= 8] if len(shape) >= 3 else []
            hint = (
                f"Axis {small[0]} has only {shape[small[0]]} entries: if it holds channels, "
                "choose it as the channel axis."
                if small
                else ""
            )
        self._channel_choices = choices
        with self.channel_axis.changed.blocked():
            self.channel_axis.reset_choices()
            self.channel_axis.value = choices[0][1]
        self.channel_hint.value = hint
        self.channel_hint.visible = bool(hint)
        self._refresh_channel_layers(tick_siblings=True)
        self._update_plane_modes()

    def _on_channel_layers(self, *_: Any) -> None:
        if self.channel_layers.value:
            with self.channel_axis.changed.blocked():
                self.channel_axis.value = None
        self._update_channel_axis_state()
        self._update_plane_modes()

    def _update_plane_modes(self, *_: Any) -> None:
        layer = self.image
        lead: list[int] = []
        if layer is not None:
            lead, _spatial = image_axes(layer, self.channel_axis.value)
        if not lead:
            modes = [CURRENT_PLANE]
        else:
            modes = [CURRENT_PLANE] if self.offer_current_plane else []
            modes += [m for m in self.stack_modes if len(lead) == 1 or m not in self.volume_modes]
        current = self.plane_mode.value
        self._plane_choices = modes
        with self.plane_mode.changed.blocked():
            self.plane_mode.reset_choices()
            self.plane_mode.value = current if current in modes else modes[0]
        self.plane_mode.visible = bool(lead)
