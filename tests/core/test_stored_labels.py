"""Stored OME-Zarr labels edited in place: a region written into level 0 and the
pyramid, put back exactly, metadata untouched, plain refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ome_zarr")

from _zarr import smooth_volume, write_store  # noqa: E402

from napari_unsupseg.core.base import omezarr, stored_labels  # noqa: E402
from napari_unsupseg.core.base.errors import InputError  # noqa: E402
from napari_unsupseg.core.base.stored_labels import (  # noqa: E402
    StoredLabels,
    find_labels,
    labels_behind,
    open_labels,
    read_region,
    restore,
    write_region,
)

SHAPE = (3, 45, 38)  # odd sizes: the lower levels end on a partial pixel


def _labels(tmp_path, version, store=None):
    """An image with labels 'cells' (values 1..N, all different) written and finished."""
    path = write_store(tmp_path / "img.zarr", smooth_volume((1, *SHAPE)), version)
    image = omezarr.open_omezarr(path)
    target = omezarr.create_labels(image, "cells", np.uint32, store=store, chunk=16)
    truth = np.arange(np.prod(SHAPE), dtype=np.uint32).reshape(SHAPE) + 1
    target.write_block((slice(0, SHAPE[0]),), slice(0, SHAPE[1]), slice(0, SHAPE[2]), truth)
    target.finish()
    return (path if store is None else store), truth


def _metadata(path):
    return sorted((p.relative_to(path).as_posix(), p.read_text())
                  for p in path.rglob("*") if p.name in ("zarr.json", ".zattrs", ".zgroup",
                                                         ".zarray"))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_a_region_is_written_into_every_level_and_put_back(tmp_path, version):
    path, truth = _labels(tmp_path, version)
    before = _metadata(path)
    target = open_labels(path, "cells")
    assert target.axes == ("z", "y", "x") and len(target.levels) == 2
    ys, xs = slice(7, 30), slice(3, 26)
    np.testing.assert_array_equal(read_region(target, (1,), ys, xs), truth[1, ys, xs])
    painted = truth[1, ys, xs].copy()
    painted[4:12, 2:9] = 999
    snapshot = write_region(open_labels(path, "cells"), (1,), ys, xs, painted)
    assert snapshot is not None
    expected = truth.copy()
    expected[1, ys, xs] = painted
    reopened = open_labels(path, "cells")
    for k, level in enumerate(reopened.levels):
        np.testing.assert_array_equal(np.asarray(level[:]), expected[:, ::2 ** k, ::2 ** k])
    assert _metadata(path) == before  # only pixels changed
    assert write_region(reopened, (1,), ys, xs, painted) is None  # nothing new: no-op
    restore(reopened, snapshot)
    for k, level in enumerate(open_labels(path, "cells").levels):
        np.testing.assert_array_equal(np.asarray(level[:]), truth[:, ::2 ** k, ::2 ** k])


def test_undo_puts_back_a_pyramid_not_made_by_striding(tmp_path):
    path, truth = _labels(tmp_path, "0.5")
    target = open_labels(path, "cells")
    odd = np.full(target.levels[1].shape, 5, np.uint32)  # another tool's downsampling
    target.levels[1][:] = odd
    snapshot = write_region(target, (0,), slice(0, 10), slice(0, 10),
                            np.zeros((10, 10), np.uint32))
    restore(target, snapshot)
    np.testing.assert_array_equal(np.asarray(target.levels[1][:]), odd)
    np.testing.assert_array_equal(np.asarray(target.levels[0][:]), truth)


def test_labels_of_their_own_store_and_how_they_are_found(tmp_path):
    own, _ = _labels(tmp_path, "0.5", store=tmp_path / "cells.zarr")
    assert find_labels(own) == [StoredLabels(own, "cells")]
    write_region(open_labels(own, "cells"), (0,), slice(0, 2), slice(0, 2),
                 np.full((2, 2), 7, np.uint32))
    assert np.asarray(open_labels(own, "cells").levels[0][0, :2, :2]).tolist() == [[7, 7]] * 2
    image, _ = _labels(tmp_path / "second", "0.4")
    found = StoredLabels(image, "cells")
    assert find_labels(image) == [found]
    assert find_labels(image / "labels" / "cells") == [found]
    # napari-ome-zarr names the layer after the labels; our docks put the store in metadata
    assert labels_behind({}, str(image), "labels/labels/cells") == [found]
    meta = {stored_labels.METADATA_KEY: found.as_metadata()}
    assert labels_behind(json.loads(json.dumps(meta)), None, "anything") == [found]
    with pytest.raises(InputError, match="not opened from an OME-Zarr store"):
        labels_behind({}, None, "painted")


def test_missing_labels_and_read_only_stores_are_refused(tmp_path, monkeypatch):
    path, _ = _labels(tmp_path, "0.5")
    with pytest.raises(InputError, match="has no labels named 'nuclei' \\(it has cells\\)"):
        open_labels(path, "nuclei")
    with pytest.raises(InputError, match="holds no OME-Zarr labels"):
        find_labels(write_store(tmp_path / "bare.zarr", smooth_volume((1, 1, 8, 8))))
    monkeypatch.setattr(stored_labels.os, "access", lambda *args: False)
    with pytest.raises(InputError, match="is read-only"):
        open_labels(path, "cells")


def test_labels_too_large_for_the_stored_type_are_refused(tmp_path):
    path, _ = _labels(tmp_path, "0.5")
    target = open_labels(path, "cells")
    with pytest.raises(InputError, match="cannot be stored"):
        write_region(target, (0,), slice(0, 1), slice(0, 1), np.array([[2 ** 40]]))
