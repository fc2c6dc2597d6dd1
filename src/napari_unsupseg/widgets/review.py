"""The "Review labels" dock widget: step through objects, fix them, compare two annotations.

It composes four views over one :class:`~.review_model.ReviewModel`:

- :class:`~.review_table.ObjectTable`: the object table (also in ``layer.features``,
  so napari shows it on hover), sortable, filterable, exported as CSV;
- :class:`~.review_nav.Navigator`: previous / next (``Shift-N`` / ``N``), accept /
  reject / to fix (``A`` / ``R`` / ``T``); the camera centres on the object, zoomed
  to it, in its plane;
- :class:`~.review_actions.Actions`: merge, split, delete, remove small objects,
  fill holes, relabel, superpixel painting; each one undo step;
- :class:`~.review_compare.ComparePanel`: matching with another Labels layer and a
  disagreement layer to step through.

The table follows the layer: any edit (the actions, the brush, undo, redo) is
measured again shortly after it happens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui import widgets
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFormLayout, QLabel, QPushButton, QWidget
from superqt import QCollapsible

from ..core.base.errors import InputError
from ._dock import DockLifetime
from ._fit import FittingDock, scrolling_body
from ._layers import same
from ._pickers import LayerPicker
from .review_actions import Actions
from .review_compare import ComparePanel
from .review_model import ReviewModel
from .review_nav import Navigator
from .review_table import ObjectTable

if TYPE_CHECKING:
    import napari.viewer

#: Milliseconds to wait after an edit before measuring again (a drag is many edits).
REFRESH_DELAY_MS = 150


class ReviewWidget(DockLifetime, FittingDock, QWidget):
    """Review, curate and compare the objects of a Labels layer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.model = ReviewModel()
        self.labels = LayerPicker(viewer, Labels, label="labels",
                                  tooltip="The Labels layer to review and edit.")
        self.images = widgets.Select(choices=self._image_choices, label="measure in",
                                     tooltip="Image layers (channels) to measure mean "
                                     "intensities in; Ctrl-click for several.")
        self.images.native.setMaximumHeight(70)
        self.measure_button = QPushButton("Measure objects")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.table = ObjectTable(self.model)
        self.navigator = Navigator(viewer, self.model)
        self.actions = Actions(viewer, self.model)
        self.comparison = ComparePanel(viewer, self.model, self.review_layer)
        self._watched: Any = None
        self._step_seen: tuple[int, ...] | None = None
        self._refresh = QTimer(self)
        self._refresh.setSingleShot(True)
        self._refresh.setInterval(REFRESH_DELAY_MS)

        layout = scrolling_body(self)
        inputs = QFormLayout()
        inputs.addRow("labels", self.labels.combo.native)
        inputs.addRow("measure in", self.images.native)
        layout.addLayout(inputs)
        layout.addWidget(self.measure_button)
        layout.addWidget(self.navigator)
        layout.addWidget(self.table)
        for title, panel in (("Edit objects", self.actions), ("Compare", self.comparison)):
            section = QCollapsible(title)
            section.addWidget(panel)
            if title == "Edit objects":  # comparing is occasional: folded, the dock fits
                section.expand(animate=False)
            layout.addWidget(section)
        layout.addWidget(self.status)
        layout.addStretch()
        self.fit()
        self._connect()
        self.choose_layer(self.labels.value)

    def _connect(self) -> None:
        for view in (self.table, self.navigator, self.actions, self.comparison):
            view.message = self.show_message
        self.actions.edited = lambda: self.measure(quiet=True)
        self.labels.changed.connect(self.choose_layer)
        self.images.changed.connect(self._images_chosen)
        self.measure_button.clicked.connect(lambda: self.measure())
        self._refresh.timeout.connect(lambda: self.measure(quiet=True))
        layers = self.viewer.layers
        for event in (layers.events.inserted, layers.events.removed, layers.events.reordered):
            event.connect(self._reset_images)

    # ------------------------------------------------------------------ layers
    def _image_choices(self, _widget: Any = None) -> list[str]:
        return [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]

    def _reset_images(self, *_: Any) -> None:
        self.images.reset_choices()
        self.labels.refresh()

    def _images_chosen(self, names: Any) -> None:
        chosen = [self.viewer.layers[n] for n in names if n in self.viewer.layers]
        self.model.set_images(chosen)
        if self.model.layer is not None:
            self.measure()

    def review_layer(self, layer: Any) -> None:
        """Make ``layer`` the reviewed one (the picker follows)."""
        self.labels.value = layer

    def choose_layer(self, layer: Any) -> None:
        if same(layer, self.model.layer):
            return
        self._unwatch()
        self.model.set_layer(layer)
        if layer is None:
            return
        self._watch(layer)
        self.measure(quiet=True)

    def _watch(self, layer: Any) -> None:
        layer.events.paint.connect(self._edited)
        layer.events.data.connect(self._edited)
        layer.events.set_data.connect(self._maybe_edited)
        self._watched = layer
        self._step_seen = tuple(self.viewer.dims.current_step)

    def _unwatch(self) -> None:
        layer, self._watched = self._watched, None
        if layer is None:
            return
        for event, slot in ((layer.events.paint, self._edited), (layer.events.data, self._edited),
                            (layer.events.set_data, self._maybe_edited)):
            event.disconnect(slot)

    def _edited(self, *_: Any) -> None:
        if self.model.writing:  # the model measures its own edits
            return
        self.model.fresh = False
        self._refresh.start()

    def _maybe_edited(self, *_: Any) -> None:
        # The layer is redrawn after a change of plane (nothing to measure) and after
        # undo / redo (no other event says so): only the second keeps the plane.
        step = tuple(self.viewer.dims.current_step)
        if step == self._step_seen and not (self.navigator.moving or self.model.writing):
            self.model.fresh = False
            self._refresh.start()
        self._step_seen = step

    # ------------------------------------------------------------------ doing
    def measure(self, quiet: bool = False) -> None:
        """Measure the layer again; ``quiet``: a refusal goes to the status line only.

        Automatic measurements (a layer chosen, an edit) are quiet, so that an empty
        layer made for painting does not raise a notification; the button is not.
        """
        self._refresh.stop()
        if self.model.layer is None:
            return
        try:
            table = self.model.measure()
        except InputError as error:
            self.model.clear()
            self.show_message(str(error))
            if not quiet:
                show_error(str(error))
            return
        self.show_message(f"{table['label'].size} objects in '{self.model.layer.name}'.")

    def show_message(self, text: str) -> None:
        self.status.setText(text)

    def dispose(self) -> None:
        """Leave the layer as it was: keys, mouse modes and listeners go."""
        self._refresh.stop()
        self.actions.close_modes()
        self.navigator.unbind_keys()
        self._unwatch()
        for picker in (self.labels, self.actions.superpixels, self.comparison.candidate):
            picker.disconnect()
        layers = self.viewer.layers
        for signal in (layers.events.inserted, layers.events.removed, layers.events.reordered):
            signal.disconnect(self._reset_images)

