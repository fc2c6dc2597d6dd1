"""FCN-8s / 16s / 32s VGG-16 weight files in the layout of wkentaro/pytorch-fcn load and
predict what that project's forward predicts, with its Caffe preprocessing."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from _models import agreement, smooth_rgb
from torch import nn

from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.models import ModelConfig, build_model
from napari_unsupseg.core.models.checkpoints import describe, load_checkpoint
from napari_unsupseg.core.models.layouts import detect_config
from napari_unsupseg.core.predict import PredictParams, predict

MEAN_BGR = np.array([104.00698793, 116.66876762, 122.67891434], np.float32)


class ReferenceFCN8s(nn.Module):
    """An independent copy of torchfcn/models/fcn8s.py's FCN8s (wkentaro/pytorch-fcn):
    the same attribute names (hence state-dict keys), padding 100 on conv1_1, ceil-mode
    pools, crops at 5, 9 and 31. Written out layer by layer, as there."""

    def __init__(self, n_class: int = 21) -> None:
        super().__init__()
        self.conv1_1 = nn.Conv2d(3, 64, 3, padding=100)
        self.conv1_2 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv2_1 = nn.Conv2d(64, 128, 3, padding=1)
        self.conv2_2 = nn.Conv2d(128, 128, 3, padding=1)
        self.conv3_1 = nn.Conv2d(128, 256, 3, padding=1)
        self.conv3_2 = nn.Conv2d(256, 256, 3, padding=1)
        self.conv3_3 = nn.Conv2d(256, 256, 3, padding=1)
        self.conv4_1 = nn.Conv2d(256, 512, 3, padding=1)
        self.conv4_2 = nn.Conv2d(512, 512, 3, padding=1)
        self.conv4_3 = nn.Conv2d(512, 512, 3, padding=1)
        self.conv5_1 = nn.Conv2d(512, 512, 3, padding=1)
        self.conv5_2 = nn.Conv2d(512, 512, 3, padding=1)
        self.conv5_3 = nn.Conv2d(512, 512, 3, padding=1)
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.score_fr = nn.Conv2d(4096, n_class, 1)
        self.score_pool3 = nn.Conv2d(256, n_class, 1)
        self.score_pool4 = nn.Conv2d(512, n_class, 1)
        self.upscore2 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n_class, n_class, 16, stride=8, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def pool(h):
            return F.max_pool2d(h, 2, stride=2, ceil_mode=True)

        h = F.relu(self.conv1_1(x))
        h = pool(F.relu(self.conv1_2(h)))
        h = F.relu(self.conv2_1(h))
        h = pool(F.relu(self.conv2_2(h)))
        h = F.relu(self.conv3_1(h))
        h = F.relu(self.conv3_2(h))
        pool3 = h = pool(F.relu(self.conv3_3(h)))
        h = F.relu(self.conv4_1(h))
        h = F.relu(self.conv4_2(h))
        pool4 = h = pool(F.relu(self.conv4_3(h)))
        h = F.relu(self.conv5_1(h))
        h = F.relu(self.conv5_2(h))
        h = pool(F.relu(self.conv5_3(h)))
        h = F.relu(self.fc6(h))  # drop6, drop7: identity in eval mode
        h = F.relu(self.fc7(h))
        upscore2 = self.upscore2(self.score_fr(h))
        h = self.score_pool4(pool4)
        h = h[:, :, 5:5 + upscore2.size()[2], 5:5 + upscore2.size()[3]]
        upscore_pool4 = self.upscore_pool4(upscore2 + h)
        h = self.score_pool3(pool3)
        h = h[:, :, 9:9 + upscore_pool4.size()[2], 9:9 + upscore_pool4.size()[3]]
        h = self.upscore8(upscore_pool4 + h)
        return h[:, :, 31:31 + x.size()[2], 31:31 + x.size()[3]].contiguous()


def random_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """He-scaled random convolutions and biases (no BatchNorm in VGG); random upscores."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("bias"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            else:
                fan_in = tensor[0].numel() if "upscore" not in name else tensor.shape[0]
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * math.sqrt(2 / fan_in))
    return model.eval()


def test_fcn8s_from_pytorch_fcn_predicts_as_its_forward(tmp_path):
    reference = random_weights(ReferenceFCN8s(n_class=5))
    path = tmp_path / "fcn8s_from_caffe.pth"
    torch.save(reference.state_dict(), path)

    loaded = load_checkpoint(path)
    assert loaded.config.architecture == "fcn8s_vgg16" and loaded.format == "pytorch-fcn"
    assert loaded.config.bgr and "Caffe" in describe(loaded)
    image = smooth_rgb((64, 64), seed=2)
    # that project's preprocessing: RGB -> BGR, float 0..255 minus the BGR mean
    bgr = image[..., ::-1].astype(np.float32) - MEAN_BGR
    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)[None]))
    with torch.inference_mode():
        expected = reference(x)[0]
        torch.testing.assert_close(loaded.model(x)[0], expected, rtol=1e-4, atol=1e-3)
    result = run_to_end(predict(image, PredictParams(tile_size=128), model=loaded))
    truth = expected.argmax(0).numpy() + result.metadata["label_offset"]
    assert len(np.unique(truth)) >= 2
    assert agreement(result.labels, truth) >= 0.995


def test_fcn32s_and_16s_layouts_are_recognised():
    for variant, upscores in ((32, {"upscore.weight": (3, 3, 64, 64)}),
                              (16, {"upscore2.weight": (3, 3, 4, 4),
                                    "upscore16.weight": (3, 3, 32, 32)})):
        with torch.device("meta"):
            state = build_model(ModelConfig(f"fcn{variant}s_vgg16", 3)).state_dict()
        for key, shape in upscores.items():
            assert tuple(state[key].shape) == shape
        assert ("score_pool4.weight" in state) == (variant == 16)
        assert "score_pool3.weight" not in state
        assert tuple(state["fc6.weight"].shape) == (4096, 512, 7, 7)
        assert tuple(state["conv1_1.weight"].shape) == (64, 3, 3, 3)
        assert detect_config(state).architecture == f"fcn{variant}s_vgg16"
    # any input size gives logits of that size (100 px padding, fixed crops)
    net = build_model(ModelConfig("fcn16s_vgg16", 3))
    with torch.inference_mode():
        assert net(torch.zeros(1, 3, 37, 50)).shape == (1, 3, 37, 50)
