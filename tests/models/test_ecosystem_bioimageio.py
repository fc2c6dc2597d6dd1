"""bioimage.io model packages: export then re-import predicts the same (folder, zip,
ONNX weights, and TorchScript weights of packages written before); packages written
elsewhere (ONNX weights, preprocessing, class names) are read; what cannot be read is said
plainly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from _models import agreement, legacy_torchscript, randomise, smooth_rgb

from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.models import ModelConfig, build_model
from napari_unsupseg.core.models.bioimageio import export_package
from napari_unsupseg.core.models.checkpoints import LoadedModel, describe, load_checkpoint
from napari_unsupseg.core.predict import PredictParams, predict

CLASSES = ["background", "nucleus", "edge"]


@pytest.fixture(scope="module")
def unet() -> LoadedModel:
    config = ModelConfig("unet", 3, depth=2, base_channels=8, class_names=CLASSES,
                         background=True, mean=[0.45] * 3, std=[0.25] * 3)
    return LoadedModel(randomise(build_model(config), seed=5), config)


def labels(image, model):
    return run_to_end(predict(image, PredictParams(), model=model))


def test_export_then_reimport_predicts_the_same(tmp_path, unet):
    image = smooth_rgb((45, 58))
    expected = labels(image, unet)
    assert len(np.unique(expected.labels)) >= 2
    rdf = export_package(unet, tmp_path / "pkg", name="nuclei unet")
    archive = export_package(unet, tmp_path / "nuclei.zip")
    for source in (tmp_path / "pkg", rdf, archive):
        loaded = load_checkpoint(source)
        assert loaded.format == "bioimage.io (pytorch_state_dict)"
        assert loaded.config.class_names == CLASSES and loaded.config.mean == [0.45] * 3
        result = labels(image, loaded)
        assert agreement(result.labels, expected.labels) == 1.0
        assert result.metadata["class_names"] == CLASSES
    written = yaml.safe_load(rdf.read_text())
    assert set(written["weights"]) == {"pytorch_state_dict", "onnx"}  # no TorchScript
    # the same package read through its ONNX weights alone
    pytest.importorskip("onnxruntime")
    written["weights"] = {"onnx": written["weights"]["onnx"]}
    rdf.write_text(yaml.safe_dump(written))
    loaded = load_checkpoint(tmp_path / "pkg")
    assert loaded.format == "bioimage.io (onnx)"
    assert agreement(labels(image, loaded).labels, expected.labels) == 1.0
    # a package written before, with TorchScript weights alone, is still read
    with legacy_torchscript():
        traced = torch.jit.trace(unet.model.eval(), torch.zeros(1, 3, 64, 64),
                                 check_trace=False)
        traced.save(str(tmp_path / "pkg" / "weights_torchscript.pt"))
    written["weights"] = {"torchscript": {"source": "weights_torchscript.pt",
                                          "pytorch_version": "2.6"}}
    rdf.write_text(yaml.safe_dump(written))
    loaded = load_checkpoint(tmp_path / "pkg")
    assert loaded.format == "bioimage.io (torchscript)"
    assert agreement(labels(image, loaded).labels, expected.labels) == 1.0
    # test tensors: the package's own output for its test input
    x = np.load(tmp_path / "pkg" / "test_input.npy")
    y = np.load(tmp_path / "pkg" / "test_output.npy")
    assert x.shape == (1, 3, 64, 64) and y.shape == (1, 3, 64, 64)


def test_the_written_description_is_valid_for_bioimageio_spec(tmp_path, unet):
    spec = pytest.importorskip("bioimageio.spec")
    description = spec.load_description(export_package(unet, tmp_path / "pkg"))
    assert description.validation_summary.status in ("valid-format", "passed")
    assert [str(n) for n in description.outputs[0].axes[1].channel_names] == CLASSES


def test_a_package_from_elsewhere_with_onnx_weights(tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1)).eval()
    folder = tmp_path / "other"
    folder.mkdir()
    pytest.importorskip("onnxscript")
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(folder / "model.onnx"),
                      dynamo=True, external_data=False, input_names=["raw"],
                      output_names=["out"], verbose=False,
                      dynamic_shapes=({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO},))
    rdf = {"format_version": "0.5.4", "type": "model", "name": "other tool's model",
           "inputs": [{"id": "raw", "axes": [
               {"type": "batch"}, {"type": "channel", "channel_names": ["r", "g", "b"]},
               {"type": "space", "id": "y", "size": {"min": 16, "step": 16}},
               {"type": "space", "id": "x", "size": {"min": 16, "step": 16}}],
               "preprocessing": [
                   {"id": "scale_linear", "kwargs": {"gain": 0.00392156862, "offset": 0}},
                   {"id": "fixed_zero_mean_unit_variance",
                    "kwargs": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}}]}],
           "outputs": [{"id": "out", "axes": [
               {"type": "batch"}, {"type": "channel", "channel_names": ["sky", "ground"]},
               {"type": "space", "id": "y"}, {"type": "space", "id": "x"}]}],
           "weights": {"keras_hdf5": {"source": "missing.h5"},
                       "onnx": {"source": "model.onnx", "opset_version": 17}}}
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    loaded = load_checkpoint(folder)
    config = loaded.config
    assert config.class_names == ["sky", "ground"] and config.intensity == "dtype"
    assert config.mean == [0.5, 0.4, 0.3] and config.std == [0.2] * 3
    assert "bioimage.io 'other tool's model'" in describe(loaded)
    image = smooth_rgb((40, 52))
    x = (image.astype(np.float32) / 255 - np.float32([0.5, 0.4, 0.3])) / np.float32(0.2)
    with torch.inference_mode():
        expected = net(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))[0].argmax(0)
    result = labels(image, loaded)
    assert agreement(result.labels, expected.numpy() + 1) == 1.0


def test_what_cannot_be_read_is_named(tmp_path):
    folder = tmp_path / "keras"
    folder.mkdir()
    (folder / "rdf.yaml").write_text(yaml.safe_dump(
        {"type": "model", "name": "keras only", "weights": {"keras_hdf5": {"source": "m.h5"}}}))
    with pytest.raises(InputError, match="keras_hdf5.*reads pytorch_state_dict, onnx"):
        load_checkpoint(folder)
    (folder / "rdf.yaml").write_text(yaml.safe_dump({"type": "dataset", "name": "cells"}))
    with pytest.raises(InputError, match="'dataset', not a model"):
        load_checkpoint(folder)
    with pytest.raises(InputError, match="folder without a bioimage.io rdf.yaml"):
        load_checkpoint(tmp_path)


def test_cli_export_writes_a_package_and_onnx(tmp_path, unet, capsys):
    from napari_unsupseg.cli import main
    from napari_unsupseg.core.models.checkpoints import save_checkpoint

    source = save_checkpoint(tmp_path / "nuclei.pt", unet.model, unet.config)
    assert main(["export", str(source), "-o", str(tmp_path / "nuclei.zip")]) == 0
    assert "Classes: 3 (background, nucleus, edge)" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "nuclei.zip").config.class_names == CLASSES
    assert main(["export", str(source), "-o", str(tmp_path / "nuclei.onnx")]) == 0
    assert load_checkpoint(tmp_path / "nuclei.onnx").config.class_names == CLASSES
    assert main(["export", str(source), "-o", str(tmp_path / "nuclei.h5")]) == 2
