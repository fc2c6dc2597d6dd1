"""The backprop segmenter: the vote, recovery of known regions, scribbles, stacks, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_unsupseg.core import samples
from napari_unsupseg.core.backprop import (
    BackpropParams,
    default_params,
    merge_labels,
    segment,
    vote,
    vote_reference,
)
from napari_unsupseg.core.base.engine import RunControl, run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.base.memory import keep_heap_mapped
from napari_unsupseg.core.review.scores import hungarian_iou, majority_iou

SIZE = 112
N_REGIONS = 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mosaic() -> tuple[np.ndarray, np.ndarray]:
    return samples.mosaic(SIZE, n_regions=N_REGIONS, noise=0.05, seed=3)


def _run(image, scribbles=None, **changes):
    return run_to_end(segment(image, default_params(**changes), scribbles=scribbles))


# ------------------------------------------------------------------------ vote


@st.composite
def vote_inputs(draw):
    n = draw(st.integers(1, 300))
    n_sp = draw(st.integers(1, 12))
    n_classes = draw(st.integers(1, 5))  # few classes: ties are common
    sp = draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_sp)))
    labels = draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_classes)))
    return sp, labels


@settings(max_examples=200, deadline=None)
@given(vote_inputs())
def test_vectorised_vote_equals_reference_loop(inputs):
    superpixels, labels = inputs
    np.testing.assert_array_equal(vote(superpixels, labels), vote_reference(superpixels, labels))


def test_vote_breaks_ties_towards_the_lowest_label():
    superpixels = np.array([0, 0, 0, 0, 1, 1])
    labels = np.array([3, 1, 3, 1, 2, 0])
    np.testing.assert_array_equal(vote(superpixels, labels), [1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(vote_reference(superpixels, labels), [1, 1, 1, 1, 0, 0])


def test_vote_keeps_torch_tensors_on_their_device():
    import torch

    superpixels = torch.tensor([[0, 0, 1], [1, 1, 2]])
    labels = torch.tensor([[4, 4, 0], [2, 2, 1]])
    out = vote(superpixels, labels)
    assert isinstance(out, torch.Tensor) and out.shape == labels.shape
    assert out.tolist() == [[4, 4, 2], [2, 2, 1]]


# -------------------------------------------------------------------- segmenting


def test_recovers_mosaic_regions(mosaic):
    image, truth = mosaic
    result = _run(image)
    labels = result.labels
    assert labels.shape == truth.shape and labels.dtype in (np.uint16, np.uint32)
    n_labels = len(np.unique(labels))
    np.testing.assert_array_equal(np.unique(labels), np.arange(1, n_labels + 1))
    assert N_REGIONS <= n_labels <= 3 * N_REGIONS
    assert majority_iou(labels, truth) >= 0.8
    meta = result.metadata
    assert meta["stop_reason"] in ("converged", "min_labels")
    assert meta["iterations"][0] < BackpropParams().max_iter
    assert meta["n_labels"] == n_labels and meta["seed"] == 0 and meta["device"] == "cpu"
    assert meta["parameters"]["network"] == "fast"
    assert result.extras["superpixels"].shape == truth.shape
    assert meta["superpixel_method"] == "felzenszwalb"


def test_target_number_of_labels_matches_regions_one_to_one(mosaic):
    image, truth = mosaic
    result = _run(image, n_labels=N_REGIONS)
    labels = result.labels
    assert len(np.unique(labels)) == N_REGIONS
    assert hungarian_iou(labels, truth) >= 0.9
    assert result.metadata["stop_reason"] in ("n_labels", "converged")


def test_kanezaki_network_with_slic_and_continuity(mosaic):
    image, truth = mosaic
    result = _run(
        image, network="kanezaki", superpixel_n_segments=400, w_con=1.0,
        n_features=32, max_iter=40,
    )
    assert majority_iou(result.labels, truth) >= 0.7
    assert len(np.unique(result.labels)) <= 32
    assert result.metadata["superpixel_method"] == "slic"


def test_without_superpixels_tip_mode_runs(mosaic):
    image, truth = mosaic
    labels = _run(image, superpixels="none", w_con=1.0, max_iter=30).labels
    assert labels.shape == truth.shape
    assert majority_iou(labels, truth) >= 0.6


def test_scribbled_classes_follow_the_scribbles(mosaic):
    image, truth = mosaic
    scribbles = np.zeros(truth.shape, np.int32)
    # Two classes painted as short strokes inside two true regions; ids 3 and 7.
    first, second = 1, 4
    for region, cls in ((first, 3), (second, 7)):
        ys, xs = np.nonzero(truth == region)
        cy, cx = int(np.median(ys)), int(np.median(xs))
        stroke = (slice(cy - 1, cy + 2), slice(cx - 6, cx + 7))
        assert (truth[stroke] == region).all()
        scribbles[stroke] = cls
    result = _run(image, scribbles=scribbles)
    labels = result.labels
    # The classes keep their ids and cover (most of) their regions, and only those.
    assert np.mean(labels[truth == first] == 3) >= 0.8
    assert np.mean(labels[truth == second] == 7) >= 0.8
    assert np.mean(labels[(truth != first) & (truth != second)] == 3) < 0.1
    assert np.mean(labels[(truth != first) & (truth != second)] == 7) < 0.1
    assert result.metadata["scribble_classes"] == [3, 7]


def test_same_seed_gives_identical_labels(mosaic):
    image = mosaic[0]
    a = _run(image, seed=5, max_iter=12, patience=0).labels
    b = _run(image, seed=5, max_iter=12, patience=0).labels
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_any_channel_count(mosaic, channels):
    image, truth = mosaic
    if channels == 1:
        # A grey version in which the regions still differ: colour index as brightness.
        image = (np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.6])[truth - 1])[..., None]
        image = image + np.random.default_rng(0).normal(0, 0.03, image.shape)
    elif channels == 5:
        image = np.concatenate([image, image[..., :1] * image[..., 1:2], 1 - image[..., 2:3]], -1)
    labels = _run(image.astype(np.float32)).labels
    assert labels.shape == truth.shape
    assert majority_iou(labels, truth) >= 0.75


def test_uint16_input(mosaic):
    image, truth = mosaic
    result = _run((image * 4000 + 300).astype(np.uint16))
    assert majority_iou(result.labels, truth) >= 0.8


def test_joint_stack_gives_the_same_ids_in_every_plane():
    image, truth = samples.mosaic(96, n_regions=5, noise=0.04, seed=2)
    rng = np.random.default_rng(1)
    second = np.clip(image + rng.normal(0, 0.04, image.shape), 0, 1).astype(np.float32)
    # With the statistics merge: without it a textured region holds two ids whose shares
    # follow the noise of each plane, which is not what is tested here.
    labels = _run(
        np.stack([image, second]), stack_mode="joint", restarts=4, merge_threshold=2.5
    ).labels
    assert labels.shape == (2, 96, 96)
    # The same scene under other noise: one network, so the same pixel gets the same id.
    assert np.mean(labels[0] == labels[1]) >= 0.9
    n = int(labels.max()) + 1
    for region in range(1, 6):
        # Each region is made of the same ids in the same shares in both planes
        # (a textured region may hold two ids, so compare shares, not one majority id).
        inside = truth == region
        shares = [np.bincount(labels[z][inside], minlength=n) / inside.sum() for z in range(2)]
        assert 0.5 * np.abs(shares[0] - shares[1]).sum() < 0.15, f"region {region}"
    assert min(majority_iou(plane, truth) for plane in labels) >= 0.8


def test_plane_by_plane_stack_keeps_ids_apart(mosaic):
    image = mosaic[0][:64, :64]
    events = []
    result = run_to_end(
        segment(np.stack([image, image[::-1]]), BackpropParams(max_iter=6)), events.append
    )
    labels = result.labels
    assert labels.shape == (2, 64, 64)
    assert not set(np.unique(labels[0])) & set(np.unique(labels[1]))
    # One entry per training run: each plane's restarts in turn.
    runs = 2 * BackpropParams().restarts
    assert events[-1].total == 6 * runs and len(result.metadata["iterations"]) == runs
    assert [e.message for e in events[:2]] == ["superpixels 1/2", "superpixels 2/2"]


def test_progress_and_previews(mosaic):
    image = mosaic[0]
    events = []
    # One training run (restarts=1), so that the steps are those of one network.
    run_to_end(segment(image, BackpropParams(max_iter=6, patience=0, restarts=1),
                       control=RunControl(preview_interval=0)), events.append)
    # Every iteration, then the end of training (the bar full while the labels are finished).
    assert [e.step for e in events] == [*range(1, 7), 6]
    assert events[-1].message == "finishing the labels" and events[-1].preview is None
    events = events[:-1]
    assert all(e.total == 6 and e.loss is not None and e.n_labels for e in events)
    previews = [e.preview for e in events if e.preview is not None]
    assert len(previews) == 6 and all(p.shape == image.shape[:2] for p in previews)
    assert all(p.dtype == np.uint8 for p in previews)  # the smallest type that holds them


def test_throttled_statistics_stop_like_every_iteration(mosaic, monkeypatch):
    """The GPU path reads the statistics back every few iterations; run it on the CPU."""
    from napari_unsupseg.core.backprop import train as backprop_train

    expected = _run(mosaic[0]).metadata
    monkeypatch.setattr(backprop_train, "sync_interval", lambda device: 4)
    events = []
    result = run_to_end(segment(mosaic[0], BackpropParams()), events.append)
    assert result.metadata["stop_reason"] == expected["stop_reason"]
    # Stopping is decided at the next read-back, at most 3 iterations late.
    late = result.metadata["iterations"][0] - expected["iterations"][0]
    assert 0 <= late <= 3
    assert events[-1].message == "finishing the labels"
    events = events[:-1]  # the training's own events
    assert all((e.loss is None) == (e.step % 4 != 0 and e is not events[-1]) for e in events)


def test_min_size_merges_small_regions(mosaic):
    from skimage.measure import label as connected

    labels = _run(mosaic[0], min_size=150, superpixels="slic", superpixel_n_segments=1500,
                  max_iter=4, patience=0).labels
    pieces = connected(labels, background=-1, connectivity=1)
    assert np.bincount(pieces.ravel())[1:].min() >= 150


def test_min_labels_stops_training(mosaic):
    result = _run(mosaic[0], min_labels=20, patience=0)
    assert result.metadata["stop_reason"] == "min_labels"
    assert result.metadata["iterations"] == [1] or result.metadata["n_labels"] <= 20


def test_merge_labels_joins_the_most_similar_colours():
    labels = np.repeat(np.arange(4), 25).reshape(10, 10)
    colours = np.array([[0.0], [0.05], [1.0], [0.5]])[labels]
    merged = merge_labels(labels, colours, 3)
    np.testing.assert_array_equal(np.unique(merged), [0, 2, 3])  # 0 and 1 joined
    protected = merge_labels(labels, colours, 2, protected=np.array([0, 1]))
    assert {0, 1} <= set(np.unique(protected).tolist())


def test_keep_heap_mapped_is_harmless():
    with keep_heap_mapped() as active:
        block = np.ones(10_000_000)
        del block
    assert active in (True, False)


# ---------------------------------------------------------------------- errors


def test_bad_inputs_raise_input_error(mosaic):
    import torch

    image = mosaic[0]
    with pytest.raises(InputError, match="spatial shape"):
        _run(image, scribbles=np.zeros((10, 10), np.int32))
    with pytest.raises(InputError, match="empty"):
        _run(image, scribbles=np.zeros(image.shape[:2], np.int32))
    with pytest.raises(InputError, match="NaN"):
        _run(np.where(np.arange(SIZE)[:, None, None] == 3, np.nan, image))
    with pytest.raises(InputError):
        _run(image[..., 0])  # no channel axis
    with pytest.raises(InputError):
        _run(image, network="unet")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            _run(image, device="cuda")
    with pytest.raises(InputError):
        vote(np.array([0, 1]), np.array([0, 1, 2]))


def test_trains_under_a_callers_no_grad(mosaic):
    """A caller's ``torch.no_grad()`` (a notebook, say) must not stop the training."""
    import torch

    with torch.no_grad():
        labels = _run(mosaic[0], max_iter=3, patience=0).labels
    assert labels.shape == mosaic[1].shape
