"""Reviewing and curating label images (numpy, SciPy and scikit-image only; no Qt, no napari).

- :mod:`.table`: the object table (area, centroid, bounding box, mean intensities) in one
  vectorised pass, filters and CSV export.
- :mod:`.navigation`: the order objects are visited in, and the framing of one object.
- :mod:`.edits`: merge, split (superpixels or two seeds), delete, remove small objects, fill
  holes, relabel, superpixel painting; each computed as a :class:`~.edits.Change` of the
  affected pixels only.
- :mod:`.compare`: matching two label images at IoU > 0.5 and sorting their disagreements.
"""

from .compare import CATEGORIES, CATEGORY_COLOURS, Comparison, compare
from .edits import (
    Change,
    SuperpixelIndex,
    delete,
    fill_holes,
    merge,
    relabel_sequential,
    remove_small,
    split_by_seeds,
    split_by_superpixels,
)
from .navigation import framing, review_order, step, zoom_to_fill
from .table import STATUSES, check_labels, filter_rows, measure, write_csv

__all__ = [
    "CATEGORIES",
    "CATEGORY_COLOURS",
    "STATUSES",
    "Change",
    "Comparison",
    "SuperpixelIndex",
    "check_labels",
    "compare",
    "delete",
    "fill_holes",
    "filter_rows",
    "framing",
    "measure",
    "merge",
    "relabel_sequential",
    "remove_small",
    "review_order",
    "split_by_seeds",
    "split_by_superpixels",
    "step",
    "write_csv",
    "zoom_to_fill",
]
