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

This module imports no torch: the napari widget reads :class:`ScopsParams` at
start-up. The training code lives in :mod:`.train`, imported when the engine runs.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ..base.device import DEVICE_CHOICES
from ..base.engine import Progress, Result, RunControl
from ..base.params import param

#: Part-segmentation networks. ``small`` is our CPU-friendly default (see
#: :class:`.nets.SmallPartNet`); the DeepLab ones (from :mod:`..models.deeplab`, trained
#: from scratch, output stride 8) are for a GPU.
BACKBONE_CHOICES = ("small", "deeplabv3plus_mobilenet", "deeplabv3plus_resnet50")

#: Deformations used by the equivariance loss.
WARP_CHOICES = ("tps", "affine")

#: What the semantic-consistency loss reconstructs when no feature weights are given.
FALLBACK_FEATURES = (
    "built-in texture features (rotation-invariant multi-scale filter energies of "
    "brightness, divided by the local mean brightness, and with a foreground mask the "
    "texture's direction relative to the object's long axis; no colour)"
)


@dataclass
class ScopsParams:
    """Parameters of :func:`discover_parts`; defaults work on a CPU in minutes.

    Loss weights: the paper uses (concentration, equivariance, semantic,
    orthonormality) = (0.1, 10, 0.1, 100) with its own normalisation, a pretrained
    ResNet and 100k GPU steps. Our losses are means over pixels in normalised
    coordinates with unit-length features (see :mod:`.losses`), so the numbers do
    not carry over one to one; the equivariance (10) and orthonormality (100)
    weights are the paper's, the concentration (1) and semantic (300) weights are
    raised so that a network trained from scratch for a few hundred CPU steps
    splits the object into parts instead of giving it to one part, and the four
    terms that are not in the paper (saliency 10, diversity 1, colour affinity 30,
    colour regions 300) can be set to 0.
    """

    n_parts: int = param(4, "How many parts (K) to find; label 0 is the background.",
                         min=1, max=32, label="parts (K)")
    iterations: int = param(300, "Training steps (one batch of images each).", min=1,
                            max=1_000_000)
    working_size: int = param(64, "Images are resized so that their longer side is this "
                              "many pixels for training (labels come back at full size).",
                              min=32, max=1024)
    batch_size: int = param(6, "Images per training step.", min=1, max=256, advanced=True)
    backbone: str = param("small", "Part-segmentation network, trained from scratch: 'small' "
                          "is a light dilated CNN, quick on a CPU; the DeepLabV3+ networks "
                          "(MobileNetV2 or ResNet-50 backbone) want a GPU.",
                          choices=BACKBONE_CHOICES)
    feature_weights: str | None = param(
        None, "A torchvision-layout VGG-19 or ResNet state dict (.pth) whose features the "
        "semantic-consistency loss reconstructs; none = built-in texture features.",
        label="feature weights file")
    saliency_threshold: float | None = param(
        None, "Foreground = pixels whose normalised brightness (0..1) is above this; none = "
        "no threshold (then the foreground is estimated, see estimate_saliency; a saliency "
        "mask given directly overrides both).", min=0.0, max=1.0)
    estimate_saliency: bool = param(
        True, "Without a mask or threshold, estimate the foreground: pixels whose colour "
        "is unlike the image border's (the border shows background).", advanced=True)
    saliency_dark: bool = param(False, "With a saliency threshold: the objects are darker "
                                "than the background.", advanced=True)
    w_concentration: float = param(1.0, "Weight of the geometric-concentration loss.",
                                   min=0.0, advanced=True)
    w_equivariance: float = param(10.0, "Weight of the equivariance loss (KL divergence "
                                  "between the parts of a warped image and the warped parts).",
                                  min=0.0, advanced=True)
    w_equivariance_centre: float = param(1.0, "Weight of the part-centre term of the "
                                         "equivariance loss.", min=0.0, advanced=True)
    w_semantic: float = param(300.0, "Weight of the semantic-consistency loss.", min=0.0,
                              advanced=True)
    w_orthonormal: float = param(100.0, "Weight of the orthonormality penalty on the part "
                                 "bases.", min=0.0, advanced=True)
    w_saliency: float = param(10.0, "Weight of the cross-entropy that "
                              "pulls the background channel onto the background.", min=0.0,
                              advanced=True)
    w_diversity: float = param(1.0, "Weight of a term (not in the paper) that keeps every "
                               "part in use: the gap between the parts' average shares of the "
                               "foreground and an even split.", min=0.0, advanced=True)
    w_colour_affinity: float = param(30.0, "Weight of a term (not in the paper) that gives "
                                     "neighbouring pixels of like colour the same part, so "
                                     "that boundaries between parts follow the colour edges "
                                     "of each image.", min=0.0, advanced=True)
    w_region: float = param(300.0, "Weight of a term (not in the paper) that pulls each "
                            "pixel's parts towards their mean over its colour region (a "
                            "superpixel of its own image); it grows over the first half of "
                            "the steps.", min=0.0, advanced=True)
    pool_features: bool = param(True, "Reconstruct, in the semantic-consistency loss, the "
                                "features averaged over each colour region (sharp at the "
                                "image's colour edges) rather than per pixel.", advanced=True)
    region_scale: float = param(16.0, "Size of the colour regions: the Felzenszwalb scale "
                                "at the working size (larger = fewer, larger regions).",
                                min=1.0, advanced=True)
    warp: str = param("tps", "Random deformation for the equivariance loss: thin-plate "
                      "spline (plus an affine part) or affine only.", choices=WARP_CHOICES,
                      advanced=True)
    max_rotation: float = param(30.0, "Largest rotation of the random warp, in degrees.",
                                min=0.0, max=180.0, advanced=True)
    colour_jitter: bool = param(True, "Jitter brightness, contrast, saturation and hue of "
                                "the warped image.", advanced=True)
    learning_rate: float = param(2e-3, "Learning rate of the network (Adam); the part bases "
                                 "learn 5x faster.", min=0.0, max=1.0, advanced=True)
    device: str = param("auto", "Where to compute: auto = CUDA, then Apple MPS, then CPU.",
                        choices=DEVICE_CHOICES)
    seed: int = param(0, "Random seed: the same seed on the CPU gives the same parts.", min=0)


def discover_parts(
    images: np.ndarray,
    params: ScopsParams,
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
    "ScopsParams",
    "discover_parts",
]
