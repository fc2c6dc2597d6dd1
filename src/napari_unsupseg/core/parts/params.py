"""The parameters of part discovery (no torch: the napari widget reads them at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.device import DEVICE_CHOICES
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
class PartsParams:
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


#: The earlier name of :class:`PartsParams` (scripts written against it keep working).
ScopsParams = PartsParams
