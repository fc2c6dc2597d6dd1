"""Models at their own resolution: Deepness-style ONNX metadata read, images of another
pixel size resampled to the model's and the labels brought back, bands numbered from 1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_unsupseg.cli import main
from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.base.geo import Georef
from napari_unsupseg.core.models.checkpoints import load_checkpoint
from napari_unsupseg.core.models.presets import ModelConfig
from napari_unsupseg.core.predict import PredictParams, predict_scene
from napari_unsupseg.core.predict.resolution import model_pixel_size, resample_image, to_grid

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
rasterio = pytest.importorskip("rasterio")

NATIVE = 0.3  # metres per pixel: the model's resolution (30 cm/px)
SIDE = 96  # pixels of the scene at the native resolution
UTM = "EPSG:32633"


def deepness_onnx(path, channels: int = 3, resolution_cm: float = 30.0):
    """A per-pixel classifier (1 x 1 convolution and softmax) with Deepness metadata:
    class 1 where the first channel beats the others, as Deepness files carry it."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.full((2, channels, 1, 1), -1.0, np.float32)
    weight[0] = 0.0
    weight[1, 0] = channels - 1.0  # red minus the mean of the rest, scaled up
    weight *= 8
    bias = np.zeros(2, np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["z"]),
         helper.make_node("Softmax", ["z"], ["y"], axis=1)],
        "pixel_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, "h", "w"])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"model_type": "Segmentor",
                       "class_names": {0: "background", 1: "roof"},
                       "resolution": resolution_cm, "tiles_size": 256, "tiles_overlap": 10,
                       "standardization_mean": [0.0] * channels,
                       "standardization_std": [1.0] * channels,
                       "seg_thresh": 0.5, "seg_small_segment": 7}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))
    return path


def scene(pixel: float, bands: int = 3) -> np.ndarray:
    """The same 28.8 m square at ``pixel`` m/px (a multiple of 7.5 cm): red blobs (roofs)
    on a grey-green ground, drawn at 7.5 cm/px and averaged over each pixel, as a sensor
    with coarser pixels sees the ground."""
    base, fine = 0.075, round(SIDE * NATIVE / 0.075)
    centres = (np.arange(fine) + 0.5) * base
    y, x = np.meshgrid(centres, centres, indexing="ij")
    roofs = (np.sin(x / 3.5) * np.cos(y / 3.0) + 0.3 * np.sin((x + y) / 5.0)) > 0.35
    image = np.empty((fine, fine, bands), np.float32)
    image[...] = (90, 130, 80, 60, 40)[:bands]
    image[roofs, 0], image[roofs, 1:] = 200, 70
    k = round(pixel / base)
    pooled = image.reshape(fine // k, k, fine // k, k, bands).mean(axis=(1, 3))
    return np.rint(pooled).astype(np.uint8)


def write_geotiff(path, image: np.ndarray, pixel: float):
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1],
                       count=image.shape[2], dtype=image.dtype, crs=UTM,
                       transform=Affine(pixel, 0, 500_000, 0, -pixel, 5_800_000)) as target:
        target.write(np.moveaxis(image, -1, 0))
    return path


def georef(pixel: float) -> Georef:
    return Georef(rasterio.crs.CRS.from_string(UTM).to_wkt(),
                  (pixel, 0.0, 500_000.0, 0.0, -pixel, 5_800_000.0))


@pytest.fixture
def model_path(tmp_path):
    return deepness_onnx(tmp_path / "roofs.onnx")


def test_deepness_metadata_gives_classes_resolution_tiles_and_standardisation(model_path):
    model = load_checkpoint(model_path)
    config = model.config
    assert config.class_names == ["background", "roof"] and config.background
    assert config.resolution == [pytest.approx(0.3)] * 2 and config.resolution_unit == "m"
    assert (config.tile_size, config.tile_overlap) == (256, 26)
    assert config.mean == [0.0] * 3 and config.std == [1.0] * 3
    assert "30 cm/px" in model.details["deepness"]
    assert "seg_small_segment 7" in model.details["deepness"]
    assert model_pixel_size(config).x == pytest.approx(0.3)


