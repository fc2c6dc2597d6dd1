""""Also train on": more image / labels pairs for the Train from labels dock.

Beside the dock's main image and labels, the user adds rows (an image layer and the
labels layer painted over it) with **+** and removes them with **-**, and may choose a
folder of image files and their label files. Every pair is one more image for
:func:`napari_unsupseg.core.train.train`, which takes lists: a layer is cut like the
main image (every labelled plane of a stack is used), a file is read like the
``napari-unsupseg train`` command reads it (:mod:`napari_unsupseg.core.base.io`).

The folder rule (:data:`PAIRING_RULE`): an image ``NAME.tif`` (or ``.tiff``, ``.png``,
``.jpg``, ``.jpeg``, ``.bmp``) pairs with ``NAME_labels.tif`` (or ``.tiff``, ``.png``)
beside it, or with ``labels/NAME.tif`` in a ``labels`` sub-folder. Images without a
label file are skipped and counted; files named ``*_labels`` are never images.

Choices are read on the main thread (:meth:`TrainingPairs.inputs`); pixels are cut and
files read in the worker (:meth:`TrainingInputs.read`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from magicgui import widgets
from napari.layers import Image, Labels
from qtpy.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from ..core.base.engine import Progress
from ..core.base.errors import InputError
from ..core.base.images import as_channels_last
from ..core.base.io import PICTURE_SUFFIXES, TIFF_SUFFIXES, read_image
from ._fit import compact_combos, wrap_text
from ._folder import folder_chosen, folder_edit
from ._layers import plugin_output, same
from ._pickers import LayerPicker
from ._setup import RunSetup, layer_data, make_setup

LABELS_SUFFIX = "_labels"
LABELS_FOLDER = "labels"
IMAGE_SUFFIXES = TIFF_SUFFIXES + PICTURE_SUFFIXES
LABEL_FILE_SUFFIXES = (".tif", ".tiff", ".png")
PAIRING_RULE = (f"Each image NAME.tif (or .png, .jpg) pairs with its labels "
                f"NAME{LABELS_SUFFIX}.tif beside it, or with {LABELS_FOLDER}/NAME.tif in a "
                f"'{LABELS_FOLDER}' sub-folder.")

Pair = tuple[Any, Any]  # (image layer, labels layer)


# ----------------------------------------------------------------- files


def pair_files(folder: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """The (image, labels) files of ``folder`` by :data:`PAIRING_RULE`, and the images
    that have no label file."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    beside = {p.stem[: -len(LABELS_SUFFIX)]: p for p in files
              if p.stem.endswith(LABELS_SUFFIX) and p.suffix.lower() in LABEL_FILE_SUFFIXES}
    below = folder / LABELS_FOLDER
    inside = {} if not below.is_dir() else {
        p.stem: p for p in sorted(below.iterdir())
        if p.is_file() and p.suffix.lower() in LABEL_FILE_SUFFIXES}
    pairs, unpaired = [], []
    for path in files:
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.stem.endswith(LABELS_SUFFIX):
            continue
        labels = beside.get(path.stem) or inside.get(path.stem)
        if labels is None:
            unpaired.append(path)
        else:
            pairs.append((path, labels))
    return pairs, unpaired


