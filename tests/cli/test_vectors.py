"""Polygon layers from label rasters: formats, CRS, attributes, statistics, strips, AOI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_unsupseg.cli import main
from napari_unsupseg.core.samples import mosaic

rasterio = pytest.importorskip("rasterio")
pyogrio = pytest.importorskip("pyogrio")
shapely = pytest.importorskip("shapely")
from affine import Affine  # noqa: E402
from rasterio.features import rasterize  # noqa: E402

from napari_unsupseg.core.base.vectors import VectorOptions, write_vectors  # noqa: E402

TRANSFORM = Affine(10.0, 0.0, 512_000.0, 0.0, -10.0, 4_650_000.0)


def _tif(path, bands, nodata=None, transform=TRANSFORM):
    bands = np.asarray(bands)
    with rasterio.open(path, "w", driver="GTiff", height=bands.shape[1], width=bands.shape[2],
                       count=bands.shape[0], dtype=bands.dtype.name, crs="EPSG:32633",
                       transform=transform, nodata=nodata) as target:
        target.write(bands)
    return path


def _case(tmp_path, size=64):
    """Labels (a mosaic, a nodata border of 0 and a label split in two), their sidecar,
    and a 4-band uint16 image whose border is nodata."""
    _, truth = mosaic(size, n_regions=5)
    truth = truth.astype(np.uint16)
    truth[:, 30:32] = 0  # cuts regions in two: the same label, two polygons
    rng = np.random.default_rng(1)
    image = rng.integers(100, 60_000, (4, size, size)).astype(np.uint16)
    image[:, :3, :] = 0  # nodata rows: no statistics from them
    labels = _tif(tmp_path / "labels.tif", truth[None])
    (tmp_path / "labels.json").write_text(json.dumps(
        {"engine": "predict", "model": {"source": "/models/best.pth"},
         "classes": {"1": "water", "2": "trees"}}))
    return labels, truth, _tif(tmp_path / "image.tif", image, nodata=0), image


def _read(path):
    meta, _, wkb, columns = pyogrio.raw.read(path)
    table = dict(zip(meta["fields"], columns, strict=True))
    return meta, shapely.from_wkb(wkb), table


def _components(truth):
    from skimage.measure import label

    return label(truth, background=0, connectivity=1)


@pytest.mark.parametrize("suffix", [".gpkg", ".shp", ".geojson"])
def test_formats_read_back_with_crs_attributes_and_statistics(tmp_path, suffix):
    labels, truth, image_path, image = _case(tmp_path)
    out = tmp_path / f"regions{suffix}"
    assert main(["vectorize", str(labels), "-o", str(out), "--image", str(image_path),
                 "--simplify", "0"]) == 0
    meta, geoms, table = _read(out)
    assert pyogrio.read_info(out)["crs"] == "EPSG:32633"
    components = _components(truth)
    assert len(geoms) == components.max()
    back = rasterize(zip(geoms, table["label"], strict=True), out_shape=truth.shape,
                     transform=TRANSFORM, dtype="int32")
    np.testing.assert_array_equal(back, truth)
    assert set(table["class"][table["label"] == 1]) == {"water"}
    assert set(table["engine"]) == {"predict"} and set(table["model"]) == {"best.pth"}
    valid = (image != 0).any(axis=0)
    for geom, area, index in zip(geoms, table["area"], range(len(geoms)), strict=True):
        region = rasterize([(geom, 1)], out_shape=truth.shape, transform=TRANSFORM) == 1
        assert area == pytest.approx(region.sum() * 100.0)
        pixels = image[:, region & valid].astype(np.float64)
        if not pixels.size:
            assert np.isnan(table["b1_mean"][index])
            continue
        for b in range(4):
            assert table[f"b{b + 1}_mean"][index] == pytest.approx(pixels[b].mean())
            assert table[f"b{b + 1}_std"][index] == pytest.approx(pixels[b].std(), rel=1e-6)
            assert table[f"b{b + 1}_min"][index] == pixels[b].min()
            assert table[f"b{b + 1}_max"][index] == pixels[b].max()


def test_polygons_cut_by_strips_are_joined_with_their_statistics(tmp_path):
    labels, truth, image_path, image = _case(tmp_path)
    whole, strips = tmp_path / "whole.gpkg", tmp_path / "strips.gpkg"
    write_vectors(labels, whole, image_path=image_path, options=VectorOptions(simplify=0))
    count = write_vectors(labels, strips, image_path=image_path,
                          options=VectorOptions(simplify=0, strip_rows=5, batch=3))
    (_, geoms_a, a), (_, geoms_b, b) = _read(whole), _read(strips)
    assert count == len(geoms_b) == len(geoms_a) == _components(truth).max()
    key_a, key_b = np.lexsort((a["area"], a["label"])), np.lexsort((b["area"], b["label"]))
    for name in a:
        if name in ("class", "engine", "model"):
            assert list(a[name][key_a]) == list(b[name][key_b])
        else:
            np.testing.assert_allclose(a[name][key_a], b[name][key_b], rtol=1e-9)
    assert shapely.equals(shapely.normalize(geoms_a[key_a]),
                          shapely.normalize(geoms_b[key_b])).all()


def test_simplify_and_min_area(tmp_path):
    labels, truth, _, _ = _case(tmp_path)
    exact, simple, large = (tmp_path / f"{n}.gpkg" for n in ("exact", "simple", "large"))
    assert main(["geojson", str(labels), "-o", str(exact), "--simplify", "0"]) == 0
    assert main(["geojson", str(labels), "-o", str(simple)]) == 0  # one pixel by default
    _, geoms_exact, t_exact = _read(exact)
    _, geoms_simple, _ = _read(simple)
    assert len(geoms_simple) == len(geoms_exact)
    assert shapely.get_num_coordinates(geoms_simple).sum() < \
        0.7 * shapely.get_num_coordinates(geoms_exact).sum()
    assert shapely.area(geoms_simple).sum() == pytest.approx(shapely.area(geoms_exact).sum(),
                                                             rel=0.05)
    threshold = float(np.median(t_exact["area"]))
    assert main(["geojson", str(labels), "-o", str(large), "--simplify", "0",
                 "--min-area", str(threshold)]) == 0
    _, _, t_large = _read(large)
    assert len(t_large["area"]) == (t_exact["area"] >= threshold).sum()
    assert (t_large["area"] >= threshold).all()


def test_nodata_border_gets_no_polygon(tmp_path):
    image, _ = mosaic(48, n_regions=4)
    bands = (np.moveaxis(image, -1, 0) * 20_000 + 1000).astype(np.uint16)
    bands[:, :5] = 0
    bands[:, :, -4:] = 0
    source = _tif(tmp_path / "scene.tif", bands, nodata=0)
    out = tmp_path / "labels.tif"
    assert main(["preseg", str(source), "-o", str(out), "--quiet"]) == 0
    polygons = tmp_path / "labels.gpkg"
    assert main(["geojson", str(out), "-o", str(polygons), "--simplify", "0",
                 "--image", str(source)]) == 0
    _, geoms, table = _read(polygons)
    covered = rasterize([(g, 1) for g in geoms], out_shape=(48, 48), transform=TRANSFORM)
    assert not covered[:5].any() and not covered[:, -4:].any() and covered[5:, :-4].all()
    assert not np.isnan(table["b1_mean"]).any()


def test_aoi_keeps_only_the_polygons_inside(tmp_path):
    labels, truth, _, _ = _case(tmp_path)
    aoi = tmp_path / "aoi.gpkg"
    box = shapely.box(512_100, 4_649_600, 512_300, 4_649_900)  # columns 10..30, rows 10..40
    pyogrio.raw.write(aoi, shapely.to_wkb(np.array([box], object)), [np.array([1])],
                      fields=["id"], crs="EPSG:32633", geometry_type="Polygon")
    out = tmp_path / "inside.gpkg"
    assert main(["geojson", str(labels), "-o", str(out), "--simplify", "0", "--aoi", str(aoi)
                 ]) == 0
    _, geoms, table = _read(out)
    back = rasterize(zip(geoms, table["label"], strict=True), out_shape=truth.shape,
                     transform=TRANSFORM, dtype="int32")
    expected = np.zeros_like(truth)
    expected[10:40, 10:30] = truth[10:40, 10:30]
    np.testing.assert_array_equal(back, expected)


def test_statistics_of_labels_cut_to_an_aoi_come_from_the_scene(tmp_path):
    """Labels made with --aoi are a window of the scene: the image is read at its place."""
    _, _, image_path, image = _case(tmp_path)
    window = np.zeros((1, 20, 16), np.uint16)
    window[0, :, 8:] = 1
    window[0, :, :8] = 2
    labels = _tif(tmp_path / "window.tif", window, transform=TRANSFORM @ Affine.translation(7, 9))
    out = tmp_path / "window.gpkg"
    assert main(["geojson", str(labels), "-o", str(out), "--image", str(image_path)]) == 0
    _, _, table = _read(out)
    one = table["label"] == 1
    assert table["b2_max"][one][0] == image[1, 9:29, 15:23].max()


@pytest.mark.parametrize("case", ["format", "grid", "aoi"])
def test_bad_input_is_refused_in_one_sentence(tmp_path, capsys, case):
    labels, _, image_path, _ = _case(tmp_path)
    out = tmp_path / ("regions.kml" if case == "format" else "regions.gpkg")
    extra = []
    if case == "grid":
        extra = ["--image", str(_tif(tmp_path / "other.tif", np.ones((1, 64, 64), np.uint16),
                                     transform=TRANSFORM @ Affine.translation(0.5, 0)))]
    if case == "aoi":
        extra = ["--aoi", str(tmp_path / "aoi.txt")]
        (tmp_path / "aoi.txt").write_text("not a layer")
    assert main(["geojson", str(labels), "-o", str(out), *extra]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("napari-unsupseg: error: ")
    assert not out.exists()


def test_rotated_grid_polygons_land_where_the_pixels_are(tmp_path):
    """A rotated grid needs nothing special: the polygons go through its transform."""
    _, truth = mosaic(40, n_regions=4)
    rotated = TRANSFORM @ Affine.rotation(25)
    labels = _tif(tmp_path / "rot.tif", truth[None].astype(np.uint16), transform=rotated)
    out = tmp_path / "rot.gpkg"
    assert main(["geojson", str(labels), "-o", str(out), "--simplify", "0"]) == 0
    _, geoms, table = _read(out)
    back = rasterize(zip(geoms, table["label"], strict=True), out_shape=truth.shape,
                     transform=rotated, dtype="int32")
    np.testing.assert_array_equal(back, truth)
    assert table["area"].sum() == pytest.approx(truth.size * 100.0)


@pytest.mark.parametrize("seed", range(4))
def test_noisy_labels_give_the_same_polygons_in_any_strips(tmp_path, seed):
    """Corners that touch, holes and U shapes across strip edges: joined as a whole raster's."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    truth = ndi.zoom(rng.integers(0, 4, (12, 10)), 3, order=0)[:33, :29].astype(np.uint8)
    truth[rng.random(truth.shape) < 0.05] = 3  # single pixels, touching at corners
    image = rng.integers(1, 1000, (2, *truth.shape)).astype(np.uint16)
    labels = _tif(tmp_path / "labels.tif", truth[None])
    image_path = _tif(tmp_path / "image.tif", image)
    results = []
    for rows in (1, 2, 5, 64):
        out = tmp_path / f"strips{rows}.gpkg"
        write_vectors(labels, out, image_path=image_path,
                      options=VectorOptions(simplify=0, strip_rows=rows, batch=7))
        _, geoms, table = _read(out)
        order = np.lexsort((table["b1_mean"], table["area"], table["label"]))
        results.append((shapely.normalize(geoms[order]),
                        np.stack([table[k][order] for k in table if k not in
                                  ("engine", "model")])))
    assert len(results[0][0]) == _components(truth).max()
    for geoms, values in results[1:]:
        assert shapely.equals(geoms, results[0][0]).all()
        np.testing.assert_allclose(values, results[0][1], rtol=1e-9)