def test_a_deepness_model_that_does_not_segment_is_refused(tmp_path):
    path = deepness_onnx(tmp_path / "boxes.onnx")
    proto = onnx.load(str(path))
    next(p for p in proto.metadata_props if p.key == "model_type").value = '"Detector"'
    onnx.save(proto, str(path))
    with pytest.raises(InputError, match="only 'Segmentor' models"):
        load_checkpoint(path)


@pytest.mark.parametrize("pixel", [NATIVE / 2, NATIVE * 2])
def test_finer_and_coarser_scenes_give_the_native_classes(model_path, pixel):
    model = load_checkpoint(model_path)
    params = PredictParams(checkpoint=str(model_path), device="cpu")
    native = run_to_end(predict_scene(scene(NATIVE), params, model, georef=georef(NATIVE)))
    other = run_to_end(predict_scene(scene(pixel), params, model, georef=georef(pixel)))
    note = other.metadata["resolution"]
    assert note["resampled"] and note["model_grid"] == [SIDE, SIDE]
    assert other.labels.shape == scene(pixel).shape[:2]  # back on the image's grid
    assert not native.metadata["resolution"]["resampled"]
    compared = to_grid(other.labels, native.labels.shape)
    assert (compared == native.labels).mean() >= 0.97
    assert set(np.unique(native.labels)) == {0, 1}


