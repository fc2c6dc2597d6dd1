"""Network layouts: key names and counts of the DeepLabV3Plus-Pytorch checkpoints, shapes
for odd sizes and channel counts, strides of the backbones."""

from __future__ import annotations

import pytest
import torch

from napari_unsupseg.core.models import ARCHITECTURES, ModelConfig, build_model
from napari_unsupseg.core.models.deeplab import deeplab
from napari_unsupseg.core.models.mobilenetv2 import mobilenet_v2
from napari_unsupseg.core.models.resnet import resnet18, resnet50, resnet101
from napari_unsupseg.core.models.unet import MobileNetUNet, UNet


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Published figures for the released 21-class models (see NOTES-algorithms.md).
@pytest.mark.parametrize(
    ("arch", "millions", "keys"),
    [
        ("deeplabv3plus_mobilenet", 5.23, 356),
        ("deeplabv3_mobilenet", 5.11, 350),
        ("deeplabv3plus_resnet50", 39.76, 368),
        ("deeplabv3_resnet101", 58.63, 668),
    ],
)
def test_deeplab_counts_match_released_checkpoints(arch, millions, keys):
    with torch.device("meta"):  # no memory, no init cost: only shapes and names
        model = deeplab(arch, num_classes=21)
    assert round(n_params(model) / 1e6, 2) == millions
    assert len(model.state_dict()) == keys


def test_deeplab_key_names_follow_vainf_layout():
    with torch.device("meta"):
        plus = deeplab("deeplabv3plus_mobilenet").state_dict()
        v3 = deeplab("deeplabv3_resnet50").state_dict()
        sep = deeplab("deeplabv3plus_mobilenet", separable=True).state_dict()
    assert all(k.startswith(("backbone.", "classifier.")) for k in plus)
    for key in ("backbone.low_level_features.0.0.weight",
                "backbone.low_level_features.1.conv.0.0.weight",
                "backbone.low_level_features.1.conv.1.weight",
                "backbone.low_level_features.3.conv.3.running_var",
                "backbone.high_level_features.4.conv.0.0.weight",
                "backbone.high_level_features.17.conv.2.weight",
                "classifier.project.0.weight", "classifier.project.1.running_mean",
                "classifier.aspp.convs.0.0.weight", "classifier.aspp.convs.3.1.weight",
                "classifier.aspp.convs.4.1.weight", "classifier.aspp.convs.4.2.bias",
                "classifier.aspp.project.0.weight", "classifier.classifier.0.weight",
                "classifier.classifier.3.bias"):
        assert key in plus, key
    assert not any(k.startswith("backbone.high_level_features.18") for k in plus)
    assert plus["classifier.project.0.weight"].shape == (48, 24, 1, 1)
    assert plus["classifier.classifier.3.weight"].shape == (21, 256, 1, 1)
    for key in ("backbone.conv1.weight", "backbone.bn1.running_mean",
                "backbone.layer1.0.downsample.0.weight", "backbone.layer1.0.downsample.1.weight",
                "backbone.layer4.2.conv3.weight", "classifier.classifier.0.convs.4.1.weight",
                "classifier.classifier.0.project.0.weight", "classifier.classifier.1.weight",
                "classifier.classifier.2.running_var", "classifier.classifier.4.bias"):
        assert key in v3, key
    assert "classifier.classifier.3.weight" not in v3  # index 3 is the ReLU
    assert "classifier.aspp.convs.1.0.body.0.weight" in sep
    assert sep["classifier.aspp.convs.1.0.body.0.weight"].shape == (320, 1, 3, 3)
    assert sep["classifier.classifier.0.body.1.weight"].shape == (256, 304, 1, 1)
    assert "classifier.aspp.convs.1.0.weight" not in sep
    assert not any(".body." in k and k.endswith("bias") for k in sep)


def test_resnet101_layout_and_dilation():
    with torch.device("meta"):
        net = resnet101(output_stride=8)
    keys = net.state_dict()
    assert "layer3.22.conv3.weight" in keys and "layer3.23.conv1.weight" not in keys
    assert "fc.weight" not in keys
    # stride 8: dilation 2 in layer3 (its first block keeps 1), 4 in layer4 (first block 2)
    assert net.layer3[0].conv2.dilation == (1, 1) and net.layer3[1].conv2.dilation == (2, 2)
    assert net.layer4[0].conv2.dilation == (2, 2) and net.layer4[1].conv2.dilation == (4, 4)
    assert net.layer3[0].conv2.stride == (1, 1) and net.layer2[0].conv2.stride == (2, 2)


