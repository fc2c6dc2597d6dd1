"""The review core without a viewer: table, order, edits and comparison on known label images."""

from __future__ import annotations

import numpy as np
import pytest
from _labels import damaged, grid_mask
from skimage.measure import regionprops_table

from napari_unsupseg.core import review as R
from napari_unsupseg.core.base.errors import InputError


def blobs(seed: int = 0, shape=(70, 90)) -> np.ndarray:
    from skimage.measure import label

    rng = np.random.default_rng(seed)
    return label(rng.random(shape) > 0.55).astype(np.uint16)


# --------------------------------------------------------------------------- table


@pytest.mark.parametrize("ndim", [2, 3])
def test_table_equals_regionprops(ndim):
    rng = np.random.default_rng(1)
    shape = (70, 90) if ndim == 2 else (6, 30, 40)
    from skimage.measure import label

    labels = label(rng.random(shape) > 0.6).astype(np.uint32)
    labels[labels == 5] = 0  # a gap in the label ids
    image = rng.random(shape).astype(np.float32)
    table = R.measure(labels, {"0": image}, spacing=(2.0,) * ndim)
    expected = regionprops_table(
        labels, image, properties=("label", "area", "centroid", "bbox", "intensity_mean")
    )
    assert 5 not in table["label"]
    np.testing.assert_array_equal(table["label"], expected["label"])
    np.testing.assert_array_equal(table["area"], expected["area"])
    for key in expected:
        if key.startswith(("centroid", "bbox")):
            np.testing.assert_allclose(table[key], expected[key], atol=1e-9)
    np.testing.assert_allclose(table["mean_intensity-0"], expected["intensity_mean"], rtol=1e-6)
    if ndim == 3:
        np.testing.assert_array_equal(table["volume"], table["area"] * 8.0)


def test_table_of_huge_label_ids_and_no_background():
    labels = np.full((20, 20), 2**40, np.int64)
    labels[:5] = 7
    table = R.measure(labels)
    assert table["label"].tolist() == [7, 2**40]
    assert table["area"].tolist() == [100, 300]


@pytest.mark.parametrize(
    ("labels", "image", "message"),
    [
        (np.ones((8, 8), np.float32), None, "whole numbers"),
        (np.zeros((8, 8), np.uint8), None, "no objects"),
        (np.ones((8, 8), np.uint8), np.ones((8, 9)), "must match"),
    ],
)
def test_table_refuses_bad_input(labels, image, message):
    with pytest.raises(InputError, match=message):
        R.measure(labels, None if image is None else {"x": image})


