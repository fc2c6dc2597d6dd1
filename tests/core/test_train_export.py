"""Export of the package's networks through PyTorch's supported exporters (torch.export and
the dynamo ONNX exporter): same logits at another size, the archive loads back through
the checkpoint loader, and exporting raises no deprecation warning."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest
import torch

from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.models import ModelConfig, build_model
from napari_unsupseg.core.models.checkpoints import LoadedModel, load_checkpoint
from napari_unsupseg.core.models.export import export_onnx, export_program


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig("unet", 4, in_channels=2, depth=2, base_channels=8,
                         class_names=["a", "b", "c", "d"])
    return LoadedModel(build_model(config).eval(), config)


def test_program_matches_the_network_at_other_sizes_and_loads_back(tmp_path, net):
    x = torch.randn(3, 2, 64, 96)  # another batch and size than the example input
    with torch.no_grad():
        expected = net.model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # torch.jit would warn here
        path = export_program(net, tmp_path / "m.pt2")
    program = torch.export.load(str(path))
    torch.testing.assert_close(program.module()(x), expected)
    torch.testing.assert_close(program.module()(x[:1, :, :32, :48]), net.model(x[:1, :, :32, :48]))
    reloaded = load_checkpoint(path)
    assert reloaded.format == "torch.export"
    assert reloaded.config.architecture == "unet" and reloaded.config.num_classes == 4
    assert reloaded.config.class_names == ["a", "b", "c", "d"]  # stored in the archive
    with torch.no_grad():
        torch.testing.assert_close(reloaded.model(x), expected)


def test_a_program_with_pickled_weights_is_refused(tmp_path, net):
    path = export_program(net, tmp_path / "m.pt2")
    tampered = tmp_path / "tampered.pt2"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tampered, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                next(iter(config["config"].values()))["use_pickle"] = True
                data = json.dumps(config).encode()
            target.writestr(item, data)
    with pytest.raises(InputError, match="pickled, and pickles can run code"):
        load_checkpoint(tampered)


def test_onnx_matches_the_network_at_other_sizes(tmp_path, net):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    x = torch.randn(2, 2, 64, 96)
    with torch.no_grad():
        expected = net.model(x)
    with warnings.catch_warnings():
        # the legacy TorchScript-based exporter warns; the dynamo exporter does not
        warnings.simplefilter("error", DeprecationWarning)
        path = export_onnx(net.model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path))
    assert session.get_inputs()[0].name == "input"
    (out,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-4)
    (single,) = session.run(None, {"input": x[:1, :, :32, :48].numpy()})
    assert single.shape == (1, 4, 32, 48)


def test_cli_export_writes_a_program_and_refuses_torchscript(tmp_path, net, capsys):
    from napari_unsupseg.cli import main
    from napari_unsupseg.core.models.checkpoints import save_checkpoint

    source = save_checkpoint(tmp_path / "m.pt", net.model, net.config)
    assert main(["export", str(source), "-o", str(tmp_path / "m.pt2")]) == 0
    assert load_checkpoint(tmp_path / "m.pt2").config.class_names == ["a", "b", "c", "d"]
    assert main(["export", str(source), "-o", str(tmp_path / "m.ts")]) == 2
    assert "TorchScript is no longer written" in capsys.readouterr().err
