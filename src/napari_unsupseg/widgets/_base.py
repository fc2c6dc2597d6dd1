"""The base class of every engine's dock widget.

:class:`EngineWidget` does what all engine widgets share, so that a new engine's
widget is a short subclass (see :mod:`.preseg` and :mod:`.backprop`):

- an Image layer picker that follows layers being added, removed and renamed;
- the channel axis (RGB layers: their colour axis; otherwise "none" or an axis
  the user names: never guessed) and, for stacks, the plane mode (the current
  plane, or every plane in one of the engine's stack modes);
- the parameter form, built by :mod:`._form` from the engine's dataclass, with
  the advanced parameters folded away;
- Run / Cancel, a generator worker (``napari.qt.threading.create_worker``) with a
  progress bar in napari's activity dock and one in the widget;
- live previews, throttled by wall-clock time in the worker thread;
- result layers written on the main thread with the source's transform, never
  over a layer the user has edited (:mod:`._layers`);
- errors as napari notifications in plain words, and back to idle.

Extension points (class attributes and methods a subclass sets or overrides)
---------------------------------------------------------------------------
``params_type``
    The engine's parameter dataclass (importable without torch).
``engine_label``
    Short name used in result layer names (``"<image> <engine_label>"``).
``hidden_params``
    Fields the form leaves out because the widget sets them.
``param_overrides``
    Defaults for the widget that differ from the dataclass's.
``stack_param`` / ``stack_modes``
    How "every plane" runs are offered: ``stack_modes`` maps a label shown to the
    user to the value given to the ``stack_param`` field (``None``: leave it).
``offer_current_plane``
    ``False`` for engines that need the whole stack (part discovery): stacks then
    offer only the ``stack_modes``.
``preview_interval``
    Seconds between two previews shown (0.25: at most 4 updates a second).
``offer_mean_colour``
    Whether the "mean-colour image" option is shown.
:meth:`engine`
    Start the engine generator. **Runs in the worker thread**: it must not touch
    Qt or napari; everything it needs comes in ``image``, ``params``, ``inputs``.
:meth:`extra_controls`
    magicgui widgets placed under the image choices (e.g. a scribbles picker).
:meth:`collect_inputs`
    Main thread, at Run: read further layers (copies, cut like the image with
    :meth:`RunSetup.select`) for :meth:`engine`. Raise ``InputError`` to refuse.
:meth:`write_extras`
    Main thread, after a run: add layers for ``Result.extras`` if wanted.
:meth:`style_result`
    Main thread, after a run: class names (``layer.features``), colormap, ...
:meth:`result_metadata`
    The metadata stored on a result layer.

How a run behaves
-----------------
- Threading: Run reads every choice on the main thread into a :class:`RunSetup`;
  the worker thread cuts the image (:meth:`RunSetup.image`), runs the engine and
  yields its ``Progress`` events; layers are created and changed only in the
  ``yielded`` / ``returned`` / ``aborted`` handlers, on the main thread. The
  worker's generator never raises: failures come back as values, so napari adds
  no traceback notification of its own (and superqt's silent handling of a
  ``RuntimeError`` in a worker, which never emits ``finished``, is avoided).
- Throttling: previews are dropped in the worker thread unless
  ``preview_interval`` seconds have passed since the last one sent, so the main
  thread gets at most 4 label maps a second, however fast the engine goes.
- Cancel (the button, or the activity dock's) calls ``worker.quit()``: the
  worker stops at the engine's next ``yield``, the engine generator is closed, and
  the last preview shown stays as the result (metadata ``stopped_early: True``):
  "stop it when it looks right".
- Layers: previews and the final labels go to one layer per run. It is the
  previous result of the same image (and plane) when that one is untouched (its
  data is replaced, not undoable: it held nothing the user made), or a new layer
  ``"<image> <engine> [2]"``. A layer the user paints on, even during the run, is
  never written again; the run carries on in a new layer. "new result layer for
  every run" keeps every result.

Signals: :attr:`EngineWidget.run_finished` (``str``: ``"done"``, ``"stopped"``,
``"failed"``) is emitted when a run has ended and the widget is idle again.
"""

from __future__ import annotations

