"""Nodata and areas of interest: excluded pixels get label 0, whatever the engine."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from napari_unsupseg.cli import main
from napari_unsupseg.core.base import nodata
from napari_unsupseg.core.samples import mosaic

rasterio = pytest.importorskip("rasterio")
pyogrio = pytest.importorskip("pyogrio")
shapely = pytest.importorskip("shapely")
from affine import Affine  # noqa: E402

TRANSFORM = Affine(10.0, 0.0, 512_000.0, 0.0, -10.0, 4_650_000.0)  # 10 m pixels, north up
BORDER = 6


def _scene(path, size=64, crs="EPSG:32633", transform=TRANSFORM, nodata=0, border=BORDER):
    """A 4-band uint16 mosaic whose outer ``border`` pixels are nodata (0 in every band)."""
    image, _ = mosaic(size, n_regions=4)
    bands = np.moveaxis(np.concatenate([image, image.mean(-1, keepdims=True)], -1), -1, 0)
    bands = (bands * 20_000 + 1000).astype(np.uint16)
    edge = np.ones((size, size), bool)
    edge[border:-border, border:-border] = False
    bands[:, edge] = 0
    with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=4,
                       dtype="uint16", crs=crs, transform=transform, nodata=nodata) as target:
        target.write(bands)
    return path, edge


def _labels(path):
    with rasterio.open(path) as source:
        return source.read(1), source.transform


def test_masks_fill_and_clear():
    image = np.arange(2 * 3 * 2, dtype=np.uint16).reshape(2, 3, 2) + 5
    image[0, 0] = 0
    image[1, 2] = (0, 9)  # one band valid: kept
    mask = nodata.nodata_mask(image, 0)
    assert mask.tolist() == [[True, False, False], [False, False, False]]
    filled = nodata.fill_excluded(image, mask)
    assert (filled[0, 0] == np.median(image[~mask], axis=0).astype(np.uint16)).all()
    labels = np.array([[1, 2, 2], [3, 3, 3]])
    labels[0, 0] = 4  # a label only on nodata disappears; the others are renumbered 1..K
    np.testing.assert_array_equal(nodata.clear_excluded(labels, mask, renumber=True),
                                  [[0, 1, 1], [2, 2, 2]])
    assert nodata.nodata_mask(image, 1234) is None


@pytest.mark.parametrize("engine", ["preseg", "backprop"])
def test_nodata_border_gets_label_zero(tmp_path, engine):
    source, edge = _scene(tmp_path / "scene.tif")
    out = tmp_path / "labels.tif"
    tiny = ["--max-iter", "3", "--min-labels", "2"] if engine == "backprop" else []
    assert main([engine, str(source), "-o", str(out), "--quiet", *tiny]) == 0
    labels, transform = _labels(out)
    assert transform == TRANSFORM
    assert (labels[edge] == 0).all() and (labels[~edge] > 0).all()
    present = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(present, np.arange(1, len(present) + 1))  # no only-nodata id
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["nodata"] == 0 and sidecar["excluded_pixels"] == int(edge.sum())


def test_nodata_option_overrides_and_disables(tmp_path):
    source, edge = _scene(tmp_path / "scene.tif", nodata=None)  # the file declares none
    out = tmp_path / "labels.tif"
    assert main(["preseg", str(source), "-o", str(out), "--quiet", "--nodata", "0"]) == 0
    assert (_labels(out)[0][edge] == 0).all()
    source, edge = _scene(tmp_path / "declared.tif")
    assert main(["preseg", str(source), "-o", str(out), "--quiet", "--nodata", "none"]) == 0
    assert (_labels(out)[0] > 0).all()


def _aoi(path, polygon, crs, driver=None):
    wkb = shapely.to_wkb(np.array([polygon], dtype=object))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pyogrio's note when there is no CRS
        pyogrio.raw.write(path, wkb, [np.array([1], np.int32)], fields=["id"], crs=crs,
                          geometry_type="Polygon", driver=driver)
    return path


def _lonlat_box(x0, y0, x1, y1):
    """A box in UTM 33N metres as a lon/lat polygon (densified so it stays a box)."""
    from rasterio.warp import transform_geom

    box = shapely.segmentize(shapely.box(x0, y0, x1, y1), 1.0)
    return shapely.geometry.shape(transform_geom("EPSG:32633", "EPSG:4326",
                                                 box.__geo_interface__))


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".shp"])
def test_aoi_in_another_crs_keeps_labels_only_inside(tmp_path, suffix):
    source, _ = _scene(tmp_path / "scene.tif", border=2)
    # Pixels 20..40 (columns) and 10..30 (rows): x 512200..512400, y 4649700..4649900.
    aoi = _aoi(tmp_path / f"aoi{suffix}", _lonlat_box(512_200, 4_649_700, 512_400, 4_649_900),
               "EPSG:4326")
    out = tmp_path / "labels.tif"
    assert main(["preseg", str(source), "-o", str(out), "--quiet", "--aoi", str(aoi)]) == 0
    labels, transform = _labels(out)
    assert labels.shape == (20, 20)
    assert (transform.c, transform.f) == (512_200, 4_649_900)
    assert (labels > 0).all()
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["aoi"]["window"] == [10, 30, 20, 40]


def test_aoi_triangle_masks_the_outside(tmp_path):
    source, _ = _scene(tmp_path / "scene.tif", border=1)
    # A triangle over the grid's top-left half, in the raster's own CRS.
    triangle = shapely.Polygon([(512_000, 4_650_000), (512_640, 4_650_000), (512_000, 4_649_360)])
    aoi = _aoi(tmp_path / "tri.gpkg", triangle, "EPSG:32633")
    out = tmp_path / "labels.tif"
    assert main(["preseg", str(source), "-o", str(out), "--quiet", "--aoi", str(aoi)]) == 0
    labels, _ = _labels(out)
    rows, cols = np.indices(labels.shape)
    centre = rows + cols + 1 - labels.shape[0]  # < 0: the pixel's centre is inside
    assert (labels[centre > 0] == 0).all()  # (centres on the edge may go either way)
    assert (labels[(centre < 0) & (rows >= 1) & (cols >= 1)] > 0).all()


def test_aoi_reads_only_its_window(tmp_path):
    from napari_unsupseg.core.base.scene import Region, prepare_scene

    source, _ = _scene(tmp_path / "scene.tif")
    aoi = _aoi(tmp_path / "aoi.gpkg", shapely.box(512_200, 4_649_700, 512_400, 4_649_900),
               "EPSG:32633")

    def whole_image(path):
        raise AssertionError("the whole image was read")

    scene = prepare_scene(source, whole_image, Region(aoi=aoi))
    with rasterio.open(source) as raster:
        expected = np.moveaxis(raster.read()[:, 10:30, 20:40], 0, -1)
    np.testing.assert_array_equal(scene.image, expected)
    assert scene.excluded is None and scene.georef.transform[2] == 512_200


def test_rotated_grid_aoi_masks_the_right_pixels(tmp_path):
    """A rotated grid is used as it is: the window is found through the inverse transform."""
    rotated = TRANSFORM @ Affine.rotation(30)
    source, _ = _scene(tmp_path / "rot.tif", transform=rotated, border=1)
    # The AOI: pixel rows 10..30 and columns 20..40, in map coordinates.
    corners = [rotated @ (c, r) for c, r in [(20, 10), (40, 10), (40, 30), (20, 30)]]
    aoi = _aoi(tmp_path / "aoi.gpkg", shapely.Polygon(corners), "EPSG:32633")
    out = tmp_path / "labels.tif"
    assert main(["preseg", str(source), "-o", str(out), "--quiet", "--aoi", str(aoi)]) == 0
    labels, transform = _labels(out)
    assert labels.shape == (20, 20) and (labels > 0).all()
    assert transform.almost_equals(rotated @ Affine.translation(20, 10))


@pytest.mark.parametrize("case", ["outside", "format", "nocrs", "nopolygon", "missing"])
def test_bad_aoi_is_refused_in_one_sentence(tmp_path, capsys, case):
    source, _ = _scene(tmp_path / "scene.tif")
    box = shapely.box(512_200, 4_649_700, 512_400, 4_649_900)
    aoi = {
        "outside": lambda: _aoi(tmp_path / "far.gpkg", shapely.box(0, 0, 10, 10), "EPSG:32633"),
        "format": lambda: (tmp_path / "aoi.kml").write_text("<kml/>") and tmp_path / "aoi.kml",
        "nocrs": lambda: _aoi(tmp_path / "nocrs.shp", box, None),
        "nopolygon": lambda: _point_layer(tmp_path / "points.gpkg"),
        "missing": lambda: tmp_path / "absent.geojson",
    }[case]()
    out = tmp_path / "labels.tif"
    assert main(["preseg", str(source), "-o", str(out), "--quiet", "--aoi", str(aoi)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("napari-unsupseg: error: ")
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_batch_refuses_a_bad_aoi_before_it_starts(tmp_path, capsys):
    source, _ = _scene(tmp_path / "scene.tif")
    aoi = _aoi(tmp_path / "far.gpkg", shapely.box(0, 0, 10, 10), "EPSG:32633")
    out = tmp_path / "out"
    assert main(["batch", "preseg", str(source), "-o", str(out), "--aoi", str(aoi)]) == 2
    assert "does not overlap" in capsys.readouterr().err and not out.exists()


def _point_layer(path):
    wkb = shapely.to_wkb(np.array([shapely.Point(512_300, 4_649_800)], dtype=object))
    pyogrio.raw.write(path, wkb, [np.array([1], np.int32)], fields=["id"], crs="EPSG:32633",
                      geometry_type="Point")
    return path


def test_batch_leaves_nodata_and_outside_the_aoi_out(tmp_path):
    pytest.importorskip("distributed")
    from napari_unsupseg.core.base.scene import Region
    from napari_unsupseg.core.batch import Job, process_file
    from napari_unsupseg.core.preseg import PresegParams

    source, edge = _scene(tmp_path / "scene.tif")
    out = tmp_path / "out" / "scene_preseg.tif"
    out.parent.mkdir()
    process_file(Job(source, out), "preseg", PresegParams(), region=Region())
    assert (_labels(out)[0][edge] == 0).all()
    aoi = _aoi(tmp_path / "aoi.gpkg", shapely.box(512_200, 4_649_700, 512_400, 4_649_900),
               "EPSG:32633")
    process_file(Job(source, out), "preseg", PresegParams(), region=Region(aoi=aoi))
    labels, transform = _labels(out)
    assert labels.shape == (20, 20) and (labels > 0).all() and transform.c == 512_200
