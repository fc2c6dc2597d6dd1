"""The backprop segmenter's defaults on real fluorescence nuclei (four DSB2018 crops and two
whole fields, CC0; see ``tests/data/dsb2018/README.md``), against the baselines that
``benchmarks/bench_real.py`` runs on the 60 development images.

The foreground of a label image is chosen as a user would without the answer: the label
means split in two by Otsu's criterion, the brighter side (the package's ``bright_labels``,
which the benchmark uses too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.segmentation import felzenszwalb

from napari_unsupseg.core.backprop import default_params, segment
from napari_unsupseg.core.backprop.bright import bright_labels
from napari_unsupseg.core.base.engine import run_to_end

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CROPS = Path(__file__).resolve().parents[1] / "data" / "dsb2018"


@pytest.fixture(scope="module")
def crops() -> list[tuple[np.ndarray, np.ndarray]]:
    """(grey image (Y, X, 1) uint8, nucleus mask) of each crop."""
    found = []
    for path in sorted(CROPS.glob("*.png")):
        if path.stem.endswith("_nuclei"):
            continue
        image = np.asarray(Image.open(path))[..., np.newaxis]
        nuclei = np.asarray(Image.open(path.with_name(f"{path.stem}_nuclei.png"))) > 0
        found.append((image, nuclei))
    assert len(found) == 4
    return found


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def mean_iou(crops, segmenter) -> float:
    return float(np.mean([iou(segmenter(image), nuclei) for image, nuclei in crops]))


def backprop_foreground(image: np.ndarray) -> np.ndarray:
    labels = run_to_end(segment(image, default_params(seed=0))).labels
    return bright_labels(labels, image[..., 0])


def otsu_foreground(image: np.ndarray) -> np.ndarray:
    smooth = ndi.gaussian_filter(image[..., 0].astype(float), 1.0)
    return smooth > threshold_otsu(smooth)


def felzenszwalb_foreground(image: np.ndarray) -> np.ndarray:
    """Felzenszwalb at the best setting of the benchmark's grid on the 60 nuclei images."""
    rgb = np.repeat(image, 3, axis=-1)
    labels = felzenszwalb(rgb, scale=100, sigma=0.8, min_size=20, channel_axis=-1)
    return bright_labels(labels, image[..., 0])


def test_defaults_beat_felzenszwalb_on_real_nuclei(crops):
    """On the 60 development images: 0.839-0.841 (seeds 0-2) against 0.743."""
    ours = mean_iou(crops, backprop_foreground)
    theirs = mean_iou(crops, felzenszwalb_foreground)
    assert ours >= theirs + 0.03, (ours, theirs)


def test_the_large_image_path_places_outlines_on_real_nuclei(crops):
    """The tiled path (forced here by a small memory budget) finishes its labels as the
    whole-image engine does. On the 60 development images through that path (seed 0): 0.837
    with the outlines placed (and the labels cut at the two-class level), 0.798 without
    either."""

    def tiled(place: str):
        def foreground(image: np.ndarray) -> np.ndarray:
            params = default_params(seed=0, memory_budget_mb=400, place_outlines=place)
            result = run_to_end(segment(image, params))
            assert result.metadata["mode"] == "crops"
            return bright_labels(result.labels, image[..., 0])

        return foreground

    placed, unplaced = mean_iou(crops, tiled("auto")), mean_iou(crops, tiled("off"))
    assert placed >= unplaced + 0.05, (placed, unplaced)


@pytest.mark.xfail(strict=True, reason="not reached: on the 60 development images the "
                   "defaults give 0.839-0.841 against Otsu's 0.824 (the goal: 0.854)")
def test_defaults_beat_otsu_on_real_nuclei(crops):
    ours = mean_iou(crops, backprop_foreground)
    theirs = mean_iou(crops, otsu_foreground)
    assert ours >= theirs + 0.03, (ours, theirs)


@pytest.fixture(scope="module")
def glowing_fields() -> list[tuple[np.ndarray, np.ndarray]]:
    """Two whole real fields where dim nuclei lie beside bright ones with a wide glow
    (``tests/data/dsb2018/README.md``): (grey image (256, 256, 1) uint8, nucleus mask)."""
    found = []
    for path in sorted((CROPS / "fields").glob("*.png")):
        if not path.stem.endswith("_nuclei"):
            nuclei = np.asarray(Image.open(path.with_name(f"{path.stem}_nuclei.png"))) > 0
            found.append((np.asarray(Image.open(path))[..., np.newaxis], nuclei))
    assert len(found) == 2
    return found


def test_the_cut_at_the_two_class_level_keeps_dim_nuclei_apart_from_the_glow(glowing_fields):
    """On fields where one network label holds the dim nuclei with the glow of the bright
    ones, no choice of labels gives the nuclei unless that label is cut: with the cut, every
    seed is at or above Otsu's threshold there, and the worst seed far above the worst
    without it. (On all 60 development images, seeds 0-2: foreground IoU 0.839-0.841
    against 0.826-0.833, largest spread between seeds on an image 0.075 against 0.349.)"""

    def scores(image: np.ndarray, nuclei: np.ndarray, cut: str) -> list[float]:
        return [iou(bright_labels(run_to_end(segment(image, default_params(
            seed=seed, level_split=cut))).labels, image[..., 0]), nuclei) for seed in range(3)]

    for image, nuclei in glowing_fields:
        with_cut, without = scores(image, nuclei, "auto"), scores(image, nuclei, "off")
        assert min(with_cut) >= iou(otsu_foreground(image), nuclei), with_cut
        assert min(with_cut) >= min(without) + 0.05, (with_cut, without)


def test_bright_objects_match_more_nuclei_than_otsus_objects():
    """The segmenter's objects (``bright_objects``) against Otsu's mask split the same way,
    on all six shipped images (crops and fields): instance F1 at IoU 0.5, mean over the
    images (seed 0: 0.853 against 0.823; seeds 1 and 2: 0.854, 0.843). On the 60
    development images, seed 0: 0.852 against 0.840."""
    from napari_unsupseg.core.predict.objects import separate_objects
    from napari_unsupseg.core.review.compare import compare

    ours, theirs = [], []
    for path in sorted(CROPS.glob("**/*_nuclei.png")):
        instances = np.asarray(Image.open(path)).astype(np.int64)
        image = np.asarray(Image.open(path.with_name(path.name.replace("_nuclei", ""))))
        image = image[..., np.newaxis]
        result = run_to_end(segment(image, default_params(seed=0, bright_objects=True)))
        ours.append(compare(instances, result.extras["objects"]).f1)
        theirs.append(compare(instances, separate_objects(otsu_foreground(image))).f1)
    assert len(ours) == 6
    assert np.mean(ours) >= np.mean(theirs) + 0.02, (ours, theirs)