def read_pair(image_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An image file channels-last (RGB files' colours are channels) and its labels."""
    loaded = read_image(image_path)
    image = as_channels_last(loaded.data, -1 if loaded.rgb else None)
    labels = np.asarray(read_image(labels_path).data)
    if labels.shape != image.shape[:-1]:
        raise InputError(f"The labels {labels_path.name} have shape {labels.shape}, but the "
                         f"image {image_path.name} has shape {image.shape[:-1]}; they must "
                         "match.")
    return image, labels


# ----------------------------------------------------------------- what training reads


def channel_count(setup: RunSetup) -> int:
    """The channels of the image a set-up cuts."""
    if setup.channel_data:
        return 1 + len(setup.channel_data)
    if setup.rgb:
        return int(setup.data.shape[-1])
    return 1 if setup.channel_axis is None else int(setup.data.shape[setup.channel_axis])


def axis_like(main: RunSetup, layer: Any) -> int | None:
    """The main image's channel axis for another layer if that layer has it with as many
    channels; else none (one channel, or an RGB layer's colours)."""
    axis = main.channel_axis
    if layer.rgb or main.rgb or main.channel_data or axis is None:
        return None
    shape = layer_data(layer).shape
    fits = -len(shape) <= axis < len(shape) and shape[axis] == main.data.shape[axis]
    return axis if fits else None


def class_colours(painted: Sequence[tuple[Any, np.ndarray]]) -> dict[int, np.ndarray]:
    """The colour of each painted class value, as its (first) labels layer shows it."""
    colours: dict[int, np.ndarray] = {}
    for layer, labels in painted:
        for value in np.unique(labels):
            if 0 < value <= 255 and int(value) not in colours:
                colours[int(value)] = np.asarray(layer.get_color(int(value)), float)
    return colours


@dataclass
class TrainingInputs:
    """Every image and labels training reads; the main pair first (its plane is previewed)."""

    setups: list[RunSetup]
    labels: list[np.ndarray]
    files: list[tuple[Path, Path]] = field(default_factory=list)
    names: list[tuple[str, str]] = field(default_factory=list)  # (image, labels)
    colours: dict[int, np.ndarray] = field(default_factory=dict)  # by class value

    @property
    def count(self) -> int:
        return len(self.setups) + len(self.files)

    def provenance(self) -> dict[str, list[str]]:
        """Where the model learnt from, for its metadata (as the command writes it)."""
        return {"images": [image for image, _ in self.names],
                "labels": [labels for _, labels in self.names]}

    def read(self) -> Generator[Progress, None, tuple[list[np.ndarray], list[np.ndarray]]]:
        """Worker thread: cut every layer's image, read every file pair."""
        images: list[np.ndarray] = []
        labels = list(self.labels)
        channels = channel_count(self.setups[0])
        for setup in self.setups:
            yield Progress(step=0, total=0, message=f"reading '{setup.source_name}'")
            images.append(setup.image())
        for image_path, labels_path in self.files:
            yield Progress(step=0, total=0, message=f"reading {image_path.name}")
            image, painted = read_pair(image_path, labels_path)
            if image.shape[-1] != channels:
                raise InputError(f"The image {image_path.name} has {image.shape[-1]} "
                                 f"channel(s), but '{self.setups[0].source_name}' has "
                                 f"{channels}; every image to train on needs the same channels.")
            images.append(image)
            labels.append(painted)
        return images, labels


# ----------------------------------------------------------------- the rows


class PairRow(QWidget):
    """One more pair: an image layer, the labels layer painted over it, and '-'."""

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image = LayerPicker(viewer, Image, label="image", prefer_active=False,
                                 tooltip="Another image layer to train on.")
        self.labels = LayerPicker(viewer, Labels, label="labels", prefer_active=False,
                                  tooltip="The labels painted over that image (0 = unlabelled).")
        self.remove_button = QPushButton("-")
        self.remove_button.setToolTip("Do not train on this pair.")
        self.remove_button.setFixedWidth(28)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.image.combo.native, 1)
        layout.addWidget(self.labels.combo.native, 1)
        layout.addWidget(self.remove_button)

    def disconnect_viewer(self) -> None:
        self.image.disconnect()
        self.labels.disconnect()


class TrainingPairs(QWidget):
    """The "Also train on" list: layer pairs added with + and removed with -, and a folder.

    ``taken()``: the dock's main (image, labels) layers, which a new row does not offer
    first; ``every_plane``: the plane mode that cuts every plane of a stack.
    """

    def __init__(self, viewer: Any, taken: Callable[[], Pair], every_plane: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.taken = taken
        self.every_plane = every_plane
        self.rows: list[PairRow] = []
        self.add_button = QPushButton("+ image and labels")
        self.add_button.setToolTip("Train also on another image layer and the labels painted "
                                   "over it (every labelled plane of a stack is used).")
        self.add_button.clicked.connect(lambda: self.add_pair())
        self.folder = folder_edit("or a folder", "A folder of images and their label files "
                                  f"to train on as well. {PAIRING_RULE}")
        self.folder_note = widgets.Label(value="", visible=False)
        wrap_text(self.folder_note)
        self.folder_form = widgets.Container(widgets=[self.folder, self.folder_note],
                                             labels=True)
        self.folder.changed.connect(self._describe_folder)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._rows = QVBoxLayout()
        layout.addLayout(self._rows)
        layout.addWidget(self.add_button)
        layout.addWidget(self.folder_form.native)

    def add_pair(self, image: Any = None, labels: Any = None) -> PairRow:
        """A new row, showing ``image`` and ``labels`` or else layers not used yet."""
        row = PairRow(self.viewer, self)
        used = [*self.taken(), *(layer for r in self.rows for layer in (r.image.value,
                                                                         r.labels.value))]
        for picker, chosen, kind in ((row.image, image, Image), (row.labels, labels, Labels)):
            chosen = chosen if chosen is not None else self._unused(kind, used)
            if chosen is not None:  # else the picker shows what it found (or nothing)
                picker.value = chosen
        row.remove_button.clicked.connect(lambda: self.remove_pair(row))
        compact_combos(row)  # as narrow as the dock's other drop-downs
        self.rows.append(row)
        self._rows.addWidget(row)
        return row

    def remove_pair(self, row: PairRow) -> None:
        self.rows.remove(row)
        row.disconnect_viewer()
        self._rows.removeWidget(row)
        row.deleteLater()

    def _unused(self, kind: type, used: list[Any]) -> Any:
        """The first layer of ``kind`` the user made (not hidden, not a result) not in use."""
        return next((layer for layer in self.viewer.layers
                     if isinstance(layer, kind) and layer.visible and not plugin_output(layer)
                     and not any(same(layer, other) for other in used)), None)

    def layer_pairs(self) -> list[Pair]:
        """The rows' pairs; a row missing either layer is refused in words."""
        pairs = []
        for row in self.rows:
            image, labels = row.image.value, row.labels.value
            if image is None or labels is None:
                raise InputError("A pair under 'Also train on' lacks its image or its labels "
                                 "layer; choose both, or remove the row with '-'.")
            pairs.append((image, labels))
        return pairs

    def file_pairs(self) -> list[tuple[Path, Path]]:
        """The folder's pairs (none without a folder); a folder where nothing pairs is
        refused in words."""
        folder = folder_chosen(self.folder)
        if folder is None:
            return []
        pairs, _unpaired = pair_files(folder)
        if not pairs:
            raise InputError(f"No image in the folder {folder} has a label file. "
                             f"{PAIRING_RULE}")
        return pairs

    def _describe_folder(self, *_: Any) -> None:
        try:
            folder = folder_chosen(self.folder)
            pairs, unpaired = pair_files(folder) if folder is not None else ([], [])
        except (InputError, OSError) as error:
            self.folder_note.value = str(error)
            self.folder_note.visible = True
            return
        text = "" if folder is None else f"{len(pairs)} image(s) with labels"
        if unpaired:
            text += f"; {len(unpaired)} without labels (skipped)"
        self.folder_note.value = text
        self.folder_note.visible = bool(text)

    def inputs(self, main: RunSetup, labels: np.ndarray, painted: Any) -> TrainingInputs:
        """Main thread: the main pair (already cut) and every other pair, checked."""
        setups, cut, names = [main], [labels], [(main.source_name, painted.name)]
        layers = [painted]
        channels = channel_count(main)
        for image, layer in self.layer_pairs():
            # Every plane, even beside a single-plane main image: each labelled one teaches.
            setup = make_setup(image, params=main.params, engine_label="training",
                               channel_axis=axis_like(main, image), plane_mode=self.every_plane)
            if channel_count(setup) != channels:
                raise InputError(f"The image '{image.name}' has {channel_count(setup)} "
                                 f"channel(s), but '{main.source_name}' has {channels}; every "
                                 "image to train on needs the same channels.")
            setups.append(setup)
            cut.append(setup.select(layer.data, f"labels layer '{layer.name}'"))
            names.append((image.name, layer.name))
            layers.append(layer)
        files = self.file_pairs()
        names += [(str(image), str(file)) for image, file in files]
        colours = class_colours(list(zip(layers, cut, strict=True)))
        return TrainingInputs(setups, cut, files, names, colours)

    def disconnect_viewer(self) -> None:
        for row in self.rows:
            row.disconnect_viewer()
