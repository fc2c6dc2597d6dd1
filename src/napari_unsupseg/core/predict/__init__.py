"""Model inference: a trained network applied tile by tile (:mod:`.engine`, :mod:`.tiles`)."""

from .engine import InferenceParams, class_table, predict
from .tiles import TilePlan, plan_tiles

__all__ = ["InferenceParams", "TilePlan", "class_table", "plan_tiles", "predict"]
