"""Comparing the reviewed layer (the reference) with another Labels layer (the candidate).

The figures (matches at IoU > 0.5, precision, recall, F1, mean IoU of matched
pairs) are shown in the panel; the disagreements go to a Labels layer with one
object per disagreement, coloured by kind (missed, extra, split, merged), whose
``features`` say which kind and which labels each is about. "Step through
disagreements" makes that layer the reviewed one, so the same navigation visits
them. A rerun writes into the previous disagreement layer only while nobody has
edited it; otherwise a new layer is made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..core.base.errors import InputError
from ..core.review import CATEGORY_COLOURS, Comparison, compare
from ._layers import EditTracker, find_in_viewer, find_reusable, transform_for, write_labels
from ._pickers import LayerPicker
from .review_model import ReviewModel, guarded, labels_of

NO_LAYER = "(choose a layer)"


def disagreement_colormap(comparison: Comparison) -> DirectLabelColormap:
    """One fixed colour per kind of disagreement; background and unknown ids transparent."""
    table = comparison.disagreement_table
    colours: dict[int | None, Any] = {0: (0, 0, 0, 0), None: (0, 0, 0, 0)}
    for label, category in zip(table["label"].tolist(), table["category"], strict=True):
        colours[label] = CATEGORY_COLOURS[category]
    return DirectLabelColormap(color_dict=colours)


def describe(comparison: Comparison) -> str:
    s = comparison.summary()
    return (
        f"{s['n_matched']} of {s['n_reference']} reference and {s['n_candidate']} candidate "
        f"objects match (IoU > {s['iou_threshold']:g}).\n"
        f"precision {s['precision']:.3f}, recall {s['recall']:.3f}, F1 {s['f1']:.3f}, "
        f"mean IoU of matches {s['mean_iou']:.3f}\n"
        f"missed {s['n_missed']}, extra {s['n_extra']}, split {s['n_split']}, "
        f"merged {s['n_merged']}"
    )


class ComparePanel(QWidget):
    """Pick a candidate layer, compare, and review the disagreements."""

    def __init__(self, viewer: Any, model: ReviewModel,
                 review_layer: Callable[[Any], None]) -> None:
        super().__init__()
        self.viewer = viewer
        self.model = model
        self.review_layer = review_layer
        self.message: Callable[[str], None] = lambda _text: None
        self.tracker = EditTracker()
        self.candidate = LayerPicker(viewer, Labels, label="compare with", none_label=NO_LAYER,
                                     tooltip="A second annotation, or the automatic result.")
        self.compare_button = QPushButton("Compare")
        self.review_button = QPushButton("Step through disagreements")
        self.review_button.setEnabled(False)
        self.figures = QLabel("")
        self.figures.setWordWrap(True)
        self.comparison: Comparison | None = None
        self.layer: Any = None

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        inputs = QFormLayout()
        inputs.addRow("compare with", self.candidate.combo.native)
        layout.addLayout(inputs)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compare_button)
        buttons.addWidget(self.review_button)
        layout.addLayout(buttons)
        layout.addWidget(self.figures)
        self.compare_button.clicked.connect(lambda: guarded(self.compare, self.message))
        self.review_button.clicked.connect(lambda: guarded(self.review, self.message))

    def compare(self) -> Comparison:
        reference_layer, candidate_layer = self.model.layer, self.candidate.value
        if candidate_layer is None:
            raise InputError("Choose the Labels layer to compare with.")
        reference = labels_of(reference_layer)
        result = compare(reference, labels_of(candidate_layer))
        name = f"{reference_layer.name} vs {candidate_layer.name}: disagreements"
        into = find_reusable(self.viewer, self.tracker, self.layer, reference.shape)
        layer = write_labels(
            self.viewer, self.tracker, result.disagreement, into=into, name=name,
            metadata={"comparison": result.summary(), "reference": reference_layer.name,
                      "candidate": candidate_layer.name},
            transform=transform_for(reference_layer, range(reference_layer.ndim)),
        )
        with self.tracker.writing(layer):
            layer.colormap = disagreement_colormap(result)
            table = result.disagreement_table
            layer.features = {"index": table["label"], **table}
        self.comparison, self.layer = result, layer
        self.figures.setText(describe(result))
        self.review_button.setEnabled(bool(np.any(result.disagreement)))
        self.message(f"Compared with '{candidate_layer.name}'.")
        return result

    def review(self) -> None:
        layer = find_in_viewer(self.viewer, self.layer)
        if layer is None:
            raise InputError("Compare first: there is no disagreement layer to review.")
        self.review_layer(layer)
