"""Checkpoint formats round-trip to identical logits; detection; clear errors; no code runs."""

from __future__ import annotations

import pathlib
import pickle

import numpy as np
import pytest
import torch
from _models import legacy_torchscript, randomise

from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.models import ModelConfig, build_model
from napari_unsupseg.core.models.checkpoints import (
    detect_config,
    load_checkpoint,
    save_checkpoint,
)
from napari_unsupseg.core.models.deeplab import deeplab


def logits(model: torch.nn.Module, channels: int = 3, size: tuple[int, int] = (67, 58)):
    x = torch.randn(1, channels, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        return model(x)


def save(fmt: str, path: pathlib.Path, model: torch.nn.Module, config: ModelConfig):
    state = model.state_dict()
    if fmt == "vainf":
        # as DeepLabV3Plus-Pytorch's save_ckpt: best_score is a numpy float64
        torch.save({"model_state": state, "cur_itrs": 30000, "best_score": np.float64(0.7),
                    "scheduler_state": {"base_lrs": [0.01], "last_epoch": 30000},
                    "optimizer_state": {"state": {}, "param_groups": []}}, path)
    elif fmt == "bare":
        torch.save(state, path)
    elif fmt == "module":
        torch.save({"module." + k: v for k, v in state.items()}, path)
    elif fmt == "torchscript":
        example = torch.randn(1, config.in_channels, 64, 64)
        with legacy_torchscript():
            torch.jit.save(torch.jit.trace(model, example, check_trace=False), str(path))
    elif fmt == "project":
        save_checkpoint(path, model, config)
    return path


SMALL = {
    "deeplabv3plus_mobilenet": ModelConfig("deeplabv3plus_mobilenet", 21),
    "deeplabv3_mobilenet": ModelConfig("deeplabv3_mobilenet", 19),
    "deeplabv3plus_mobilenet_sep": ModelConfig("deeplabv3plus_mobilenet", 21, separable=True),
    "unet": ModelConfig("unet", 3, in_channels=1, depth=3, base_channels=4),
    "unet_mobilenet": ModelConfig("unet_mobilenet", 3, in_channels=4),
}


FORMATS = ["vainf", "bare", "module", "torchscript", "project"]
CASES = [(fmt, name) for fmt in FORMATS for name in ("deeplabv3plus_mobilenet_sep", "unet")] + [
    ("vainf", "deeplabv3plus_mobilenet"), ("bare", "deeplabv3_mobilenet"),
    ("torchscript", "unet_mobilenet"), ("project", "unet_mobilenet")]


@pytest.mark.parametrize(("fmt", "name"), CASES)
def test_every_format_reloads_to_identical_logits(tmp_path, name, fmt):
    config = SMALL[name]
    model = randomise(build_model(config))
    path = save(fmt, tmp_path / f"{name}.pth", model, config)
    loaded = load_checkpoint(path)
    assert loaded.config.architecture == config.architecture
    assert loaded.config.num_classes == config.num_classes
    assert loaded.config.in_channels == config.in_channels
    assert loaded.config.separable == config.separable
    assert not loaded.model.training
    assert len(loaded.sha256) == 64
    assert torch.equal(logits(model, config.in_channels), logits(loaded.model, config.in_channels))
    fresh = build_model(config)  # a random model must not pass for the loaded one
    assert not torch.allclose(logits(fresh, config.in_channels),
                              logits(loaded.model, config.in_channels))


def test_resnet50_vainf_checkpoint_reloads(tmp_path):
    arch = "deeplabv3plus_resnet50"
    model = randomise(deeplab(arch, num_classes=21))
    path = save("vainf", tmp_path / "r50.pth", model, ModelConfig(arch, 21))
    loaded = load_checkpoint(path)
    assert loaded.config.architecture == arch and loaded.format == "deeplabv3plus-pytorch"
    assert torch.equal(logits(model, size=(64, 48)), logits(loaded.model, size=(64, 48)))


@pytest.mark.parametrize(
    "arch", ["deeplabv3plus_mobilenet", "deeplabv3_mobilenet", "deeplabv3plus_resnet50",
             "deeplabv3_resnet50", "deeplabv3plus_resnet101", "deeplabv3_resnet101"])
@pytest.mark.parametrize("separable", [False, True])
def test_detection_of_every_deeplab(arch, separable):
    with torch.device("meta"):
        state = deeplab(arch, num_classes=7, in_channels=4, separable=separable).state_dict()
    config = detect_config(state)
    assert (config.architecture, config.num_classes, config.in_channels, config.separable) == (
        arch, 7, 4, separable)


def test_detection_of_unets():
    state = build_model(ModelConfig("unet", 6, in_channels=2, depth=3, base_channels=8,
                                    batch_norm=False)).state_dict()
    config = detect_config(state)
    assert (config.architecture, config.num_classes, config.in_channels, config.depth,
            config.base_channels, config.batch_norm) == ("unet", 6, 2, 3, 8, False)
    state = build_model(ModelConfig("unet_mobilenet", 5, in_channels=1)).state_dict()
    config = detect_config(state)
    assert (config.architecture, config.num_classes, config.in_channels) == ("unet_mobilenet", 5, 1)
    assert detect_config({"fc.weight": torch.zeros(2, 2)}) is None


def test_project_format_keeps_classes_and_stride(tmp_path):
    config = ModelConfig("deeplabv3plus_mobilenet", 3, output_stride=8, class_names=["a", "b", "c"],
                         palette=[[1, 2, 3], [4, 5, 6], [7, 8, 9]], background=True,
                         mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    model = randomise(build_model(config))
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, config))
    assert loaded.config == config
    assert loaded.model.output_stride == 8
    assert torch.equal(logits(model), logits(loaded.model))
    assert load_checkpoint(tmp_path / "m.pt", output_stride=16).model.output_stride == 16


