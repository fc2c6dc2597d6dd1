"""SCOPS part discovery: self-supervised co-part segmentation over a stack of images.

Written from the paper (Hung et al., "SCOPS: Self-Supervised Co-Part
Segmentation", CVPR 2019); no reference code is used. A part-segmentation
network maps every image of a collection of one object class to ``K + 1``
softmax channels (channel 0 = background, 1..K = parts) and is trained, with no
annotation, by four losses (see :mod:`.losses`):

- *geometric concentration*: each part's response is compact around its centre;
- *equivariance*: under a random thin-plate-spline / affine warp plus colour
  jitter, the parts of the warped image are the warped parts (KL divergence) and
  their centres move with the warp (MSE);
- *semantic consistency*: the part responses times ``K + 1`` learnable part bases
  reconstruct a feature map (MSE), with an orthonormality penalty on the bases;
  the feature map comes from a pretrained VGG-19 or ResNet when the user gives
  its weights, and otherwise from built-in texture features (see
  :mod:`.features`), which say nothing about colour;
- *saliency*: a foreground mask masks the feature map (and, our addition, a small
  cross-entropy pulls the background channel onto the mask). Without a mask or a
  brightness threshold the mask is estimated from the images (the border shows
  background, see :mod:`.saliency`).

Our additions place the boundaries between parts, which the (blurred,
colour-blind) texture features cannot: the semantic loss reconstructs the
features averaged over each colour region (a superpixel of its own image),
neighbouring pixels of like colour share a part (the pairwise term of a dense
CRF), and each pixel is pulled towards the mean parts of its colour region, a
pull that grows over the first half of training. Part colours may change from
image to image; what these use is that within one image a part's edges are
colour edges.

This module imports no torch: the napari widget reads :class:`.params.PartsParams` at
start-up. The training code lives in :mod:`.train`, imported when the engine runs.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..base.engine import Progress, Result, RunControl
from .params import (
    BACKBONE_CHOICES,
    FALLBACK_FEATURES,
    WARP_CHOICES,
    PartsParams,
    ScopsParams,
)


def discover_parts(
    images: np.ndarray,
    params: PartsParams,
    *,
    saliency: np.ndarray | None = None,
    control: RunControl | None = None,
) -> Generator[Progress, None, Result]:
    """Find ``params.n_parts`` parts shared by a stack of images of one object class.

    ``images``: channels-last ``(N, Y, X, C)`` (any numeric dtype; percentile-
    normalised over the stack). ``saliency``: optional foreground mask ``(N, Y, X)``
    (non-zero = object); it overrides ``params.saliency_threshold``; with neither,
    the foreground is estimated from the images (``params.estimate_saliency``).
    ``control``: a driver's :class:`~..engine.RunControl`. When it asks to stop,
    training ends after the current step and the result is finished as after a full
    run (read-out, centres), with ``stopped_early: True`` and ``steps`` in its
    metadata; a preview label stack ``(N, Y, X)`` (read out at the working size,
    cheap) is attached to a :class:`Progress` only when ``control.preview_due()``.
    ``None``: run to the end, no previews.

    Returns a :class:`Result` whose ``labels`` are uint8 ``(N, Y, X)`` (0 =
    background, 1..K = parts) and ``extras["centres"]`` the part centres
    ``(N, K, 2)`` as (row, column) pixel coordinates, NaN for a part absent from
    an image, and ``extras["loss_history"]`` the total loss of every step;
    ``metadata`` records the parameters, final loss terms, the features and
    saliency used, the device and timings.

    Labels are read out as: background off the saliency mask (given, thresholded
    or estimated; without one, where the background probability is at least one
    half), else the most probable part (probabilities upsampled bilinearly to the
    image size). Part centres are the centres of mass of each part's probability
    map (the landmarks of the paper), NaN where the part has no pixel.
    Lower-level access (the trained network, probabilities of new inputs, the
    initialisation baseline): :func:`.train.fit_parts` and :class:`.train.PartModel`.
    """
    from .train import discover_parts_impl

    return (yield from discover_parts_impl(images, params, saliency=saliency, control=control))


__all__ = [
    "BACKBONE_CHOICES",
    "FALLBACK_FEATURES",
    "WARP_CHOICES",
    "PartsParams",
    "ScopsParams",
    "discover_parts",
]
