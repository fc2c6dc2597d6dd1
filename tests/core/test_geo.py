"""GeoTIFF in and out: georeference kept by the CLI and the napari writer, polygons, reader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_unsupseg.cli import main
from napari_unsupseg.core.base import geo
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.samples import mosaic

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402
from rasterio.features import rasterize  # noqa: E402

TRANSFORM = Affine(10.0, 0.0, 512_000.0, 0.0, -10.0, 4_650_000.0)  # 10 m pixels, north up


def _geotiff(path, bands, crs="EPSG:32633", transform=TRANSFORM, nodata=None):
    bands = np.asarray(bands)
    with rasterio.open(path, "w", driver="GTiff", height=bands.shape[1], width=bands.shape[2],
                       count=bands.shape[0], dtype=bands.dtype.name, crs=crs,
                       transform=transform, nodata=nodata) as target:
        target.write(bands)
    return path


def _scene(size=48):
    image, truth = mosaic(size, n_regions=4)
    fourth = image.mean(-1, keepdims=True)
    bands = np.moveaxis(np.concatenate([image, fourth], -1), -1, 0)
    return (bands * 20_000 + 1000).astype(np.uint16), truth


def test_cli_writes_labels_with_the_inputs_crs_and_transform(tmp_path):
    bands, _ = _scene()
    source = _geotiff(tmp_path / "scene.tif", bands, nodata=0)
    out = tmp_path / "labels.tif"
    assert main(["preseg", str(source), "-o", str(out), "--quiet", "--n-segments", "30"]) == 0
    written = geo.read_georef(out)
    assert written.transform == tuple(TRANSFORM)[:6]
    assert rasterio.crs.CRS.from_wkt(written.crs).to_epsg() == 32633
    with rasterio.open(out) as labels:
        assert (labels.count, labels.height, labels.width) == (1, 48, 48)  # bands = channels
        assert labels.read(1).max() >= 4
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["georeference"]["transform"] == list(TRANSFORM)[:6]


def test_geotiff_without_crs_keeps_its_transform(tmp_path):
    bands, _ = _scene()
    source = _geotiff(tmp_path / "nocrs.tif", bands, crs=None)
    assert geo.read_georef(source).crs is None
    out = tmp_path / "labels.tif"
    assert main(["preseg", str(source), "-o", str(out), "--quiet", "--n-segments", "30"]) == 0
    written = geo.read_georef(out)
    assert written.crs is None and written.transform == tuple(TRANSFORM)[:6]
    polygons = geo.labels_to_geojson(rasterio.open(out).read(1), written)
    assert "crs" not in polygons and polygons["features"]


def test_plain_tiff_has_no_georeference_and_the_reader_declines_it(tmp_path):
    import tifffile

    from napari_unsupseg._reader import napari_get_reader

    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8), np.uint8))
    assert geo.read_georef(tmp_path / "plain.tif") is None
    assert napari_get_reader(str(tmp_path / "plain.tif")) is None


def test_polygons_cover_the_labels_exactly(tmp_path):
    _, truth = mosaic(64, n_regions=5)
    truth[:5, :7] = 0  # unlabelled corner: no polygon there
    georef = geo.Georef(rasterio.crs.CRS.from_epsg(32633).to_wkt(), tuple(TRANSFORM)[:6])
    collection = geo.labels_to_geojson(truth, georef, {1: "water", 2: "trees"})
    assert collection["crs"]["properties"]["name"].endswith("32633")
    shapes = [(f["geometry"], f["properties"]["label"]) for f in collection["features"]]
    back = rasterize(shapes, out_shape=truth.shape, transform=TRANSFORM, dtype="int32")
    np.testing.assert_array_equal(back, truth)
    named = {f["properties"]["label"]: f["properties"]["class"] for f in collection["features"]}
    assert named[1] == "water" and named[2] == "trees" and named[3] is None


def test_geojson_command_reads_the_georeference_of_a_label_geotiff(tmp_path):
    _, truth = mosaic(40, n_regions=3)
    labels = _geotiff(tmp_path / "labels.tif", truth[None].astype(np.uint16))
    assert main(["geojson", str(labels), "--simplify", "0"]) == 0
    collection = json.loads((tmp_path / "labels.geojson").read_text())
    shapes = [(f["geometry"], f["properties"]["label"]) for f in collection["features"]]
    back = rasterize(shapes, out_shape=truth.shape, transform=TRANSFORM, dtype="int32")
    np.testing.assert_array_equal(back, truth)


def test_bands_of_unequal_size_are_refused_by_name(tmp_path):
    small = _geotiff(tmp_path / "B02.tif", np.ones((1, 40, 40), np.uint16))
    large = _geotiff(tmp_path / "B05.tif", np.ones((1, 20, 20), np.uint16))
    with pytest.raises(InputError, match="B05.tif is 20 x 20 pixels but B02.tif is 40 x 40"):
        geo.stack_bands([small, large])
    same = _geotiff(tmp_path / "B03.tif", np.full((1, 40, 40), 2, np.uint16))
    stacked = geo.stack_bands([small, same])
    assert stacked.data.shape == (2, 40, 40) and stacked.band_names == ["B02", "B03"]


def test_napari_reader_and_writer_round_trip_the_georeference(tmp_path, monkeypatch):
    napari = pytest.importorskip("napari")  # the viewer is an extra
    from napari.layers import Labels
    from napari.plugins.io import read_data_with_plugins
    from npe2 import PluginManager

    PluginManager.instance().discover()  # as napari does when it starts
    bands, truth = _scene()
    source = _geotiff(tmp_path / "scene.tif", bands, nodata=0)
    monkeypatch.setattr(geo, "LAZY_BYTES", 1024)  # a "large" file: read lazily
    layers, _ = read_data_with_plugins([str(source)], plugin="napari-unsupseg")
    data, kwargs, kind = layers[0]
    assert kind == "image" and kwargs["channel_axis"] == 0 and data.shape == (4, 48, 48)
    assert type(data).__module__.startswith("dask")
    np.testing.assert_array_equal(np.asarray(data), bands)
    assert kwargs["scale"] == (10.0, 10.0)
    assert kwargs["metadata"]["transform"] == list(TRANSFORM)[:6]
    assert kwargs["metadata"]["nodata"] == 0 and "32633" in kwargs["metadata"]["crs"]

    layer = Labels(truth.astype(np.uint16), metadata=kwargs["metadata"])
    out = tmp_path / "from_napari.tif"
    written = napari.save_layers(str(out), [layer], plugin="napari-unsupseg")
    assert written == [str(out)]
    georef = geo.read_georef(out)
    assert georef.transform == tuple(TRANSFORM)[:6] and "32633" in georef.crs
    np.testing.assert_array_equal(rasterio.open(out).read(1), truth)

    polygons = tmp_path / "from_napari.geojson"
    napari.save_layers(str(polygons), [layer], plugin="napari-unsupseg")
    collection = json.loads(polygons.read_text())
    shapes = [(f["geometry"], f["properties"]["label"]) for f in collection["features"]]
    back = rasterize(shapes, out_shape=truth.shape, transform=TRANSFORM, dtype="int32")
    np.testing.assert_array_equal(back, truth)


@pytest.mark.parametrize("interleave", ["pixel", "band"])
def test_six_band_geotiff_is_read_as_six_channels(tmp_path, interleave):
    from napari_unsupseg.cli._common import load_channels_last

    bands, _ = _scene()
    six = np.concatenate([bands, bands[:2] // 2])
    path = tmp_path / "six.tif"
    with rasterio.open(path, "w", driver="GTiff", height=48, width=48, count=6, dtype="uint16",
                       crs="EPSG:32633", transform=TRANSFORM, interleave=interleave) as target:
        target.write(six)
    image = load_channels_last(path, "auto")
    assert image.shape == (48, 48, 6)
    np.testing.assert_array_equal(np.moveaxis(image, -1, 0), six)
