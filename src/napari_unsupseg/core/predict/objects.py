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

numpy / scipy / scikit-image only (no torch).
"""

from __future__ import annotations

import numpy as np

#: Largest plane (pixels) whose objects are separated: the split holds a few float copies
#: of the plane and costs about 2 s per megapixel on a 2-core CPU (h-maxima dominate).
MAX_OBJECT_PIXELS = 16_000_000
#: How far (pixels of the smoothed distance map) a summit must rise above the saddle
#: joining it to another one to seed an object of its own.
SUMMIT_HEIGHT = 1.0


def separate_objects(mask: np.ndarray) -> np.ndarray:
    """Instance labels (uint32, 0 = not the class, 1..N) of a boolean mask ``(Y, X)`` or a
    stack of masks ``(N, Y, X)`` (labelled plane by plane, numbers running on)."""
    if mask.ndim == 3:
        out = np.zeros(mask.shape, np.uint32)
        count = 0
        for plane, found in zip(mask, out, strict=True):
            found[...] = separate_objects(plane)
            found[found > 0] += count
            count = int(found.max(initial=count))
        return out
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(mask.shape, np.uint32)
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.0)
    seeds = label(h_maxima(distance, SUMMIT_HEIGHT).astype(bool) & mask)
    found = watershed(-distance, seeds, mask=mask)
    # A part of the mask that no seed reached (thinner than the smoothing) is an object too.
    missed = label(mask & (found == 0))
    found = found.astype(np.uint32)
    found[missed > 0] = missed[missed > 0] + found.max()
    return found
