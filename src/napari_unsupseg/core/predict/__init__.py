"""Model inference: a trained network applied tile by tile (:mod:`.engine`, :mod:`.tiles`)."""

from .engine import InferenceParams, PredictParams, class_table, predict
from .tiles import TilePlan, plan_tiles

__all__ = ["InferenceParams", "PredictParams", "TilePlan", "class_table", "plan_tiles", "predict"]
