"""Objects from a class map: every connected object of one class as its own label, with
touching objects split.

The split is the classic seeded watershed on the distance to the object's edge: two
touching round objects form one region whose distance map has two summits joined by a
saddle at the neck. The distance map is smoothed (Gaussian, sigma 1) so that the ragged
edge of a predicted mask does not make summits of its own, and summits less than
:data:`SUMMIT_HEIGHT` pixels above their saddle are one object (h-maxima). Chosen over a
learned distance or flow target because it needs no complete objects painted (strokes
train it as well as dense labels), adds nothing to training, and works with any model
that separates objects from background. Measured on the 60 DSB2018 fluorescence images
(``../shared/data/real-dev``): instance F1 at IoU 0.5 from the human foreground masks
0.930 with connected parts, 0.965 split this way; from Otsu's masks 0.789 -> 0.851.

A z-stack with its voxel spacing is split as a volume (the same steps in 3-D, distances
in physical units), so an object is one label through all the planes it crosses;
:func:`join_planes` instead links plane-by-plane objects by their overlap.

numpy / scipy / scikit-image only (no torch).
"""

from __future__ import annotations

import numpy as np

from ..base.errors import InputError
from ..base.images import Spacing, linked_groups, relabel_sequential, relative_spacing

#: Largest plane (pixels), or stack split as a volume (voxels), whose objects are
#: separated: the split holds a few float copies of it and costs about 2 s per megapixel
#: on a 2-core CPU (h-maxima dominate; in 3-D about as much per megavoxel).
MAX_OBJECT_PIXELS = 16_000_000
#: How far (pixels of the smoothed distance map) a summit must rise above the saddle
#: joining it to another one to seed an object of its own.
SUMMIT_HEIGHT = 1.0


def separate_objects(mask: np.ndarray, spacing: Spacing | None = None) -> np.ndarray:
    """Instance labels (uint32, 0 = not the class, 1..N) of a boolean mask ``(Y, X)`` or a
    stack of masks ``(N, Y, X)``: labelled plane by plane (numbers running on), or as one
    volume when the voxel ``spacing`` ``(z, y, x)`` is given."""
    mask = np.asarray(mask, bool)
    if mask.ndim == 2:
        return _split(mask, np.ones(2))
    if mask.ndim != 3:
        raise InputError(f"Objects are found in a plane (Y, X) or a stack (Z, Y, X); got "
                         f"shape {mask.shape}.")
    if spacing is not None:
        return _split(mask, relative_spacing(spacing))
    out = np.zeros(mask.shape, np.uint32)
    count = 0
    for plane, found in zip(mask, out, strict=True):
        found[...] = _split(plane, np.ones(2))
        found[found > 0] += count
        count = int(found.max(initial=count))
    return out


def objects_of_class(
    labels: np.ndarray, object_class: int, spacing: Spacing | None = None
) -> tuple[np.ndarray | None, dict[str, object]]:
    """The objects step of a prediction: the objects of ``object_class`` in a class map
    ``(Y, X)`` or ``(Z, Y, X)`` (as one volume when ``spacing`` is given), and what the
    metadata says of them; no objects (None) past :data:`MAX_OBJECT_PIXELS`, which bounds
    a plane, or the whole stack when it is split as a volume."""
    volume = spacing is not None and labels.ndim == 3
    size = labels.size if volume else labels.shape[-2] * labels.shape[-1]
    if size > MAX_OBJECT_PIXELS:
        what = "volumes" if volume else "planes"
        return None, {"class": object_class, "skipped": (
            f"{what} over {MAX_OBJECT_PIXELS / 1e6:.0f} megapixels are not split into "
            "objects; split the image into parts to get them")}
    found = separate_objects(labels == object_class, spacing if volume else None)
    about: dict[str, object] = {"class": object_class, "count": int(found.max(initial=0))}
    if volume:
        about["split_as"] = "volume"
    return found, about


def _split(mask: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Seeded watershed of a plane or volume; ``sides``: each axis's step in finest-voxel
    units (the distance map, its smoothing and the summit height are in those units)."""
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    if not mask.any():
        return np.zeros(mask.shape, np.uint32)
    distance = ndi.distance_transform_edt(mask, sampling=sides)
    distance = ndi.gaussian_filter(distance, 1.0 / sides)
    seeds = label(h_maxima(distance, SUMMIT_HEIGHT).astype(bool) & mask)
    found = watershed(-distance, seeds, mask=mask)
    # A part of the mask that no seed reached (thinner than the smoothing) is an object too.
    missed = label(mask & (found == 0))
    found = found.astype(np.uint32)
    found[missed > 0] = missed[missed > 0] + found.max()
    return found


def join_planes(labels: np.ndarray, min_overlap: float = 0.5) -> np.ndarray:
    """Objects found plane by plane ``(Z, Y, X)`` (ids unique across the stack) joined into
    3-D objects (uint32, 1..N): an object continues in the next plane when the two share
    at least ``min_overlap`` of the smaller one's pixels, each object continuing into at
    most one other (the largest overlaps first), as tracking nuclei through focus does."""
    labels = np.asarray(labels, np.int64)
    if labels.ndim != 3:
        raise InputError(f"Planes are joined in a stack (Z, Y, X); got shape {labels.shape}.")
    size = int(labels.max(initial=0)) + 1
    area = np.bincount(labels.ravel(), minlength=size)
    links: list[tuple[int, int]] = []
    for below, above in zip(labels[:-1], labels[1:], strict=True):
        links += _plane_links(below, above, area, size, min_overlap)
    pairs = np.asarray(links, np.int64).reshape(-1, 2)
    component = linked_groups(pairs[:, 0], pairs[:, 1], size)
    # Component numbers are arbitrary; background keeps 0, objects become 1..N.
    joined = np.where(labels > 0, component[labels] + 1, 0)
    return relabel_sequential(joined, np.uint32).astype(np.uint32)


def _plane_links(below: np.ndarray, above: np.ndarray, area: np.ndarray, size: int,
                 min_overlap: float) -> list[tuple[int, int]]:
    """One-to-one links between the objects of two neighbouring planes, largest overlap
    first, kept when the overlap covers ``min_overlap`` of the smaller object."""
    both = (below > 0) & (above > 0)
    keys, inter = np.unique(below[both] * size + above[both], return_counts=True)
    lower, upper = keys // size, keys % size
    share = inter / np.minimum(area[lower], area[upper])
    taken_lower: set[int] = set()
    taken_upper: set[int] = set()
    links = []
    for index in np.argsort(-inter, kind="stable"):
        a, b = int(lower[index]), int(upper[index])
        if share[index] >= min_overlap and a not in taken_lower and b not in taken_upper:
            links.append((a, b))
            taken_lower.add(a)
            taken_upper.add(b)
    return links
