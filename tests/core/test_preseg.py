"""Presegmentation: every method on grey, RGB and multichannel planes, and the engine."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unsupseg.core import samples
from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.preseg import (
    PRESEG_METHODS,
    PresegParams,
    absorb_small_regions,
    presegment,
    run_preseg,
)

SIZE = 96
# Settings that give on the order of a hundred superpixels on a 96 px plane.
SMALL = dict(n_segments=120, scale=32.0, min_size=20)


@pytest.fixture(scope="module")
def mosaic() -> tuple[np.ndarray, np.ndarray]:
    return samples.mosaic(SIZE, n_regions=6, noise=0.03, seed=1)


def _with_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey (mean), RGB, or RGB plus derived bands."""
    if channels == 1:
        return image.mean(axis=-1, keepdims=True)
    extra = [image[..., :1] * image[..., 1:2], 1.0 - image[..., 2:3]]
    return np.concatenate([image, *extra], axis=-1)[..., :channels]


def _purity(labels: np.ndarray, truth: np.ndarray) -> float:
    """Share of pixels that lie in their superpixel's majority true region."""
    n_truth = int(truth.max()) + 1
    joint = np.bincount((labels.astype(np.int64) * n_truth + truth).ravel())
    joint = np.pad(joint, (0, (-len(joint)) % n_truth)).reshape(-1, n_truth)
    return float(joint.max(axis=1).sum() / joint.sum())


@pytest.mark.parametrize("method", sorted(PRESEG_METHODS))
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_methods_give_int32_labels_from_one(mosaic, method, channels):
    image = _with_channels(mosaic[0], channels)
    labels = presegment(image, PresegParams(method=method, **SMALL))
    assert labels.dtype == np.int32
    assert labels.shape == image.shape[:2]
    n = int(labels.max())
    # Numbered 1..n without gaps.
    np.testing.assert_array_equal(np.unique(labels), np.arange(1, n + 1))
    assert 4 <= n <= SIZE * SIZE // 16, f"{method}: implausible {n} superpixels"


@pytest.mark.parametrize("method", sorted(PRESEG_METHODS))
def test_superpixels_respect_region_boundaries(mosaic, method):
    image, truth = mosaic
    labels = presegment(image, PresegParams(method=method, **SMALL))
    assert _purity(labels, truth) >= 0.9


def test_registry_functions_work_with_their_own_defaults(mosaic):
    for method, function in PRESEG_METHODS.items():
        labels = function(mosaic[0])
        assert labels.dtype == np.int32 and labels.min() == 1, method


@pytest.mark.parametrize("method", ["slic", "felzenszwalb", "watershed"])
def test_defaults_give_hundreds_of_segments_on_512px(method):
    from skimage.transform import resize

    photo = resize(samples.coffee(), (512, 512), preserve_range=True).astype(np.uint8)
    n = int(presegment(photo, PresegParams(method=method)).max())
    assert 500 <= n <= 2000, f"{method}: {n} segments"


def test_uint16_input_is_normalised(mosaic):
    image = (mosaic[0] * 3000 + 200).astype(np.uint16)
    as_float = presegment(mosaic[0], PresegParams(method="felzenszwalb", **SMALL))
    as_uint16 = presegment(image, PresegParams(method="felzenszwalb", **SMALL))
    # Percentile normalisation makes the scale of the values irrelevant.
    assert abs(int(as_uint16.max()) - int(as_float.max())) <= max(3, as_float.max() // 5)
    assert _purity(as_uint16, mosaic[1]) >= 0.9


def test_engine_on_a_stack_gives_ids_unique_across_planes(mosaic):
    stack = np.stack([mosaic[0], mosaic[0][::-1]])
    events = []
    result = run_to_end(run_preseg(stack, PresegParams(method="slic", **SMALL)), events.append)
    labels = result.labels
    assert labels.shape == (2, SIZE, SIZE)
    assert labels.dtype in (np.uint16, np.uint32)
    assert [e.step for e in events] == [1, 2] and all(e.total == 2 for e in events)
    first, second = set(np.unique(labels[0])), set(np.unique(labels[1]))
    assert not first & second
    assert 0 not in first | second
    np.testing.assert_array_equal(np.unique(labels), np.arange(1, labels.max() + 1))
    assert result.metadata["engine"] == "preseg"
    assert result.metadata["n_labels"] == int(labels.max())


def test_engine_on_a_plane(mosaic):
    result = run_to_end(run_preseg(mosaic[0], PresegParams(method="watershed", **SMALL)))
    assert result.labels.shape == (SIZE, SIZE)
    assert result.labels.min() == 1


def test_absorb_small_regions_leaves_only_large_pieces():
    rng = np.random.default_rng(0)
    labels = np.zeros((60, 60), np.int32)
    labels[:, 30:] = 1
    specks = rng.random(labels.shape) < 0.02
    labels[specks] = 2
    pieces = absorb_small_regions(labels, 10)
    sizes = np.bincount(pieces.ravel())
    assert sizes[sizes > 0].min() >= 10
    kept = absorb_small_regions(labels, 10, keep_ids=True)
    np.testing.assert_array_equal(np.unique(kept), [0, 1])
    assert (kept[:, :29] == 0).mean() > 0.99 and (kept[:, 31:] == 1).mean() > 0.99


@pytest.mark.parametrize(
    "image",
    [
        np.full((32, 32, 3), np.nan, np.float32),
        np.zeros((32, 32), np.float32),  # no channel axis
        np.zeros((1, 32, 3), np.float32),  # too small
    ],
)
def test_bad_images_raise_input_error(image):
    with pytest.raises(InputError):
        presegment(image, PresegParams())


def test_unknown_method_raises_input_error(mosaic):
    with pytest.raises(InputError, match="method"):
        presegment(mosaic[0], PresegParams(method="magic"))
    with pytest.raises(InputError):
        run_to_end(run_preseg(np.zeros((2, 2, 8, 8, 3)), PresegParams()))


def test_params_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, napari_unsupseg.core.preseg, napari_unsupseg.core.backprop; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
