"""TorchScript and ONNX export of the package's networks: same logits at another size,
and a TorchScript file loads back through the checkpoint loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unsupseg.core.models import ModelConfig, build_model
from napari_unsupseg.core.models.checkpoints import load_checkpoint
from napari_unsupseg.core.models.export import export_onnx, export_torchscript


def test_exports_match_the_network_at_other_sizes(tmp_path):
    arch = "unet"  # DeepLab exports the same way; it takes seconds longer to trace
    torch.manual_seed(0)
    config = ModelConfig(arch, 4, in_channels=2, depth=2, base_channels=8)
    net = build_model(config)
    x = torch.randn(2, 2, 64, 96)
    with torch.no_grad():
        expected = net(x)
    scripted = torch.jit.load(str(export_torchscript(net, tmp_path / "m.ts")))
    torch.testing.assert_close(scripted(x), expected)
    reloaded = load_checkpoint(tmp_path / "m.ts")
    assert reloaded.config.architecture == arch and reloaded.config.num_classes == 4

    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(export_onnx(net, tmp_path / "m.onnx")))
    assert session.get_inputs()[0].name == "input"
    (out,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-4)
