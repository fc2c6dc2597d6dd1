"""The shared core helpers: layout, normalisation, relabelling, parameters, files."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
import tifffile

from napari_unsupseg.core.base import params as P
from napari_unsupseg.core.base.engine import Progress, Result, provenance, run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.base.images import (
    as_channels_last,
    mean_colour,
    normalize,
    relabel_sequential,
    to_display_rgb,
)
from napari_unsupseg.core.base.io import overlay, read_image, write_labels, write_picture


@pytest.mark.parametrize(
    ("shape", "axis", "expected"),
    [
        ((20, 30), None, (20, 30, 1)),
        ((20, 30, 3), -1, (20, 30, 3)),
        ((2, 20, 30), 0, (20, 30, 2)),
        ((5, 20, 30), None, (5, 20, 30, 1)),
        ((5, 2, 20, 30), 1, (5, 20, 30, 2)),
    ],
)
def test_as_channels_last_layouts(shape, axis, expected):
    data = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    out = as_channels_last(data, axis)
    assert out.shape == expected
    if axis is not None:
        np.testing.assert_array_equal(np.moveaxis(data, axis, -1), out)


@pytest.mark.parametrize(
    ("shape", "axis", "words"),
    [
        ((20, 30), 2, "does not exist"),
        ((4, 5, 20, 30), None, "Expected a 2-D plane"),
        ((20,), None, "Expected a 2-D plane"),
        ((1, 30), None, "too small"),
    ],
)
def test_as_channels_last_refuses_bad_layouts(shape, axis, words):
    with pytest.raises(InputError, match=words):
        as_channels_last(np.zeros(shape, np.float32), axis)


def test_nan_and_complex_are_refused():
    image = np.ones((8, 8), np.float32)
    image[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        as_channels_last(image, None)
    with pytest.raises(InputError, match="complex"):
        as_channels_last(np.ones((8, 8), np.complex64), None)


def test_normalize_is_per_channel_and_shared_across_planes():
    rng = np.random.default_rng(0)
    stack = np.stack([rng.uniform(0, 10, (2, 16, 16)), rng.uniform(1000, 5000, (2, 16, 16))], -1)
    out = normalize(stack, 0.0, 100.0)
    assert out.dtype == np.float32
    for c in range(2):
        assert out[..., c].min() == 0.0 and out[..., c].max() == pytest.approx(1.0)
    # A constant channel carries no information: zeros, not a division by zero.
    assert (normalize(np.ones((4, 4, 1)))[..., 0] == 0).all()


def test_relabel_sequential_keeps_partition_and_background():
    labels = np.array([[7, 7, 0], [300, 7, 42]])
    out = relabel_sequential(labels)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, [[1, 1, 0], [2, 1, 3]])
    big = relabel_sequential(np.arange(70_000).reshape(700, 100) + 1)
    assert big.dtype == np.uint32 and big.max() == 70_000


def test_mean_colour_fills_each_label():
    image = np.array([[[0.0], [2.0]], [[4.0], [10.0]]], np.float32)
    labels = np.array([[1, 1], [2, 2]])
    np.testing.assert_allclose(mean_colour(image, labels)[..., 0], [[1, 1], [7, 7]])


@dataclass
class _Params:
    size: int = P.param(3, "A size.", min=1, max=9)
    mode: str = P.param("a", "A mode.", choices=("a", "b"))
    limit: float | None = P.param(None, "An optional limit.")
    flag: bool = P.param(True, "A switch.", advanced=True)


def test_specs_and_validation():
    specs = {s.name: s for s in P.specs(_Params)}
    assert specs["size"].type is int and specs["size"].max == 9
    assert specs["limit"].type is float and specs["limit"].optional
    assert specs["flag"].advanced and specs["mode"].choices == ("a", "b")
    assert P.from_mapping(_Params, {"size": 4, "other": 1}).size == 4
    with pytest.raises(InputError, match="at most 9"):
        P.from_mapping(_Params, {"size": 10})
    with pytest.raises(InputError, match="one of a, b"):
        P.from_mapping(_Params, {"mode": "c"})


def test_run_to_end_returns_result_and_reports_progress():
    def engine():
        for i in range(3):
            yield Progress(i + 1, 3, loss=1.0 / (i + 1))
        return Result(np.ones((2, 2), np.uint16), provenance("toy", _Params(), seed=1))

    seen: list[int] = []
    result = run_to_end(engine(), lambda p: seen.append(p.step))
    assert seen == [1, 2, 3]
    assert result.metadata["engine"] == "toy"
    assert result.metadata["parameters"]["size"] == 3
    json.dumps(result.metadata)


def test_files_round_trip(tmp_path):
    labels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    sidecar = write_labels(tmp_path / "out" / "l.tif", labels, {"seed": np.int64(3)})
    assert json.loads(sidecar.read_text()) == {"seed": 3}
    back = read_image(tmp_path / "out" / "l.tif")
    np.testing.assert_array_equal(back.data, labels)
    assert not back.rgb
    # A stack of three label planes is three planes, not an RGB picture.
    planes = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8)
    write_labels(tmp_path / "stack.tif", planes, {})
    with tifffile.TiffFile(tmp_path / "stack.tif") as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
    np.testing.assert_array_equal(read_image(tmp_path / "stack.tif").data, planes)
    rgb = to_display_rgb(np.random.default_rng(0).uniform(size=(6, 5, 3)))
    halves = np.repeat([[1], [2]], [3, 3], axis=0).repeat(5, axis=1)
    drawn = overlay(rgb, halves)
    assert (drawn[2] == (255, 220, 0)).all() and (drawn[0] == rgb[0]).all()
    loaded = read_image(write_picture(tmp_path / "p.png", drawn))
    assert loaded.rgb
    np.testing.assert_array_equal(loaded.data, drawn)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("missing.tif", None, "does not exist"),
        ("bad.png", b"not a png", "could not be read"),
        ("x.bmpx", b"", "unsupported file type"),
    ],
)
def test_read_image_errors_are_plain(tmp_path, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=words):
        read_image(path)


# ------------------------------------------------------------------ nested parameters


def test_backprop_holds_its_superpixel_settings_as_preseg_params():
    """Composition: the segmenter's presegmentation settings are a PresegParams, shown flat
    (prefix + the inner name, or the name the segmenter gives it), the older flat name kept
    as an alias, one mapping back."""
    from napari_unsupseg.core.backprop import BackpropParams, default_params
    from napari_unsupseg.core.preseg import PresegParams, method_kwargs

    flat = {s.name: s for s in P.specs(BackpropParams)}
    assert [n for n in flat if n.startswith("superpixel")] == [
        "superpixels", "superpixel_scale", "superpixel_min_size", "superpixel_n_segments",
        "superpixel_compactness"]
    assert flat["superpixels"].path == ("preseg", "method")
    assert flat["superpixels"].choices[0] == "auto" and flat["superpixels"].choices[-1] == "none"
    assert flat["superpixel_n_segments"].aliases == ("superpixel_count",)
    assert flat["superpixel_n_segments"].label == "superpixel count"
    assert "Kanezaki 2018" in flat["superpixel_n_segments"].help  # the segmenter's words
    assert flat["superpixel_n_segments"].min == 2  # the bound is PresegParams' own
    by_alias = P.from_mapping(BackpropParams, {"superpixel_count": 500, "max_iter": 3})
    by_name = default_params(superpixel_n_segments=500, max_iter=3)
    assert by_alias == by_name and isinstance(by_name.preseg, PresegParams)
    assert by_name.preseg.n_segments == 500 and by_name.preseg.scale == 16.0
    assert by_name.preseg.method == "auto"
    assert P.flat_values(by_name)["superpixel_n_segments"] == 500
    preseg = by_name.preseg
    assert method_kwargs(replace(preseg, method="slic"))["n_segments"] == 500  # one mapping
    with pytest.raises(InputError, match="'superpixel_n_segments' must be at least 2"):
        default_params(superpixel_n_segments=1)


def test_nested_values_are_validated_with_the_outer_choices():
    """'auto' and 'none' are the segmenter's methods, not presegmentation's; inner fields it
    does not show are checked too, under their flat names."""
    from napari_unsupseg.core.backprop import BackpropParams, default_params
    from napari_unsupseg.core.preseg import PresegParams

    assert default_params(superpixels="none").preseg.method == "none"
    with pytest.raises(InputError, match="'superpixels' must be one of auto"):
        default_params(superpixels="grid")
    with pytest.raises(InputError, match="'method' must be one of"):
        P.validate(PresegParams(method="auto"))
    bad = replace(BackpropParams(), preseg=replace(BackpropParams().preseg, sigma=-1.0))
    with pytest.raises(InputError, match="'superpixel_sigma' must be at least 0"):
        P.validate(bad)
    given = replace(BackpropParams().preseg, sigma=2.0)
    built = P.from_mapping(BackpropParams, {"preseg": given, "superpixel_scale": 8.0})
    assert (built.preseg.sigma, built.preseg.scale) == (2.0, 8.0)


def test_saved_parameters_nest():
    from napari_unsupseg.core.backprop import default_params

    saved = provenance("backprop", default_params(superpixels="slic"))["parameters"]
    assert saved["preseg"]["method"] == "slic" and saved["preseg"]["n_segments"] == 2000
    json.dumps(saved)


def test_the_old_option_names_still_work_on_the_command_line():
    from napari_unsupseg.cli import build_parser

    parser = build_parser()
    old = parser.parse_args(["backprop", "x.png", "--superpixel-count", "700",
                             "--superpixel-scale", "8"])
    new = parser.parse_args(["backprop", "x.png", "--superpixel-n-segments", "700",
                             "--superpixel-scale", "8"])
    assert old.superpixel_n_segments == new.superpixel_n_segments == 700
    from napari_unsupseg.cli._common import params_from_args
    from napari_unsupseg.core.backprop import BackpropParams

    args = parser.parse_args(["backprop", "x.png", "--superpixels", "slic",
                              "--superpixel-count", "700"])
    built = params_from_args(BackpropParams, args)
    assert (built.preseg.method, built.preseg.n_segments, built.preseg.scale) == (
        "slic", 700, 16.0)


def test_relabelling_band_by_band_matches_the_whole_image_sort(monkeypatch):
    from napari_unsupseg.core.base import images

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 300, (120, 90)).astype(np.uint32)
    labels[:5] = 0
    labels[60:] += 1000  # ids first seen in a later band, and a gap
    whole = images.relabel_sequential(labels)
    monkeypatch.setattr(images, "_BAND", 500)  # many bands on a small image
    banded = images.relabel_sequential(labels)
    assert banded.dtype == whole.dtype == np.uint16
    np.testing.assert_array_equal(banded, whole)
    assert banded[0, 0] == 0 and banded.max() == len(np.unique(labels)) - 1
