"""torchvision segmentation weight files load into this package's plain-torch models and
predict what torchvision's own forward predicts (random weights, random BatchNorm
statistics). torchvision is only imported here, never by the package."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _models import agreement, calibrate, normalised, randomise, smooth_rgb, torchvision_module

from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.models import build_model
from napari_unsupseg.core.models.checkpoints import describe, load_checkpoint
from napari_unsupseg.core.models.layouts import detect_config
from napari_unsupseg.core.models.presets import IMAGENET_MEAN, IMAGENET_STD
from napari_unsupseg.core.predict import PredictParams, predict


@pytest.fixture(scope="module")
def segmentation():
    return torchvision_module("models.segmentation")


CASES = [("fcn_resnet50", True), ("deeplabv3_resnet50", True),
         ("deeplabv3_mobilenet_v3_large", True), ("lraspp_mobilenet_v3_large", False)]


@pytest.mark.parametrize(("name", "aux"), CASES)
def test_torchvision_weights_predict_as_torchvision(segmentation, tmp_path, name, aux):
    kwargs = {"aux_loss": True} if aux else {}
    reference = getattr(segmentation, name)(weights=None, weights_backbone=None,
                                            num_classes=6, **kwargs)
    image = smooth_rgb((57, 70))
    x = normalised(image, IMAGENET_MEAN, IMAGENET_STD)
    calibrate(randomise(reference, seed=3), torch.cat([x, x.flip(-1)]))
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)

    loaded = load_checkpoint(path)
    assert loaded.config.architecture == f"torchvision_{name}"
    assert loaded.format == "torchvision" and loaded.config.num_classes == 6
    assert ("auxiliary head" in describe(loaded)) == aux
    with torch.inference_mode():
        expected = reference(x)["out"][0]
        ours = loaded.model(x)[0]
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    result = run_to_end(predict(image, PredictParams(tile_size=256), model=loaded))
    truth = expected.argmax(0).numpy() + result.metadata["label_offset"]
    assert len(np.unique(truth)) >= 2  # the check is not between two constant images
    assert agreement(result.labels, truth) >= 0.995


@pytest.mark.parametrize("name", ["fcn_resnet101", "deeplabv3_resnet101"])
def test_resnet101_layouts_are_recognised_key_for_key(segmentation, name):
    with torch.device("meta"):
        reference = getattr(segmentation, name)(weights=None, weights_backbone=None,
                                                num_classes=4, aux_loss=True)
    state = reference.state_dict()
    config = detect_config(state)
    assert (config.architecture, config.num_classes) == (f"torchvision_{name}", 4)
    with torch.device("meta"):
        ours = build_model(config).state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items() if not k.startswith("aux_")}
    assert {k: tuple(v.shape) for k, v in ours.items()} == expected
