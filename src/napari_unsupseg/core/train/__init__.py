"""Training a segmentation model on the labels a user painted (0 = unlabelled, k = class k).

- :mod:`.params`: :class:`TrainParams`, shared by the widget and the ``train`` command.
- :mod:`.data`: input checks, normalisation as prediction does it, the held-out
  validation blocks, class-balanced augmented crops (numpy only).
- :mod:`.model`: the network from scratch or from a checkpoint (head replaced when the
  class count differs), saving in this package's format.
- :mod:`.loop`: the engine :func:`train` (a generator yielding progress events whose
  ``metrics`` are :data:`TRAIN_METRICS`, returning a :class:`TrainResult` whose
  ``model`` ``predict`` runs directly).

Importing this package does not import torch.
"""

from __future__ import annotations

from .loop import TRAIN_METRICS, TrainResult, train
from .model import check_model_path, save_model
from .params import TRAIN_ARCHITECTURES, TrainParams

__all__ = ["TRAIN_ARCHITECTURES", "TrainParams", "TRAIN_METRICS", "TrainResult",
           "check_model_path", "save_model", "train"]