import logging
import time
import traceback
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from magicgui import widgets
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from psygnal import Signal as PsygnalSignal
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..core.engine import EngineRun, Progress, Result, provenance
from ..core.errors import InputError
from ..core.images import as_channels_last, mean_colour
from ._form import ParamForm
from ._layers import (
    EditTracker,
    as_label_data,
    find_in_viewer,
    find_reusable,
    same,
    transform_for,
    unique_name,
    unwrap,
    write_labels,
)

if TYPE_CHECKING:
    import napari.viewer

logger = logging.getLogger(__name__)

CURRENT_PLANE = "current plane"
NO_CHANNEL = "none"


# --------------------------------------------------------------------------- pickers


class LayerPicker:
    """A drop-down of the viewer's layers of one type, kept up to date.

    It follows layers being added, removed, reordered and renamed, and keeps the
    chosen layer chosen when it is renamed. ``none_label`` adds a first entry for
    "no layer" (value ``None``). :attr:`changed` is emitted with the new layer
    (or ``None``) when the choice changes.
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
    ) -> None:
        self.viewer = viewer
        self.layer_type = layer_type
        self.none_label = none_label
        # Choices come from a callable, so that any reset_choices() (magicgui containers
        # call it) rebuilds them from the viewer instead of emptying the list.
        self.combo = widgets.ComboBox(label=label, tooltip=tooltip, choices=self._choices)
        self._current: weakref.ref | None = None
        layers = viewer.layers
        layers.events.inserted.connect(self._on_inserted)
        layers.events.removed.connect(self.refresh)
        layers.events.moved.connect(self.refresh)
        layers.events.reordered.connect(self.refresh)
        for layer in layers:
            layer.events.name.connect(self.refresh)
        self.combo.changed.connect(self._on_combo)
        active = layers.selection.active
        if prefer_active and none_label is None and isinstance(active, layer_type):
            self._current = weakref.ref(unwrap(active))
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

    def _on_inserted(self, event: Any) -> None:
        event.value.events.name.connect(self.refresh)
        self.refresh()

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


# --------------------------------------------------------------------------- run setup


@dataclass
class RunSetup:
    """Everything a run needs, read on the main thread when Run is pressed.

    The image is cut and reshaped in the worker thread (:meth:`image`), so a large
    or lazy (dask) image does not block the window.

    Axes: ``data`` is the layer's data. ``channel_axis`` is the data axis holding
    channels (``None``: one channel). The last two other axes are the plane (Y, X);
    any axes before them are *leading* axes (z, t, ...). In a current-plane run
    ``plane`` holds the index on each leading axis; otherwise the leading axes are
    flattened into one stack axis for the engine and restored afterwards.
    """

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

    @property
    def stacked(self) -> bool:
        """Whether the engine sees a stack (N, Y, X, C) rather than one plane."""
        return self.plane is None and len(self.lead_shape) > 0

    @property
    def result_shape(self) -> tuple[int, ...]:
        return (*self.lead_shape, *self.spatial_shape) if self.stacked else self.spatial_shape

    def _plane_index(self, ndim: int, lead_axes: tuple[int, ...]) -> tuple[Any, ...]:
        index: list[Any] = [slice(None)] * ndim
        if self.plane is not None:
            for axis, i in zip(lead_axes, self.plane, strict=True):
                index[axis] = i
        return tuple(index)

    def image(self) -> np.ndarray:
        """The engine's input: channels-last ``(Y, X, C)`` or ``(N, Y, X, C)``."""
        data = self.data
        ndim = len(data.shape)
        array = np.asarray(data[self._plane_index(ndim, self.lead_axes)])
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


@dataclass
class _Outcome:
    result: Result
    labels: np.ndarray
    mean: np.ndarray | None


@dataclass
class _Failure:
    error: BaseException
    details: str


@dataclass
class _RunState:
    setup: RunSetup
    generator: Iterator[Any] | None = None
    worker: Any = None
    target: Any = None  # weakref to the layer this run writes into
    previewed: bool = False
    last_event: Progress | None = None
    image: np.ndarray | None = None
    outcome: str = "failed"
    stopping: bool = False
    started: float = field(default_factory=time.perf_counter)
    pending: Progress | None = None  # newest preview not shown yet
    last_preview: float = -np.inf  # time.monotonic() of the last preview shown


# --------------------------------------------------------------------------- the widget