def test_v3_checkpoint_into_v3plus_names_missing_and_unexpected_keys(tmp_path):
    path = save("vainf", tmp_path / "v3.pth", build_model(SMALL["deeplabv3_mobilenet"]), None)
    with pytest.raises(InputError) as error:
        load_checkpoint(path, architecture="deeplabv3plus_mobilenet")
    text = str(error.value)
    assert "Missing keys (" in text and "classifier.aspp.convs.0.0.weight" in text
    assert "Unexpected keys" in text and "classifier.classifier.0.convs.0.0.weight" in text
    assert "deeplabv3_mobilenet" in text  # says what the file looks like


def test_wrong_shapes_are_named(tmp_path):
    config = ModelConfig("unet", 3, in_channels=1, depth=2, base_channels=4)
    model = build_model(config)
    wrong = ModelConfig("unet", 5, in_channels=1, depth=2, base_channels=4)
    path = tmp_path / "m.pt"
    torch.save({"format": "napari-unsupseg", "config": wrong.to_json(),
                "state_dict": model.state_dict()}, path)
    with pytest.raises(InputError, match=r"another shape.*head\.weight"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = save("vainf", tmp_path / "m.pth", build_model(SMALL["unet"]), None)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        load_checkpoint(path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="could not be read"):
        load_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")


def test_unknown_keys_are_refused_not_run_randomly(tmp_path):
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="could not be recognised"):
        load_checkpoint(tmp_path / "other.pth")
    with pytest.raises(InputError, match="Missing keys"):
        load_checkpoint(tmp_path / "other.pth", architecture="unet")


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"model_state": {"w": torch.zeros(1)}, "extra": _Payload(marker)}, path)
    with open(path, "rb"):
        pass
    with pytest.raises(InputError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()
    # the same payload in a plain pickle file (legacy format) is refused as well
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps({"x": _Payload(marker)}))
    with pytest.raises(InputError):
        load_checkpoint(legacy)
    assert not marker.exists()


def test_torchscript_with_unknown_layout_runs_as_is(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1)).eval()
    path = tmp_path / "scripted.pt"
    with legacy_torchscript():
        torch.jit.save(torch.jit.script(net), str(path))
    loaded = load_checkpoint(path)
    assert loaded.config.architecture == "torchscript" and loaded.config.num_classes == 4
    assert torch.equal(logits(net), logits(loaded.model))