def test_resampling_keeps_the_type_and_smooths_when_shrinking():
    stripes = np.zeros((64, 64, 1), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: aliasing would keep them at full contrast
    half = resample_image(stripes, (32, 32))
    assert half.dtype == np.uint8 and half.shape == (32, 32, 1)
    assert 100 < half.mean() < 155 and half.std() < 40


def test_no_resample_and_unknown_resolutions_predict_as_given(model_path):
    model = load_checkpoint(model_path)
    image = scene(NATIVE / 2)
    kept = run_to_end(predict_scene(image, PredictParams(resample=False, device="cpu"), model,
                                    georef=georef(NATIVE / 2)))
    plain = run_to_end(predict_scene(image, PredictParams(device="cpu"), model))
    for result in (kept, plain):
        assert not result.metadata["resolution"]["resampled"]
    assert plain.metadata["resolution"]["image"] is None
    stated = run_to_end(predict_scene(image, PredictParams(resolution="0.15", device="cpu"),
                                      model))
    assert stated.metadata["resolution"]["model_grid"] == [SIDE, SIDE]


def test_units_that_differ_are_refused(model_path):
    model = load_checkpoint(model_path)
    degrees = Georef(rasterio.crs.CRS.from_epsg(4326).to_wkt(),
                     (1e-5, 0.0, 16.0, 0.0, -1e-5, 52.0))
    with pytest.raises(InputError, match="in m but the image's is in degree"):
        run_to_end(predict_scene(scene(NATIVE), PredictParams(device="cpu"), model,
                                 georef=degrees))


def test_predict_command_resamples_a_geotiff_and_writes_on_its_grid(tmp_path, model_path):
    fine = write_geotiff(tmp_path / "fine.tif", scene(NATIVE / 2), NATIVE / 2)
    out = tmp_path / "fine_classes.tif"
    assert main(["predict", str(fine), "--checkpoint", str(model_path), "-o", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["resolution"]["resampled"]
    assert sidecar["resolution"]["image"]["x"] == pytest.approx(0.15)
    with rasterio.open(out) as written:
        assert written.shape == (2 * SIDE, 2 * SIDE)
        assert written.transform.a == pytest.approx(0.15)


def test_resolution_option_for_a_plain_tiff(tmp_path, model_path, capsys):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, scene(NATIVE * 2))
    out = tmp_path / "plain_classes.tif"
    assert main(["predict", str(plain), "--checkpoint", str(model_path), "-o", str(out),
                 "--resolution", "0.6", "--device", "cpu", "--quiet"]) == 0
    assert "resampled to the model's 0.3 m/px" in capsys.readouterr().out
    assert tifffile.imread(out).shape == (SIDE // 2, SIDE // 2)


def test_bands_feed_the_model_channels_in_order(tmp_path, model_path):
    five = write_geotiff(tmp_path / "five.tif", scene(NATIVE, bands=5), NATIVE)
    out = tmp_path / "five_classes.tif"
    assert main(["predict", str(five), "--checkpoint", str(model_path), "-o", str(out),
                 "--bands", "1,2,3", "--device", "cpu", "--quiet"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["channels"] == [0, 1, 2]
    swapped = tmp_path / "swapped.tif"
    assert main(["predict", str(five), "--checkpoint", str(model_path), "-o", str(swapped),
                 "--bands", "2,1,3", "--device", "cpu", "--quiet"]) == 0
    # Band 2 in the model's red channel: the roofs are no longer the red things.
    assert (tifffile.imread(swapped) != tifffile.imread(out)).mean() > 0.2


def test_missing_bands_and_too_many_model_channels_are_refused(tmp_path, model_path, capsys):
    image = write_geotiff(tmp_path / "rgb.tif", scene(NATIVE), NATIVE)
    out = tmp_path / "out" / "labels.tif"
    assert main(["predict", str(image), "--checkpoint", str(model_path), "-o", str(out),
                 "--bands", "4,3,2", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "band(s) [4] do not exist" in error and error.count(".") <= 2
    four = deepness_onnx(tmp_path / "four.onnx", channels=4)
    assert main(["predict", str(image), "--checkpoint", str(four), "-o", str(out),
                 "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "takes 4 channels but the image has only 3 band(s)" in error
    assert error.strip().count("\n") == 0
    assert not out.parent.exists()


def test_training_on_geotiffs_records_their_pixel_size(tmp_path, capsys):
    from napari_unsupseg.cli.train import _record_resolution

    config = ModelConfig("unet", num_classes=2)
    paths = [write_geotiff(tmp_path / f"{i}.tif", scene(NATIVE), NATIVE) for i in range(2)]
    _record_resolution(config, paths)
    assert config.resolution == [pytest.approx(0.3)] * 2 and config.resolution_unit == "m"
    assert ModelConfig.from_mapping(json.loads(config.to_json())).resolution == \
        config.resolution
    mixed = ModelConfig("unet", num_classes=2)
    paths.append(write_geotiff(tmp_path / "coarse.tif", scene(NATIVE * 2), NATIVE * 2))
    _record_resolution(mixed, paths)
    assert mixed.resolution == [] and "do not share one pixel size" in capsys.readouterr().out


def test_batch_resamples_each_geotiff_to_the_model(tmp_path, model_path):
    from napari_unsupseg.core.batch import Job, process_file

    source = write_geotiff(tmp_path / "fine.tif", scene(NATIVE / 2), NATIVE / 2)
    job = Job(source, tmp_path / "fine_predict.tif")
    process_file(job, "predict", PredictParams(checkpoint=str(model_path), device="cpu"))
    sidecar = json.loads(job.output.with_suffix(".json").read_text())
    assert sidecar["resolution"]["resampled"] and sidecar["resolution"]["model_grid"] == [96, 96]
    assert tifffile.imread(job.output).shape == (2 * SIDE, 2 * SIDE)


def test_the_model_description_says_its_resolution(model_path):
    from napari_unsupseg.core.models.summary import describe

    text = describe(load_checkpoint(model_path))
    assert "Resolution: 0.3 m/px" in text and "Deepness: trained at 30 cm/px" in text


def test_a_resampled_image_too_large_is_refused(model_path, monkeypatch):
    import napari_unsupseg.core.predict.resolution as resolution

    monkeypatch.setattr(resolution, "MAX_RESAMPLED_BYTES", 10_000)
    model = load_checkpoint(model_path)
    with pytest.raises(InputError, match=r"would be 192 x 192 px .*turn resampling off"):
        run_to_end(predict_scene(scene(NATIVE), PredictParams(device="cpu"), model,
                                 georef=georef(NATIVE * 2)))


def test_labels_take_the_class_covering_most_of_each_coarser_pixel():
    from napari_unsupseg.core.predict.resolution import labels_to_grid

    labels = np.array([[1, 1, 2, 2], [1, 2, 2, 2], [3, 3, 1, 1], [3, 3, 1, 2]], np.uint8)
    np.testing.assert_array_equal(labels_to_grid(labels, (2, 2)), [[1, 2], [3, 1]])
    np.testing.assert_array_equal(labels_to_grid(labels, (8, 8))[::2, ::2], labels)
