"""Model inference: a trained network applied tile by tile (:mod:`.engine`, :mod:`.tiles`),
at the model's own resolution (:mod:`.resolution`)."""

from .engine import InferenceParams, PredictParams, class_table, predict
from .resolution import predict_scene
from .tiles import TilePlan, plan_tiles

__all__ = ["InferenceParams", "PredictParams", "TilePlan", "class_table", "plan_tiles", "predict",
           "predict_scene"]
