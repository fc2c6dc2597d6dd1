"""Training starts from an ImageNet classifier's state dict on disk (torchvision layout):
its tensors land in the U-Net encoders and DeepLab backbones unchanged, the first
convolution is adapted to other channel counts, a file of another network is refused in
one sentence, and a trained ResNet U-Net saves, reloads and predicts. The files are
torchvision's own networks with random weights; torchvision is only imported here."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from _models import randomise, torchvision_module

from napari_unsupseg.cli import main
from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.models import ModelConfig, build_model
from napari_unsupseg.core.models.architectures import input_geometry
from napari_unsupseg.core.models.checkpoints import load_checkpoint
from napari_unsupseg.core.models.layouts import detect_config
from napari_unsupseg.core.predict import PredictParams, predict
from napari_unsupseg.core.train import TRAIN_ARCHITECTURES, TrainParams, save_model, train
from napari_unsupseg.core.train.model import start_model

TINY = dict(epochs=1, steps_per_epoch=2, batch_size=2, crop_size=32, time_limit=60.0,
            threads=1, validation_fraction=0.0)


@pytest.fixture(scope="module")
def classifiers():
    return torchvision_module("models")


@pytest.fixture(scope="module")
def weight_files(classifiers, tmp_path_factory):
    """name -> (path of a saved random state dict, that state dict)."""
    folder = tmp_path_factory.mktemp("imagenet")
    files = {}
    for seed, name in enumerate(("resnet18", "resnet34", "resnet50", "mobilenet_v2")):
        state = randomise(getattr(classifiers, name)(weights=None), seed).state_dict()
        path = folder / f"{name}.pth"
        torch.save(state, path)
        files[name] = (path, state)
    return files


def _start(architecture: str, path, channels: int = 3, **extra):
    params = TrainParams(architecture=architecture, encoder_weights=str(path), **extra)
    return start_model(params, channels, 3, np.zeros(channels), np.ones(channels))


def _expected_keys(key: str, architecture: str) -> str | None:
    """Where torchvision's key is expected in the network (written out independently)."""
    if key.startswith(("fc.", "classifier.", "features.18.")):
        return None
    if architecture == "deeplabv3plus_mobilenet":
        index = int(key.split(".")[1])
        part = "low_level_features" if index < 4 else "high_level_features"
        return f"backbone.{part}.{key.removeprefix('features.')}"
    return ("backbone." if architecture.startswith("deeplab") else "encoder.") + key


CASES = [("resnet18", "unet_resnet18"), ("resnet34", "unet_resnet34"),
         ("resnet50", "unet_resnet50"), ("mobilenet_v2", "unet_mobilenet"),
         ("mobilenet_v2", "deeplabv3plus_mobilenet"), ("resnet50", "deeplabv3_resnet50")]


@pytest.mark.parametrize(("name", "architecture"), CASES)
def test_the_files_tensors_are_the_encoders(weight_files, name, architecture):
    path, state = weight_files[name]
    net, config, note = _start(architecture, path)
    own = net.state_dict()
    placed = {_expected_keys(k, architecture): v for k, v in state.items()}
    placed.pop(None, None)
    assert placed and all(torch.equal(own[k], v) for k, v in placed.items())
    prefix = "backbone." if architecture.startswith("deeplab") else "encoder."
    assert {k for k in own if k.startswith(prefix)} == set(placed)
    assert note["encoder_weights"] == str(path) and note["encoder_tensors"] == len(placed)
    assert note["encoder_first_conv"] == "as in the file"
    assert architecture in TRAIN_ARCHITECTURES


def test_the_resnet_encoder_computes_what_torchvision_does(classifiers, weight_files):
    path, state = weight_files["resnet18"]
    reference = classifiers.resnet18(weights=None)
    reference.load_state_dict(state)
    net, _, _ = _start("unet_resnet18", path)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        deep = net.eval().encode(x)[-1]
        r = reference.eval()
        expected = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x))))))))
    torch.testing.assert_close(deep, expected)


@pytest.mark.parametrize(("architecture", "channels"), [("unet_resnet18", 4),
                                                     ("unet_resnet50", 1)])
def test_resnet_unets_take_any_size_and_are_recognised_from_their_keys(architecture,
                                                                      channels):
    model = build_model(ModelConfig(architecture, num_classes=5, in_channels=channels))
    with torch.inference_mode():
        out = model(torch.randn(1, channels, 67, 45))
    assert out.shape == (1, 5, 67, 45) and torch.isfinite(out).all()
    config = detect_config(model.state_dict())
    assert (config.architecture, config.num_classes, config.in_channels) == (
        architecture, 5, channels)
    assert input_geometry(config)[:2] == (32, 32)


@pytest.mark.parametrize(("name", "architecture", "key", "channels"), [
    ("resnet18", "unet_resnet18", "conv1.weight", 1),
    ("resnet34", "unet_resnet34", "conv1.weight", 4),
    ("mobilenet_v2", "unet_mobilenet", "features.0.0.weight", 4)])
def test_other_channel_counts_get_the_averaged_rgb_kernel(weight_files, name, architecture,
                                                          key, channels):
    path, state = weight_files[name]
    net, _, note = _start(architecture, path, channels)
    first = net.state_dict()["encoder." + key]
    rgb = state[key]
    assert first.shape == (rgb.shape[0], channels, *rgb.shape[2:])
    expected = rgb.mean(dim=1) * 3 / channels
    for c in range(channels):
        torch.testing.assert_close(first[:, c], expected)
    assert f"repeated for {channels}, scaled by 3/{channels}" in note["encoder_first_conv"]