class EngineWidget(QWidget):
    """Base dock widget: pick an image, set parameters, run an engine, get layers.

    Subclasses set :attr:`params_type` and :attr:`engine_label` and implement
    :meth:`engine`; see the module docstring for every extension point.
    """

    #: Emitted when a run has ended and the widget is idle: "done", "stopped", "failed".
    run_finished = Signal(str)

    params_type: ClassVar[type]
    engine_label: ClassVar[str] = "segmentation"
    hidden_params: ClassVar[tuple[str, ...]] = ()
    param_overrides: ClassVar[dict[str, Any]] = {}
    stack_param: ClassVar[str | None] = None
    stack_modes: ClassVar[dict[str, Any]] = {"every plane": None}
    offer_current_plane: ClassVar[bool] = True
    preview_interval: ClassVar[float] = 0.25
    offer_mean_colour: ClassVar[bool] = True
    run_label: ClassVar[str] = "Run"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.tracker = EditTracker()
        self._state: _RunState | None = None
        # Previous result per (source layer, plane): weak references, for reuse.
        self._previous: dict[tuple[int, Any], weakref.ref] = {}
        self._mean_layers: dict[tuple[int, Any], list[weakref.ref]] = {}
        self._last_status = 0.0
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.timeout.connect(self._flush_preview)
        self._build()

    # ----------------------------------------------------------------- building

    def _build(self) -> None:
        self.image_picker = LayerPicker(
            self.viewer, Image, label="image", tooltip="The image layer to segment."
        )
        self._channel_choices: list[tuple[str, Any]] = [(NO_CHANNEL, None)]
        self._plane_choices: list[str] = [CURRENT_PLANE]
        self.channel_axis = widgets.ComboBox(
            label="channel axis",
            choices=lambda _w: self._channel_choices,
            tooltip="The axis that holds channels (colours, stains, bands), or 'none' for one "
            "channel. RGB(A) layers use their colour axis.",
        )
        self.channel_hint = widgets.Label(value="")
        self.plane_mode = widgets.ComboBox(
            label="planes",
            choices=lambda _w: self._plane_choices,
            tooltip="For stacks (z, t, ...): segment only the plane shown, or every plane.",
        )
        self.inputs = widgets.Container(
            widgets=[
                self.image_picker.combo,
                self.channel_axis,
                self.channel_hint,
                self.plane_mode,
                *self.extra_controls(),
            ],
            labels=True,
        )
        self.form = ParamForm(
            self.params_type, hidden=self.hidden_params, overrides=self.param_overrides
        )
        self.new_layer_each_run = widgets.CheckBox(
            value=False,
            text="new result layer for every run",
            tooltip="Unticked, a rerun replaces the previous result of the same image if you "
            "have not edited it. Edited results are never overwritten.",
        )
        self.mean_colour = widgets.CheckBox(
            value=False,
            text="add a mean-colour image",
            tooltip="Also show each region filled with its mean colour: a quick look at the "
            "result.",
            visible=self.offer_mean_colour,
        )
        self.options = widgets.Container(
            widgets=[self.new_layer_each_run, self.mean_colour], labels=False
        )

        self.run_button = QPushButton(self.run_label)
        self.run_button.setToolTip("Run on the chosen image.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip(
            "Stop the run. A live preview shown so far is kept as the result."
        )
        self.cancel_button.setEnabled(False)
        self.reset_button = QPushButton("Defaults")
        self.reset_button.setToolTip("Set every parameter back to its default.")
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.reset_button.clicked.connect(self.form.reset)
        buttons = QHBoxLayout()
        for button in (self.run_button, self.cancel_button, self.reset_button):
            buttons.addWidget(button)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

        layout = QVBoxLayout(self)
        layout.addWidget(self.inputs.native)
        layout.addWidget(self.form.basic.native)
        if self.form.has_advanced:
            self.advanced = QCollapsible("Advanced settings", self)
            self.advanced.addWidget(self.form.advanced.native)
            layout.addWidget(self.advanced)
        layout.addWidget(self.options.native)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.image_picker.changed.connect(self._on_image_changed)
        self.channel_axis.changed.connect(self._update_plane_modes)
        self._on_image_changed(self.image_picker.value)

    # ----------------------------------------------------------------- extension points

    def extra_controls(self) -> list[widgets.Widget]:
        """magicgui widgets shown under the image choices (default: none)."""
        return []

    def collect_inputs(self, setup: RunSetup) -> dict[str, Any]:
        """Further inputs for :meth:`engine`, read on the main thread at Run (default: none)."""
        return {}

    def engine(self, image: np.ndarray, params: Any, inputs: dict[str, Any]) -> EngineRun:
        """Start the engine generator. Runs in the worker thread: no Qt, no napari here."""
        raise NotImplementedError

    def write_extras(self, result: Result, setup: RunSetup) -> None:
        """Add layers for ``result.extras`` (default: nothing). Main thread."""

    def style_result(self, layer: Any, result: Result, setup: RunSetup) -> None:
        """Dress the final result layer (class names in ``layer.features``, a colormap...).

        Main thread, after each complete run (default: nothing).
        """

    def result_metadata(self, setup: RunSetup, metadata: dict[str, Any]) -> dict[str, Any]:
        """The metadata of a result layer: the engine's plus where the result came from."""
        return {
            **metadata,
            "napari": {
                "source_layer": setup.source_name,
                "channel_axis": setup.channel_axis,
                "rgb": setup.rgb,
                "plane_mode": setup.plane_mode,
                "plane": None if setup.plane is None else list(setup.plane),
            },
        }

    # ----------------------------------------------------------------- axes and choices

    @property
    def is_running(self) -> bool:
        return self._state is not None

    @property
    def worker(self) -> Any:
        """The running worker (``None`` when idle)."""
        return self._state.worker if self._state is not None else None

    @property
    def result_layer(self) -> Any:
        """The layer the current or last run wrote (the viewer's handle), or None."""
        state = self._state or getattr(self, "_last_state", None)
        if state is None or state.target is None:
            return None
        return find_in_viewer(self.viewer, state.target())

    def _on_image_changed(self, layer: Any) -> None:
        if layer is None:
            choices: list[tuple[str, Any]] = [(NO_CHANNEL, None)]
            hint = "Open or add an image layer."
        elif layer.rgb:
            choices = [("RGB(A) colours (last axis)", -1)]
            hint = ""
        else:
            shape = tuple(layer.data[0].shape if layer.multiscale else layer.data.shape)
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
        self.channel_axis.enabled = len(choices) > 1
        self.channel_hint.value = hint
        self.channel_hint.visible = bool(hint)
        self._update_plane_modes()

    def _axes(self, layer: Any, channel_axis: int | None) -> tuple[list[int], list[int]]:
        """(leading axes, spatial axes) of the layer's data, the channel axis left out."""
        shape = self._data(layer).shape
        if layer.rgb:
            axes = list(range(len(shape) - 1))
        else:
            axes = [a for a in range(len(shape)) if a != channel_axis]
        return axes[:-2], axes[-2:]

    @staticmethod
    def _data(layer: Any) -> Any:
        return layer.data[0] if layer.multiscale else layer.data

    def _update_plane_modes(self, *_: Any) -> None:
        layer = self.image_picker.value
        lead: list[int] = []
        if layer is not None:
            lead, spatial = self._axes(layer, self.channel_axis.value)
        if not lead:
            modes = [CURRENT_PLANE]
        else:
            modes = [CURRENT_PLANE] if self.offer_current_plane else []
            modes += list(self.stack_modes)
        current = self.plane_mode.value
        self._plane_choices = modes
        with self.plane_mode.changed.blocked():
            self.plane_mode.reset_choices()
            self.plane_mode.value = current if current in modes else modes[0]
        self.plane_mode.visible = bool(lead)

    # ----------------------------------------------------------------- running

    def _setup(self) -> RunSetup:
        """Read the choices into a :class:`RunSetup`; InputError in plain words."""
        layer = self.image_picker.value
        if layer is None:
            raise InputError("Choose an image layer to segment (there is none in the viewer).")
        if not isinstance(layer, Image):
            raise InputError(f"The layer '{layer.name}' is not an image layer.")
        data = self._data(layer)
        shape = tuple(data.shape)
        rgb = bool(layer.rgb)
        channel_axis = len(shape) - 1 if rgb else self.channel_axis.value
        lead, spatial = self._axes(layer, channel_axis)
        if len(spatial) < 2:
            raise InputError(
                f"The image '{layer.name}' (shape {shape}) has no plane left once axis "
                f"{channel_axis} is taken as channels; choose 'none' as the channel axis."
            )
        plane_mode = self.plane_mode.value if lead else CURRENT_PLANE
        stack_value: dict[str, Any] = {}
        plane: tuple[int, ...] | None = None
        if lead and plane_mode == CURRENT_PLANE:
            plane = self._current_plane(layer, lead, shape)
        elif lead and self.stack_param is not None:
            value = self.stack_modes.get(plane_mode)
            if value is not None:
                stack_value[self.stack_param] = value
        params = self.form.params(**stack_value)
        # Axes of the layer (an RGB layer's colour axis is not one of them) the result keeps.
        keep = list(spatial) if plane is not None else [*lead, *spatial]
        name = f"{layer.name} {self.engine_label}"
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
            options={
                "mean_colour": bool(self.mean_colour.value and self.offer_mean_colour),
                "new_layer": bool(self.new_layer_each_run.value),
            },
        )

    def _current_plane(self, layer: Any, lead: list[int], shape: tuple[int, ...]) -> tuple:
        """The index on each leading axis of the plane the viewer shows."""
        position = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
        return tuple(int(np.clip(np.round(position[a]), 0, shape[a] - 1)) for a in lead)

    def run(self) -> None:
        """Start a run (does nothing while one is running)."""
        if self._state is not None:
            return
        try:
            setup = self._setup()
            inputs = self.collect_inputs(setup)
        except Exception as exc:  # InputError, or a bug: plain words, window alive
            if not isinstance(exc, InputError):
                logger.exception("preparing the run failed")
            self._notify_error(exc)
            self.run_finished.emit("failed")
            return
        state = _RunState(setup=setup)
        generator = self._drive(state, inputs)
        state.generator = generator

        def work() -> Any:
            return (yield from generator)

        work.__qualname__ = work.__name__ = f"{self.engine_label} of {setup.source_name}"
        worker = create_worker(
            work,
            _progress={"total": 0, "desc": f"{self.engine_label}: {setup.source_name}"},
            _start_thread=False,
        )
        state.worker = worker
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._state = state
        self._set_busy(True)
        self._set_status(f"Running {self.engine_label} on '{setup.source_name}'...")
        worker.start()

    def cancel(self) -> None:
        """Stop the running worker at its next step (about a second at most)."""
        state = self._state
        if state is None or state.stopping:
            return
        state.stopping = True
        self.cancel_button.setEnabled(False)
        self._set_status("Stopping...")
        state.worker.quit()

    def _drive(self, state: _RunState, inputs: dict[str, Any]) -> Any:
        """The worker's generator (worker thread): prepare, run, throttle previews.

        Never raises: a failure is returned as a :class:`_Failure`, so that the
        main thread shows it in plain words (and napari adds no traceback).
        """
        setup = state.setup
        try:
            yield Progress(step=0, total=0, message="reading the image")
            image = setup.image()
            state.image = image
            yield Progress(step=0, total=0, message="starting")
            run = self.engine(image, setup.params, inputs)
            last_preview = -np.inf
            try:
                while True:
                    try:
                        event = next(run)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    if event.preview is not None:
                        now = time.monotonic()
                        if now - last_preview >= self.preview_interval:
                            last_preview = now
                            # A copy: the engine may keep updating the array it lent.
                            preview = as_label_data(np.array(setup.restore(event.preview)))
                            event = replace(event, preview=preview)
                        else:
                            event = replace(event, preview=None)
                    yield event
            finally:
                run.close()
            if not isinstance(result, Result):
                raise TypeError("the engine returned no Result")
            labels = as_label_data(setup.restore(result.labels))
            if labels.shape != setup.result_shape:
                raise ValueError(
                    f"the engine returned labels of shape {labels.shape}, "
                    f"expected {setup.result_shape}"
                )
            mean = None
            if setup.options.get("mean_colour"):
                mean = setup.restore(mean_colour(image, np.asarray(result.labels)))
            return _Outcome(result, labels, mean)
        except Exception as exc:
            return _Failure(exc, traceback.format_exc())

    # ----------------------------------------------------------------- worker handlers

    def _on_yielded(self, event: Progress) -> None:
        state = self._state
        if state is None or state.stopping:
            return
        state.last_event = event
        try:
            self._show_progress(state, event)
        except Exception:  # a progress display glitch must not stop the run
            logger.exception("showing progress failed")
        if event.preview is None:
            return
        # Previews arrive at most every preview_interval from the worker, but they
        # can queue up while the main thread is busy: show the newest, on time.
        state.pending = event
        wait = state.last_preview + self.preview_interval - time.monotonic()
        if wait <= 0:
            self._flush_preview()
        elif not self._preview_timer.isActive():
            self._preview_timer.start(int(wait * 1000) + 1)

    def _flush_preview(self) -> None:
        """Write the newest pending preview (main thread)."""
        state = self._state
        if state is None or state.stopping or state.pending is None:
            return
        event, state.pending = state.pending, None
        try:
            self._write_result(state, event.preview, self._preview_metadata(state, event))
            state.previewed = True
            state.last_preview = time.monotonic()
        except Exception as exc:  # never leave an exception in a Qt slot
            logger.exception("showing a preview failed")
            self._notify_error(exc)
            self.cancel()

    def _show_progress(self, state: _RunState, event: Progress) -> None:
        pbar = getattr(state.worker, "pbar", None)
        if event.total > 0:
            if pbar is not None:
                if pbar.total != event.total:
                    pbar.total = event.total
                if event.step > pbar.n:
                    pbar.update(event.step - pbar.n)
            self.progress_bar.setRange(0, event.total)
            self.progress_bar.setValue(min(event.step, event.total))
        now = time.monotonic()
        if now - self._last_status < 0.1 and event.step < event.total:
            return
        self._last_status = now
        parts = []
        if event.total > 0:
            parts.append(f"step {event.step}/{event.total}")
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4g}")
        if event.n_labels is not None:
            parts.append(f"{event.n_labels} labels")
        if event.message:
            parts.append(event.message)
        self._set_status(" · ".join(parts))

    def _on_returned(self, value: Any) -> None:
        state = self._state
        if state is None:
            return
        state.pending = None  # the result supersedes any preview not shown yet
        if isinstance(value, _Failure):
            logger.error("%s failed:\n%s", self.engine_label, value.details)
            self._notify_error(value.error)
            return
        try:
            outcome: _Outcome = value
            setup = state.setup
            metadata = self.result_metadata(setup, dict(outcome.result.metadata))
            layer = self._write_result(state, outcome.labels, metadata)
            self.style_result(layer, outcome.result, setup)
            self._finish_layers(state, layer, outcome.mean)
            self.write_extras(outcome.result, setup)
            state.outcome = "done"
            n = int(outcome.labels.max(initial=0))
            seconds = time.perf_counter() - state.started
            self._set_status(f"Done: {n} labels in {seconds:.1f} s, in layer '{layer.name}'.")
        except Exception as exc:
            logger.exception("writing the result failed")
            self._notify_error(exc)

    def _on_aborted(self) -> None:
        state = self._state
        if state is None:
            return
        state.outcome = "stopped"
        state.stopping = True  # also when stopped from the activity dock
        state.pending = None
        self._preview_timer.stop()
        event = state.last_event
        step = f" at step {event.step}/{event.total}" if event and event.total else ""
        layer = find_in_viewer(self.viewer, state.target()) if state.target else None
        if not state.previewed or layer is None:
            self._set_status(f"Stopped{step}; nothing was written.")
            return
        try:
            setup = state.setup
            if not self.tracker.is_edited(layer):
                extra = {
                    "stopped_early": True,
                    "step": event.step if event else None,
                    "total": event.total if event else None,
                }
                metadata = provenance(self.engine_label, setup.params, **extra)
                with self.tracker.writing(layer):
                    layer.metadata = self.result_metadata(setup, metadata)
            mean = None
            if setup.options.get("mean_colour") and state.image is not None:
                flat = np.asarray(layer.data)
                if setup.stacked:
                    flat = flat.reshape((-1, *setup.spatial_shape))
                mean = setup.restore(mean_colour(state.image, flat))
            self._finish_layers(state, layer, mean)
            self._set_status(f"Stopped{step}; the last preview is kept in '{layer.name}'.")
        except Exception as exc:
            logger.exception("keeping the preview failed")
            self._notify_error(exc)

    def _on_errored(self, exc: BaseException) -> None:
        # _drive returns failures instead of raising; this is a last resort.
        if self._state is not None:
            self._notify_error(exc)

    def _on_finished(self) -> None:
        state = self._state
        if state is None:
            return
        self._preview_timer.stop()
        state.pending = None
        self._state = None
        self._last_state = state
        try:
            if state.generator is not None:
                state.generator.close()  # ends the engine at once after a cancel
        except Exception:  # noqa: BLE001 - cleanup must not break the UI
            logger.exception("closing the engine failed")
        state.image = None
        self._set_busy(False)
        if state.outcome == "failed" and not self.status.text().startswith("Failed"):
            self._set_status("Failed; see the notification.")
        self.run_finished.emit(state.outcome)

    # ----------------------------------------------------------------- layers

    def _preview_metadata(self, state: _RunState, event: Progress) -> dict[str, Any]:
        return {
            "engine": self.engine_label,
            "status": f"live preview at step {event.step}/{event.total}",
            "napari": {"source_layer": state.setup.source_name},
        }

    def _key(self, setup: RunSetup) -> tuple[int, Any]:
        return (id(unwrap(setup.source)), setup.plane)

    def _write_result(self, state: _RunState, labels: np.ndarray, metadata: dict) -> Any:
        """Write labels for this run: into its layer if it may, else into a new one."""
        setup = state.setup
        shape = tuple(labels.shape)
        into = None
        if state.target is not None:
            into = find_reusable(self.viewer, self.tracker, state.target(), shape)
        elif not setup.options.get("new_layer"):
            previous = self._previous.get(self._key(setup))
            if previous is not None:
                into = find_reusable(self.viewer, self.tracker, previous(), shape)
        layer = write_labels(
            self.viewer,
            self.tracker,
            labels,
            into=into,
            name=setup.name,
            metadata=metadata,
            transform=setup.transform,
        )
        state.target = weakref.ref(unwrap(layer))
        return layer

    def _finish_layers(self, state: _RunState, layer: Any, mean: np.ndarray | None) -> None:
        """After a run: remember the result for reuse, add the mean-colour image, select."""
        setup = state.setup
        key = self._key(setup)
        self._previous[key] = weakref.ref(unwrap(layer))
        if mean is not None:
            self._write_mean_colour(setup, key, mean)
        self.viewer.layers.selection.active = layer

    def _write_mean_colour(self, setup: RunSetup, key: tuple[int, Any], mean: np.ndarray) -> None:
        if not setup.options.get("new_layer"):
            for ref in self._mean_layers.pop(key, []):
                old = find_in_viewer(self.viewer, ref())
                if old is not None:
                    self.viewer.layers.remove(old)
        name = unique_name(self.viewer, f"{setup.name} mean colour")
        source = setup.source
        kwargs = dict(setup.transform)
        if setup.rgb:
            layers = [self.viewer.add_image(mean, name=name, rgb=True, **kwargs)]
        elif mean.shape[-1] == 1:
            kwargs.update(colormap=source.colormap.name, contrast_limits=source.contrast_limits)
            layers = [self.viewer.add_image(mean[..., 0], name=name, **kwargs)]
        else:
            names = [f"{name} channel {c}" for c in range(mean.shape[-1])]
            added = self.viewer.add_image(mean, channel_axis=-1, name=names, **kwargs)
            layers = list(added) if isinstance(added, list | tuple) else [added]
        self._mean_layers[key] = [weakref.ref(unwrap(layer)) for layer in layers]

    # ----------------------------------------------------------------- UI state

    def _set_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.reset_button.setEnabled(not busy)
        for container in (self.inputs, self.form.basic, self.form.advanced, self.options):
            container.enabled = not busy
        if busy:
            self.progress_bar.setRange(0, 0)
        else:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(1 if self._last_outcome_ok() else 0)

    def _last_outcome_ok(self) -> bool:
        state = getattr(self, "_last_state", None)
        return state is not None and state.outcome == "done"

    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    def _notify_error(self, exc: BaseException) -> None:
        """Show an error as a napari notification in plain words (main thread)."""
        message = error_message(exc)
        self._set_status(f"Failed: {message}")
        show_error(message)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self.cancel()
        super().closeEvent(event)


def error_message(exc: BaseException) -> str:
    """The plain-words message for an exception: InputError as is, else 'Segmentation failed'."""
    if isinstance(exc, InputError):
        return str(exc)
    text = str(exc) or type(exc).__name__
    return f"Segmentation failed: {text}"
