"""Model inference: a trained network applied tile by tile (:mod:`.engine`, :mod:`.tiles`),
at the model's own resolution (:mod:`.resolution`)."""

from .engine import InferenceParams, PredictParams, class_table, predict
from .objects import objects_of_class, separate_objects
from .resolution import predict_scene
from .tiles import TilePlan, plan_tiles

__all__ = ["InferenceParams", "PredictParams", "TilePlan", "class_table", "objects_of_class",
           "plan_tiles", "predict", "predict_scene", "separate_objects"]