def test_wrapped_and_prefixed_state_dicts_are_accepted(weight_files, tmp_path):
    path, state = weight_files["resnet18"]
    for n, wrapped in enumerate(({"state_dict": state}, {"model": state},
                                 {f"module.{k}": v for k, v in state.items()})):
        torch.save(wrapped, tmp_path / f"w{n}.pth")
        net, _, _ = _start("unet_resnet18", tmp_path / f"w{n}.pth")
        assert torch.equal(net.state_dict()["encoder.layer4.1.bn2.running_var"],
                           state["layer4.1.bn2.running_var"])


@pytest.mark.parametrize(("name", "architecture", "words"), [
    ("resnet50", "unet_resnet18", "holds ResNet-50 weights but the encoder of "
                                  "'unet_resnet18' is a ResNet-18"),
    ("resnet18", "unet_mobilenet", "holds ResNet-18 weights but the encoder of "
                                   "'unet_mobilenet' is a MobileNetV2"),
    ("mobilenet_v2", "deeplabv3_resnet50", "holds MobileNetV2 weights but the encoder of "
                                           "'deeplabv3_resnet50' is a ResNet-50"),
    ("resnet18", "unet", "has no ImageNet encoder")])
def test_a_file_of_another_network_is_refused_in_one_sentence(weight_files, name,
                                                              architecture, words):
    with pytest.raises(InputError, match=re.escape(words)) as caught:
        _start(architecture, weight_files[name][0])
    assert str(caught.value).count(". ") == 0


def test_missing_and_unrecognised_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        _start("unet_resnet18", tmp_path / "absent.pth")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="not an ImageNet ResNet-18 state dict"):
        _start("unet_resnet18", tmp_path / "other.pth")


@pytest.fixture(scope="module")
def trained(weight_files, tmp_path_factory):
    """A ResNet-18 U-Net trained a few steps on a grey 64 x 64 image, saved."""
    rng = np.random.default_rng(0)
    image = rng.normal(100, 5, (64, 64, 1)).astype(np.float32)
    image[:, 32:] += 60
    labels = np.zeros((64, 64), np.uint8)
    labels[10:14, 4:28] = 1
    labels[40:44, 36:60] = 2
    path = weight_files["resnet18"][0]
    params = TrainParams(architecture="unet_resnet18", encoder_weights=str(path), **TINY)
    result = run_to_end(train([image], [labels], params))
    saved = save_model(tmp_path_factory.mktemp("trained") / "resnet_unet", result.model,
                       result.metadata)
    return image, result, saved


def test_a_trained_resnet_unet_saves_reloads_and_predicts(weight_files, trained):
    image, result, saved = trained
    meta = result.metadata
    assert meta["architecture"] == "unet_resnet18" and meta["steps"] == 2
    assert meta["encoder_weights"] == str(weight_files["resnet18"][0])
    assert meta["encoder"] == "ResNet-18 (torchvision layout)"
    assert '"encoder_weights_sha256"' in torch.load(saved, weights_only=True)["training"]
    loaded = load_checkpoint(saved)
    assert (loaded.config.architecture, loaded.config.in_channels) == ("unet_resnet18", 1)
    out = run_to_end(predict(image, PredictParams(), model=loaded))
    assert out.labels.shape == (64, 64) and set(np.unique(out.labels)) <= {1, 2}
    with torch.inference_mode():
        x = torch.randn(1, 1, 40, 50)
        torch.testing.assert_close(loaded.model(x), result.model.model(x))


def test_encoder_weights_are_ignored_when_starting_from_a_checkpoint(weight_files, trained):
    _, _, saved = trained
    path = weight_files["resnet18"][0]
    net, config, note = start_model(TrainParams(init=str(saved), encoder_weights=str(path)),
                                    1, 3, np.zeros(1), np.ones(1))
    assert config.architecture == "unet_resnet18" and note["encoder_weights"] is None
    assert note["encoder_weights_ignored"].startswith(f"{path}: training started from ")
    assert torch.equal(net.state_dict()["encoder.conv1.weight"],
                       load_checkpoint(saved).model.state_dict()["encoder.conv1.weight"])


def test_the_command_line_refuses_a_missing_encoder_file(tmp_path, capsys):
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", np.zeros((48, 48), np.uint8))
    labels = np.zeros((48, 48), np.uint8)
    labels[4:8, 4:20] = 1
    labels[30:34, 4:20] = 2
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    code = main(["train", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
                 "--architecture", "unet_resnet18", "--encoder-weights",
                 str(tmp_path / "absent.pth"), "-o", str(tmp_path / "m.pt"), "--quiet"])
    assert code == 2
    assert "The encoder weights file" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_the_training_form_offers_a_file_chooser():
    pytest.importorskip("magicgui")
    from magicgui import widgets

    from napari_unsupseg.widgets._form import ParamForm

    form = ParamForm(TrainParams)
    assert isinstance(form["encoder_weights"], widgets.FileEdit)
    assert form.params().encoder_weights == ""
    form.set_values({"encoder_weights": "/data/resnet18.pth"})
    assert form.params().encoder_weights == "/data/resnet18.pth"