@pytest.mark.parametrize(("stride", "expected"), [(32, 2), (16, 4), (8, 8)])
def test_resnet_output_stride(stride, expected):
    net = resnet18(in_channels=4, output_stride=stride).eval()
    with torch.inference_mode():
        feats = net.forward_features(torch.randn(1, 4, 64, 64))
    assert feats["layer1"].shape[-2:] == (16, 16)
    assert feats["layer4"].shape[-2:] == (expected, expected)


def test_resnet50_features_channels():
    net = resnet50(output_stride=16).eval()
    with torch.inference_mode():
        feats = net.forward_features(torch.randn(1, 3, 64, 64))
    assert feats["layer1"].shape == (1, 256, 16, 16)
    assert feats["layer4"].shape == (1, 2048, 4, 4)


def test_mobilenetv2_layouts_and_padding():
    vainf = mobilenet_v2(output_stride=16).eval()
    tv = mobilenet_v2(padding="torchvision").eval()
    keys = vainf.state_dict()
    assert "features.1.conv.0.0.weight" in keys and "features.1.conv.2.weight" in keys
    assert "features.1.conv.3.weight" not in keys  # block 1 has no expansion conv
    assert "features.2.conv.3.weight" in keys and "features.18.0.weight" in keys
    assert keys.keys() == tv.state_dict().keys()
    assert vainf.features[0][0].padding == (0, 0)  # VainF: unpadded stem
    with torch.inference_mode():
        x = torch.randn(1, 3, 97, 64)
        stem = vainf.features[0](x)
        assert stem.shape[-2:] == ((97 - 3) // 2 + 1, (64 - 3) // 2 + 1)
        feats = vainf.forward_features(torch.randn(1, 3, 64, 64), all_blocks=True)
        assert feats["low_level"].shape == (1, 24, 16, 16)
        assert feats["out"].shape == (1, 320, 4, 4)  # stride 16 (dilated after block 13)
        assert feats["17"] is feats["out"]
        assert tv(torch.randn(1, 3, 64, 64)).shape == (1, 1280, 2, 2)


SHAPE_CASES = [(arch, channels) for arch in ARCHITECTURES
               if "resnet" not in arch and "vgg16" not in arch for channels in (1, 4)] + [
    ("deeplabv3plus_resnet50", 4), ("deeplabv3_resnet50", 1), ("fcn32s_vgg16", 4),
    ("torchvision_fcn_resnet50", 1)]


@pytest.mark.parametrize(("arch", "channels"), SHAPE_CASES)
def test_every_architecture_any_size_any_channels(arch, channels):
    config = ModelConfig(arch, num_classes=5, in_channels=channels, depth=3, base_channels=4)
    model = build_model(config)
    assert not model.training
    x = torch.randn(1, channels, 67, 45)
    with torch.inference_mode():
        out = model(x)
    assert out.shape == (1, 5, 67, 45)
    assert torch.isfinite(out).all()


def test_output_stride_8_uses_wider_rates():
    model = deeplab("deeplabv3plus_mobilenet", output_stride=8)
    rates = [model.classifier.aspp.convs[i][0].dilation[0] for i in (1, 2, 3)]
    assert rates == [12, 24, 36]
    assert [deeplab("deeplabv3_mobilenet").classifier.classifier[0].convs[i][0].dilation[0]
            for i in (1, 2, 3)] == [6, 12, 18]
    with pytest.raises(ValueError):
        deeplab("deeplabv3plus_mobilenet", output_stride=32)


def test_unet_layout_and_skips():
    net = UNet(in_channels=2, num_classes=3, depth=3, base_channels=8)
    keys = net.state_dict()
    assert keys["encoder.0.block.0.weight"].shape == (8, 2, 3, 3)
    assert keys["encoder.3.block.0.weight"].shape == (64, 32, 3, 3)
    assert keys["up.0.weight"].shape == (64, 32, 2, 2)
    assert keys["head.weight"].shape == (3, 8, 1, 1)
    assert net.size_multiple == 8


def test_mobilenet_unet_is_the_tensorflow_tutorial_model():
    net = MobileNetUNet(num_classes=3).eval()
    with torch.inference_mode():
        skips = net.encode(torch.randn(1, 3, 128, 128))
    assert [tuple(s.shape[1:]) for s in skips] == [
        (96, 64, 64), (144, 32, 32), (192, 16, 16), (576, 8, 8), (320, 4, 4)]
    assert [m[0].out_channels for m in net.decoder] == [512, 256, 128, 64]
    assert net.head.out_channels == 3 and net.head.stride == (2, 2)
    # Keras counts BN moving statistics as parameters and has no BN after block_16_project:
    stats = sum(b.numel() for n, b in net.named_buffers() if "running" in n)
    unused_bn = 4 * 320
    assert n_params(net) + stats - unused_bn == 6_504_227