def test_csv_round_trip(tmp_path):
    table = R.measure(grid_mask())
    path = R.write_csv(table, tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    assert lines[0].split(",")[:2] == ["label", "area"]
    assert len(lines) == 21 and lines[1].startswith("1,100,")


# --------------------------------------------------------------------------- navigation


def test_order_and_step():
    table = {"label": np.array([1, 2, 3, 4]), "area": np.array([5, 50, 5, 20])}
    order = R.review_order(table, "area", descending=True)
    assert order.tolist() == [2, 4, 1, 3]
    assert R.step(order, 4, 1) == 1 and R.step(order, 3, 1) == 2 and R.step(order, 2, -1) == 3
    assert R.step(order, None, 1) == 2 and R.step(order, 99, -1) == 3
    keep = R.filter_rows(table, "area", low=10)
    assert R.review_order(table, keep=keep).tolist() == [2, 4]
    assert R.step([], 1) is None


def test_framing_and_zoom():
    table = R.measure(grid_mask())
    frame = R.framing(table, 7)
    assert frame.center == (4 + 14 + 4.5, 4 + 14 + 4.5)
    assert R.zoom_to_fill((10, 10), (600, 800), fill=0.5) == 30.0
    with pytest.raises(InputError, match="no object with label 99"):
        R.framing(table, 99)


# --------------------------------------------------------------------------- edits


def _applied(labels, change):
    out = labels.copy()
    change.apply(out)
    return out


def test_merge_changes_only_the_merged_labels():
    labels = grid_mask()
    change = R.merge(labels, [2, 8, 3])
    after = _applied(labels, change)
    assert set(np.unique(after[labels == 8])) == {2} and set(np.unique(after[labels == 3])) == {2}
    untouched = ~np.isin(labels, [2, 3, 8])
    np.testing.assert_array_equal(after[untouched], labels[untouched])
    assert change.size == 200  # only the pixels of 3 and 8 are written
    assert change.mask.shape == (change.box[0].stop - change.box[0].start,
                                 change.box[1].stop - change.box[1].start)


def test_boxes_from_a_table_give_the_same_changes():
    labels = grid_mask()
    table = R.measure(labels)
    boxes = {k: R.table.bbox_of(table, k - 1) for k in (2, 3, 8)}
    hinted, scanned = R.merge(labels, [2, 3, 8], boxes=boxes), R.merge(labels, [2, 3, 8])
    assert hinted.box == scanned.box
    np.testing.assert_array_equal(hinted.values, scanned.values)


@pytest.mark.parametrize("action", ["merge", "delete", "split", "seeds", "paint"])
def test_remeasure_after_an_edit_equals_a_full_measure(action):
    labels = blobs(3, (80, 100)).astype(np.uint32)
    image = np.random.default_rng(2).random(labels.shape)
    table = R.measure(labels, {"x": image})
    big = np.argsort(-table["area"])[:3]
    a, b, c = (int(table["label"][i]) for i in big)
    centre = R.framing(table, a).center
    change = {
        "merge": lambda: R.merge(labels, [a, b]),
        "delete": lambda: R.delete(labels, [a, c]),
        "split": lambda: R.split_by_superpixels(
            labels, a, (np.arange(labels.shape[1])[None, :] // 3).repeat(80, 0)),
        "seeds": lambda: R.split_by_seeds(labels, a, _two_points(labels, a)),
        "paint": lambda: R.SuperpixelIndex(np.arange(labels.size).reshape(labels.shape) // 7
                                           + 1).paint(labels, [int(centre[0]) * 100 // 7], b),
    }[action]()
    assert change.size > 0
    before = labels[change.box][change.mask]
    after = labels.copy()
    change.apply(after)
    affected = np.union1d(before, change.values)
    quick = R.table.remeasure(table, after, change.box, affected, {"x": image})
    full = R.measure(after, {"x": image})
    assert list(quick) == list(full)
    for key in full:
        np.testing.assert_allclose(quick[key], full[key], err_msg=key)


def test_remeasure_reads_only_the_region_around_the_edit(monkeypatch):
    labels = grid_mask()
    table = R.measure(labels)
    change = R.merge(labels, [2, 3])
    after = labels.copy()
    change.apply(after)
    seen = []
    real = R.table.measure
    monkeypatch.setattr(R.table, "measure", lambda lab, *a, **k: seen.append(lab.shape)
                        or real(lab, *a, **k))
    quick = R.table.remeasure(table, after, change.box, [2, 3], None)
    assert seen == [(10, 24)]  # objects 2 and 3 and the gap between them
    full = real(after)
    for key in full:
        np.testing.assert_array_equal(quick[key], full[key])


def _two_points(labels, label):
    rows, cols = np.nonzero(labels == label)
    return [(rows[0], cols[0]), (rows[-1], cols[-1])]


def test_delete_and_remove_small():
    labels = grid_mask()
    labels[labels == 4] = 0
    labels[0:3, 60:62] = 4  # a 6-pixel object in the margin
    after = _applied(labels, R.delete(labels, [1, 20]))
    assert not np.isin(after, [1, 20]).any() and (after == 2).sum() == 100
    small = _applied(labels, R.remove_small(labels, 50))
    assert (small == 4).sum() == 0 and (small == 5).sum() == 100
    assert R.remove_small(labels, 2).size == 0


def test_edits_refuse_missing_labels():
    labels = grid_mask()
    for action in (lambda: R.merge(labels, [1, 99]), lambda: R.delete(labels, [99])):
        with pytest.raises(InputError, match="no object with label 99"):
            action()
    with pytest.raises(InputError, match="two labels"):
        R.merge(labels, [1])
    with pytest.raises(InputError, match="whole numbers"):
        R.delete(labels.astype(float), [1])


def test_split_by_superpixels():
    labels = grid_mask()
    superpixels = np.zeros_like(labels)
    superpixels[:, :11] = 1  # label 1 spans columns 4..13: 7 columns here, 3 there
    superpixels[:, 11:] = 2
    after = _applied(labels, R.split_by_superpixels(labels, 1, superpixels))
    assert (after == 1).sum() == 70 and (after == 21).sum() == 30
    np.testing.assert_array_equal(after[labels != 1], labels[labels != 1])
    with pytest.raises(InputError, match="single superpixel"):
        R.split_by_superpixels(labels, 2, np.ones_like(labels))


def test_split_by_seeds_cuts_a_dumbbell_at_its_neck():
    labels = np.zeros((30, 60), np.uint16)
    yy, xx = np.mgrid[:30, :60]
    labels[(yy - 15) ** 2 + (xx - 15) ** 2 < 100] = 5
    labels[(yy - 15) ** 2 + (xx - 44) ** 2 < 100] = 5
    labels[13:17, 15:45] = 5
    labels[0:3, 0:3] = 2
    after = _applied(labels, R.split_by_seeds(labels, 5, [(15, 15), (15, 44)]))
    assert set(np.unique(after)) == {0, 2, 5, 6}
    assert after[15, 10] == 5 and after[15, 50] == 6
    assert abs(int((after == 5).sum()) - int((after == 6).sum())) <= 30
    with pytest.raises(InputError, match="not inside label 5"):
        R.split_by_seeds(labels, 5, [(0, 59), (15, 44)])


def test_fill_holes_only_inside_one_object():
    labels = grid_mask()
    labels[7:9, 7:9] = 0  # a hole in 1
    labels[4:14, 12:18] = 2  # 1 and 2 now touch...
    labels[10, 13] = 0  # ...and this gap lies in 2 only
    labels[0:2, 0:2] = 0
    after = _applied(labels, R.fill_holes(labels))
    assert (after[7:9, 7:9] == 1).all() and after[10, 13] == 2
    assert (after[0, :] == 0).all()  # the outside stays outside
    only_2 = _applied(labels, R.fill_holes(labels, ids=[2]))
    assert (only_2[7:9, 7:9] == 0).all() and only_2[10, 13] == 2


def test_fill_holes_in_3d():
    labels = np.zeros((7, 9, 9), np.uint16)
    labels[1:6, 1:8, 1:8] = 4
    labels[3, 4, 4] = 0  # a cavity
    after = _applied(labels, R.fill_holes(labels))
    assert after[3, 4, 4] == 4 and (after == 4).sum() == 5 * 7 * 7


def test_edits_on_huge_label_values():
    labels = np.zeros((10, 10), np.uint64)
    labels[:5] = 2**40
    labels[7, 7] = 3
    assert np.unique(_applied(labels, R.relabel_sequential(labels))).tolist() == [0, 1, 2]
    assert np.unique(_applied(labels, R.merge(labels, [3, 2**40]))).tolist() == [0, 3]
    assert np.unique(_applied(labels, R.delete(labels, [2**40]))).tolist() == [0, 3]
    assert np.unique(_applied(labels, R.remove_small(labels, 5))).tolist() == [0, 2**40]


def test_relabel_sequential():
    labels = grid_mask()
    labels[labels == 3] = 0
    after = _applied(labels, R.relabel_sequential(labels))
    assert np.unique(after).tolist() == list(range(20))


def test_superpixel_painting_writes_whole_superpixels():
    labels = np.zeros((20, 20), np.uint16)
    labels[:, :5] = 3
    superpixels = (np.arange(20)[None, :] // 4 + 1).repeat(20, 0).astype(np.uint16)
    index = R.SuperpixelIndex(superpixels)
    after = _applied(labels, index.paint(labels, [2, 4], 9))
    assert (after[:, 4:8] == 9).all() and (after[:, 12:16] == 9).all()
    assert (after[:, :4] == 3).all() and (after[:, 8:12] == 0).all()
    kept = _applied(labels, index.paint(labels, [2], 9, preserve_labels=True))
    assert (kept[:, 4] == 3).all() and (kept[:, 5:8] == 9).all()


# --------------------------------------------------------------------------- comparison


def _independent_count(truth, cand):
    """IoU of every pair by a plain loop over objects."""
    matched = []
    for r in np.unique(truth[truth > 0]):
        for c in np.unique(cand[cand > 0]):
            a, b = truth == r, cand == c
            iou = (a & b).sum() / (a | b).sum()
            if iou > 0.5:
                matched.append(iou)
    return matched


def test_comparison_counts_a_damaged_copy():
    truth = grid_mask()
    cand = damaged(truth)
    result = R.compare(truth, cand)
    matched = _independent_count(truth, cand)
    n_ref, n_cand = 20, len(np.unique(cand)) - 1
    assert (n_ref, n_cand, len(matched)) == (20, 18, 15)
    assert result.n_reference == n_ref and result.n_candidate == n_cand
    assert result.n_matched == len(matched)
    assert result.precision == pytest.approx(15 / 18)
    assert result.recall == pytest.approx(15 / 20)
    assert result.f1 == pytest.approx(2 * 15 / 38)
    assert result.mean_iou == pytest.approx(np.mean(matched))
    assert result.mean_iou == pytest.approx((14 + 0.7) / 15)
    summary = result.summary()
    assert (summary["n_missed"], summary["n_extra"], summary["n_split"], summary["n_merged"]) == (
        3, 1, 1, 1,
    )
    table = result.disagreement_table
    missed = table["reference"][table["category"] == "missed"]
    assert sorted(missed.tolist()) == [10, 15, 20]
    assert table["candidate"][table["category"] == "extra"].tolist() == [40]
    assert table["reference"][table["category"] == "split"].tolist() == [7]
    assert table["candidate"][table["category"] == "merged"].tolist() == [2]
    # Each disagreement object covers the object it is about.
    for row, label in enumerate(table["label"]):
        source = truth if table["reference"][row] else cand
        value = table["reference"][row] or table["candidate"][row]
        assert (result.disagreement[source == value] == label).all()
    objects = result.objects
    category = dict(zip(objects["reference"], objects["category"], strict=False))
    assert category[7] == "split" and category[2] == category[3] == "merged"
    assert category[10] == "missed" and category[1] == "matched"


def test_comparison_of_identical_and_bad_inputs():
    truth = blobs()
    same = R.compare(truth, truth)
    assert same.precision == same.recall == same.f1 == same.mean_iou == 1.0
    assert not same.disagreement.any()
    with pytest.raises(InputError, match="must match"):
        R.compare(truth, truth[:-1])
    with pytest.raises(InputError, match="candidate labels hold no objects"):
        R.compare(truth, np.zeros_like(truth))
    with pytest.raises(InputError, match="whole numbers"):
        R.compare(truth.astype(np.float64), truth)
    with pytest.raises(InputError, match="at least 0.5"):
        R.compare(truth, truth, threshold=0.3)
