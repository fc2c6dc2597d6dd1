"""The unsupervised backprop segmenter (Kanezaki, ICASSP 2018; TIP 2020): parameters
(:mod:`.params`), the engine (:mod:`.engine`), the crop path for large images
(:mod:`.large`) and their internals. torch is imported where a run starts."""

from .engine import segment
from .merge import merge_labels
from .params import (
    AUTO_SUPERPIXELS,
    DEFAULT_FEATURES,
    DEFAULT_LR,
    MERGE_SIGMA,
    NETWORKS,
    SUPERPIXEL_CHOICES,
    SYNC_EVERY_GPU,
    BackpropParams,
    default_params,
)
from .superpixels import plane_superpixels, superpixel_method, vote, vote_reference

__all__ = [
    "AUTO_SUPERPIXELS",
    "BackpropParams",
    "DEFAULT_FEATURES",
    "DEFAULT_LR",
    "MERGE_SIGMA",
    "NETWORKS",
    "SUPERPIXEL_CHOICES",
    "SYNC_EVERY_GPU",
    "default_params",
    "merge_labels",
    "plane_superpixels",
    "segment",
    "superpixel_method",
    "vote",
    "vote_reference",
]
