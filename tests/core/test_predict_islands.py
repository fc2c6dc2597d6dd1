"""Small, uncertain islands of a class: floors measured on the training labels, islands
under them take the class around them at prediction, and nothing else changes."""

from __future__ import annotations

import numpy as np
import torch

from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.models import ModelConfig
from napari_unsupseg.core.models.checkpoints import LoadedModel
from napari_unsupseg.core.models.islands import FLOOR_FRACTION, absorb_islands, island_floors
from napari_unsupseg.core.predict import PredictParams, predict


def _square(labels: np.ndarray, y: int, x: int, side: int, value: int) -> None:
    labels[y:y + side, x:x + side] = value


def test_floor_is_a_share_of_the_smallest_painted_region():
    predicted = np.ones((80, 80), np.uint8)
    _square(predicted, 5, 5, 10, 2)     # 100 px, painted
    _square(predicted, 40, 40, 20, 2)   # 400 px, painted
    _square(predicted, 5, 60, 4, 2)     # 16 px, never painted: no say in the floor
    painted = np.zeros_like(predicted)
    painted[8, 6:12] = 2
    painted[45, 42:50] = 2
    painted[70, 2:30] = 1
    floors = island_floors([(predicted, painted)])
    assert floors == {2: int(100 * FLOOR_FRACTION),
                      1: int((80 * 80 - 516) * FLOOR_FRACTION)}
    # A second plane with a smaller painted region lowers the floor of its class.
    other = np.ones((40, 40), np.uint8)
    _square(other, 10, 10, 6, 2)
    strokes = np.zeros_like(other)
    strokes[12, 11:14] = 2
    assert island_floors([(predicted, painted), (other, strokes)])[2] == 9


def test_small_uncertain_islands_take_the_class_around_them():
    labels = np.ones((60, 90), np.uint8)
    labels[:, 60:] = 3
    confidence = np.full(labels.shape, 0.99, np.float32)
    _square(labels, 5, 5, 5, 3)          # small and uncertain: absorbed
    confidence[5:10, 5:10] = 0.8
    _square(labels, 20, 5, 5, 3)         # small but confident: kept
    _square(labels, 5, 30, 9, 3)         # uncertain, 81 px >= the floor: kept
    confidence[5:14, 30:39] = 0.8
    _square(labels, 40, 10, 5, 2)        # a small object over its own floor: kept
    confidence[40:45, 10:15] = 0.8
    _square(labels, 40, 58, 4, 3)        # touching its big region: part of it, kept
    before = labels.copy()
    changed = absorb_islands(labels, confidence, {3: 80, 2: 10})
    assert changed == 1
    assert (labels[5:10, 5:10] == 1).all()
    moved = labels != before
    assert moved.sum() == 25


def test_an_island_between_two_classes_takes_the_commoner_one():
    labels = np.ones((30, 30), np.uint8)
    labels[:, 20:] = 2
    _square(labels, 10, 14, 6, 3)  # outline: 2 on its right edge, 1 on the rest
    confidence = np.full(labels.shape, 0.5, np.float32)
    assert absorb_islands(labels, confidence, {3: 100}) == 1
    assert (labels[10:16, 14:20] == 1).all()


class _FixedLogits(torch.nn.Module):
    """Returns the same logits whatever the image (one tile covers the test image)."""

    size_multiple = 1

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits)
        self.in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[None].expand(x.shape[0], -1, -1, -1)


def _model(floors: dict[str, int]) -> LoadedModel:
    logits = torch.full((3, 64, 64), -5.0)
    logits[1] = 3.0                          # background, confident
    logits[2, 40:, :] = 6.0                  # a large confident region of class 2
    logits[2, 10:15, 10:15] = 3.2            # an uncertain 25 px island of class 2
    config = ModelConfig("torchscript", 3, in_channels=1, background=True, mean=[0.0],
                         std=[1.0], class_names=["unlabelled", "a", "b"],
                         island_floors=floors)
    return LoadedModel(_FixedLogits(logits).eval(), config, "test", "test")


def test_predict_applies_a_trained_models_floors_and_can_be_told_not_to():
    image = np.zeros((64, 64, 1), np.float32)
    plain = run_to_end(predict(image, PredictParams(), model=_model({})))
    assert (plain.labels[10:15, 10:15] == 2).all()
    result = run_to_end(predict(image, PredictParams(), model=_model({"2": 100})))
    assert (result.labels[10:15, 10:15] == 1).all()
    assert result.metadata["islands_absorbed"] == 1
    assert "confidence" not in result.extras  # computed for the rule, not asked for
    same = (result.labels == plain.labels) | (plain.labels == 2)
    assert same.all() and (result.labels[40:] == 2).all()
    off = run_to_end(predict(image, PredictParams(absorb_islands=False),
                             model=_model({"2": 100})))
    np.testing.assert_array_equal(off.labels, plain.labels)
