"""ONNX models through onnxruntime: NHWC fixed-size and NCHW dynamic inputs, logits or
probabilities; export to ONNX then re-import predicts the same."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _models import agreement, randomise, smooth_rgb
from torch import nn

from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.models import ModelConfig, build_model
from napari_unsupseg.core.models.checkpoints import LoadedModel, describe, load_checkpoint
from napari_unsupseg.core.models.onnx_model import input_layout
from napari_unsupseg.core.predict import PredictParams, predict

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")


class PixelSoftmaxNHWC(nn.Module):
    """A Keras-like per-pixel classifier: NHWC in, softmax over the last axis out."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 1), nn.Tanh(), nn.Conv2d(16, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.body(x.permute(0, 3, 1, 2))
        return torch.softmax(logits, 1).permute(0, 2, 3, 1)


class SmallConvNCHW(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(8, classes, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def sharpen(net: nn.Module, seed: int) -> nn.Module:
    """Random weights centred on mid-grey inputs (an odd activation between), a strong
    last layer without bias: the arg-max follows the colours."""
    torch.manual_seed(seed)
    first, last = net.body[0], net.body[-1]
    with torch.no_grad():
        first.weight.normal_(0, 1)
        first.bias.copy_(-0.5 * first.weight.sum(dim=(1, 2, 3)))
        last.weight.normal_(0, 1)
        last.bias.zero_()
    return net.eval()


def export(model: nn.Module, path, example: torch.Tensor, dynamic: bool) -> None:
    """An ONNX file as another tool writes one (here PyTorch's dynamo exporter)."""
    auto = torch.export.Dim.AUTO
    axes = ({0: auto, 2: auto, 3: auto},) if dynamic else None
    if dynamic:  # export specialises a batch of 1 to a constant
        example = example.expand(2, *example.shape[1:])
    torch.onnx.export(model.eval(), (example,), str(path), dynamo=True, external_data=False,
                      input_names=["x"], output_names=["y"], dynamic_shapes=axes,
                      verbose=False)


def colour_blocks(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Random colours in 8 px blocks: a per-pixel classifier gives several classes."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (shape[0] // 8 + 1, shape[1] // 8 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 8, 0), 8, 1)[:shape[0], :shape[1]].copy()


def scaled(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1)[None] / 255)


def test_input_layouts_are_read_from_the_shape():
    assert input_layout([1, 3, "h", "w"]) == ("NCHW", 3, None)
    assert input_layout(["n", 128, 128, 3]) == ("NHWC", 3, (128, 128))
    assert input_layout([1, 1, 256, 256]) == ("NCHW", 1, (256, 256))
    with pytest.raises(InputError, match="4: NCHW or NHWC"):
        input_layout([1, 3, 64])


def test_nhwc_fixed_size_probabilities_predicted_tile_by_tile(tmp_path):
    net = sharpen(PixelSoftmaxNHWC(), seed=1)
    path = tmp_path / "pets_unet.onnx"
    export(net, path, torch.zeros(1, 32, 32, 3), dynamic=False)
    loaded = load_checkpoint(path)
    config = loaded.config
    assert (config.num_classes, config.in_channels, config.input_size) == (4, 3, [32, 32])
    assert loaded.model.layout == "NHWC" and loaded.model.probabilities
    text = describe(loaded)
    assert "fixed 32 x 32" in text and "probabilities, NHWC" in text
    image = colour_blocks((50, 71))  # not a multiple of 32: edge tiles are padded up to 32
    result = run_to_end(predict(image, PredictParams(tile_size=1024, overlap=8),
                                model=loaded))
    assert result.metadata["tiles"] == 6  # 2 x 3 tiles of 32 x 32
    with torch.inference_mode():  # per-pixel model: tiling cannot change the answer
        expected = net.body(scaled(image))[0].argmax(0).numpy()
    assert agreement(result.labels, expected + result.metadata["label_offset"]) == 1.0
    assert len(np.unique(expected)) >= 2


def test_nchw_dynamic_logits_equal_the_torch_forward(tmp_path):
    net = sharpen(SmallConvNCHW(), seed=2)
    path = tmp_path / "dynamic.onnx"
    export(net, path, torch.zeros(1, 3, 40, 40), dynamic=True)
    loaded = load_checkpoint(path)
    assert loaded.model.layout == "NCHW" and not loaded.model.probabilities
    assert loaded.config.input_size == [] and loaded.config.intensity == "dtype"
    image = colour_blocks((45, 77))
    result = run_to_end(predict(image, PredictParams(), model=loaded))
    with torch.inference_mode():
        expected = net(scaled(image))[0].argmax(0).numpy()
    assert len(np.unique(expected)) >= 2
    assert agreement(result.labels, expected + result.metadata["label_offset"]) == 1.0


def test_export_then_reimport_predicts_the_same(tmp_path):
    from napari_unsupseg.core.models.export import export_onnx

    config = ModelConfig("unet", 3, depth=2, base_channels=8, class_names=["a", "b", "c"],
                         mean=[0.4] * 3, std=[0.3] * 3)
    original = LoadedModel(randomise(build_model(config), seed=4), config)
    reloaded = load_checkpoint(export_onnx(original, tmp_path / "unet.onnx"))
    # the configuration travels in the file's metadata: classes, normalisation, padding
    assert reloaded.config.class_names == ["a", "b", "c"]
    assert reloaded.config.mean == [0.4] * 3 and reloaded.model.size_multiple == 4
    image = smooth_rgb((48, 61))  # not a multiple of 4: tiles are padded as the U-Net's
    first = run_to_end(predict(image, PredictParams(), model=original))
    second = run_to_end(predict(image, PredictParams(), model=reloaded))
    assert len(np.unique(first.labels)) >= 2
    assert agreement(first.labels, second.labels) >= 0.999
    assert second.metadata["class_names"] == ["a", "b", "c"]


def test_an_unreadable_file_names_what_was_expected(tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x00\x01 not a protobuf")
    with pytest.raises(InputError, match="could not be read as an ONNX model"):
        load_checkpoint(junk)
    other = tmp_path / "weights.h5"
    other.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(InputError, match="expected a PyTorch checkpoint.*ONNX.*bioimage.io"):
        load_checkpoint(other)