def test_bare_weights_with_a_json_sidecar(tmp_path):
    config = ModelConfig("unet", 2, in_channels=1, depth=2, base_channels=4,
                         class_names=["background", "nucleus"], background=True)
    model = randomise(build_model(config))
    torch.save(model.state_dict(), tmp_path / "nuclei.pth")
    (tmp_path / "nuclei.json").write_text(config.to_json())
    loaded = load_checkpoint(tmp_path / "nuclei.pth")
    assert loaded.config.class_names == ["background", "nucleus"]
    assert torch.equal(logits(model, 1), logits(loaded.model, 1))
    # someone else's JSON beside the weights is ignored, not an error
    (tmp_path / "nuclei.json").write_text('{"architecture": "x", "epochs": 3}')
    assert load_checkpoint(tmp_path / "nuclei.pth").config.class_names == []


def test_an_old_pytorch_is_named_not_called_a_damaged_file(tmp_path, monkeypatch):
    path = save("bare", tmp_path / "m.pth", build_model(SMALL["unet"]), None)
    monkeypatch.setattr(torch, "__version__", "2.4.1+cpu")
    with pytest.raises(InputError, match=r"needs PyTorch 2\.6 or newer.*has PyTorch 2\.4\.1"):
        load_checkpoint(path)
    monkeypatch.undo()
    monkeypatch.delattr(torch.serialization, "safe_globals")  # a 2.5 build without it
    with pytest.raises(InputError, match="needs PyTorch 2.6"):
        load_checkpoint(path)


def test_the_declared_pytorch_floor_is_the_one_checked():
    import tomllib

    from napari_unsupseg.core.models.checkpoints import TORCH_FLOOR

    pyproject = pathlib.Path(__file__).parents[2] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    declared = next(d for d in deps if d.replace(" ", "").startswith("torch>="))
    assert declared.replace(" ", "") == "torch>=" + ".".join(map(str, TORCH_FLOOR))


def test_class_count_of_a_transposed_convolution_head(tmp_path):
    # The MobileNet U-Net ends in a transposed convolution: weight (in, out, k, k). With
    # keys the detection cannot place, the class count comes from the head's axis 1.
    config = ModelConfig("unet_mobilenet", 5, in_channels=3)
    state = randomise(build_model(config)).state_dict()
    state.pop("encoder.features.0.0.weight")
    torch.save(state, tmp_path / "pets.pth")
    with pytest.raises(InputError) as error:
        load_checkpoint(tmp_path / "pets.pth", architecture="unet_mobilenet")
    text = str(error.value)
    assert "Missing keys (1): encoder.features.0.0.weight" in text
    assert "another shape" not in text  # built with 5 classes, not the head's input width
    from napari_unsupseg.core.models.layouts import guess_classes

    assert guess_classes(state, "unet_mobilenet") == 5
    assert guess_classes(build_model(SMALL["unet"]).state_dict(), "unet") == 3


def test_describe_says_what_was_recognised(tmp_path):
    from napari_unsupseg.core.models.checkpoints import describe

    path = save("vainf", tmp_path / "voc.pth", build_model(SMALL["deeplabv3plus_mobilenet"]),
                None)
    text = describe(load_checkpoint(path))
    assert "DeepLabV3+ MobileNetV2 (DeepLabV3Plus-Pytorch layout)" in text
    assert "Format: deeplabv3plus-pytorch" in text
    assert "Classes: 21 (background, aeroplane, bicycle, bird, boat, ...)" in text
    assert "ImageNet mean and std" in text and "Size: any (no padding)" in text
    unet = describe(load_checkpoint(save("bare", tmp_path / "u.pth",
                                         build_model(SMALL["unet"]), None)))
    assert "Size: any (tiles padded to a multiple of 8)" in unet
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1)).eval()
    with legacy_torchscript():
        torch.jit.save(torch.jit.script(net), str(tmp_path / "scripted.pt"))
    scripted = describe(load_checkpoint(tmp_path / "scripted.pt"))
    assert "Runs: its own code" in scripted and "padded to a multiple of 32" in scripted