@pytest.mark.parametrize("suffix", [".gpkg", ".shp", ".geojson"])
def test_labels_without_regions_give_an_empty_layer(tmp_path, suffix):
    labels = _tif(tmp_path / "empty.tif", np.zeros((1, 16, 16), np.uint16))
    image = _tif(tmp_path / "image.tif", np.ones((2, 16, 16), np.uint16))
    out = tmp_path / f"empty{suffix}"
    assert main(["geojson", str(labels), "-o", str(out), "--image", str(image)]) == 0
    info = pyogrio.read_info(out)
    assert info["features"] == 0 and info["crs"] == "EPSG:32633"
    if suffix != ".geojson":  # (a GeoJSON file has no schema of its own)
        assert "b2_max" in list(info["fields"])


def test_the_label_rasters_own_nodata_is_no_polygon(tmp_path):
    truth = np.full((1, 20, 20), 255, np.uint8)
    truth[0, 5:15, 5:15] = 1
    labels = _tif(tmp_path / "labels.tif", truth, nodata=255)
    out = tmp_path / "regions.gpkg"
    assert main(["geojson", str(labels), "-o", str(out)]) == 0
    _, geoms, table = _read(out)
    assert list(table["label"]) == [1] and table["area"][0] == pytest.approx(100 * 100.0)
