"""Networks for part discovery: the part-segmentation network and feature extractors.

- :class:`SmallPartNet`: our CPU-friendly default, a light DeepLab-style network
  (a strided stem to 1/4 resolution, residual blocks with growing dilation for a
  receptive field wider than the object, a 1x1 head of ``K + 1`` channels,
  bilinear upsampling back to the input size). Trained from scratch.
- :class:`VGG19Features` and :class:`ResNetFeatures`: pretrained feature stacks
  in plain torch with torchvision's parameter names, so that a torchvision
  ``state_dict`` file loads without torchvision; see :func:`load_feature_extractor`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..base.errors import InputError


def _norm(channels: int) -> nn.Module:
    # Group norm: per image, so results do not depend on the batch (a batch of a few
    # images makes batch norm unreliable) and train and eval modes agree.
    return nn.GroupNorm(4, channels)


def _conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        _norm(cout),
        nn.ReLU(inplace=True),
    )


class _DilatedBlock(nn.Module):
    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = _norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = _norm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class SmallPartNet(nn.Module):
    """A light dilated CNN: ``(B, C, H, W)`` in [0, 1] -> ``(B, K + 1, H, W)`` logits.

    Two stride-2 3x3 convolutions to 1/4 resolution, residual blocks with
    dilations 1, 2, 4 (receptive field about 70 pixels of the working image), a
    3x3 + 1x1 head, bilinear upsampling; group normalisation throughout.
    """

    def __init__(self, in_channels: int, n_outputs: int, width: int = 24,
                 dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _conv_bn(in_channels, width, stride=2),
            _conv_bn(width, 2 * width, stride=2),
        )
        self.blocks = nn.Sequential(*[_DilatedBlock(2 * width, d) for d in dilations])
        self.head = nn.Sequential(
            _conv_bn(2 * width, 2 * width), nn.Conv2d(2 * width, n_outputs, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        y = self.head(self.blocks(self.stem((x - 0.5) / 0.25)))
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


class _Scaled(nn.Module):
    """Feeds a network ``(x - 0.5) / 0.25`` for inputs in [0, 1]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 0.5) / 0.25)


def build_part_net(backbone: str, in_channels: int, n_outputs: int) -> nn.Module:
    """The part network: ``small`` (ours), or a DeepLab from :mod:`..models.deeplab`
    (``deeplabv3plus_mobilenet``, ``deeplabv3plus_resnet50``: torchvision-layout
    backbones, output stride 8, randomly initialised), all ending in ``n_outputs``
    channels at the input's size."""
    if backbone == "small":
        return SmallPartNet(in_channels, n_outputs)
    if backbone.startswith("deeplab"):
        try:
            from ..models.deeplab import deeplab
        except ImportError as error:  # pragma: no cover - the models package is part of us
            raise InputError(f"The '{backbone}' network is not available ({error}).") from error
        return _Scaled(deeplab(backbone, num_classes=n_outputs, output_stride=8,
                               in_channels=in_channels))
    raise InputError(f"Unknown part-discovery backbone '{backbone}'; use 'small'.")


# ---------------------------------------------------------------------------
# Pretrained feature extractors (torchvision parameter names, no torchvision).

#: VGG-19's ``features`` stack: output channels of each conv, "M" = max pooling.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
#: Index of relu5_2 in torchvision's ``vgg19().features`` (the paper's feature layer).
VGG19_RELU5_2 = 31
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """torchvision's ``vgg19().features`` up to relu5_2, with the same ``features.N`` names."""

    def __init__(self, last: int = VGG19_RELU5_2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(item)
        self.features = nn.Sequential(*layers[: last + 1])
        self.stride = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _downsample(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.downsample = _downsample(cin, width * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNetFeatures(nn.Module):
    """torchvision's ResNet (18/34/50/101/152 layouts) up to ``layer3`` (stride 16)."""

    def __init__(self, blocks: tuple[int, int, int], bottleneck: bool) -> None:
        super().__init__()
        block = _Bottleneck if bottleneck else _Basic
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for index, (count, width) in enumerate(zip(blocks, (64, 128, 256), strict=True)):
            layers = []
            for j in range(count):
                stride = 2 if (j == 0 and index > 0) else 1
                layers.append(block(cin, width, stride))
                cin = width * block.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
        self.stride = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


def _unwrap_state(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: plain, or under a usual wrapper key."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state", "model", "net"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(
            f"{path.name} holds no state dict (a mapping of parameter names to tensors)."
        )
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return state


def _load_matching(
    module: nn.Module, state: dict[str, torch.Tensor], path: Path, kind: str
) -> None:
    """Copy the tensors ``module`` needs from ``state``; plain-words error on any mismatch."""
    wanted = module.state_dict()
    missing = [k for k in wanted if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
             for k, v in wanted.items() if k in state and state[k].shape != v.shape]
    if missing or wrong:
        details = []
        if missing:
            details.append(f"missing {len(missing)} key(s), e.g. {', '.join(missing[:3])}")
        if wrong:
            details.append(f"{len(wrong)} of the wrong shape, e.g. {'; '.join(wrong[:2])}")
        raise InputError(
            f"{path.name} does not fit a torchvision {kind}: {' and '.join(details)}."
        )
    module.load_state_dict({k: state[k] for k in wanted}, strict=True)


def _resnet_layout(state: dict[str, torch.Tensor]) -> tuple[tuple[int, int, int], bool, str]:
    bottleneck = "layer1.0.conv3.weight" in state
    counts = []
    for layer in (1, 2, 3, 4):
        prefix = f"layer{layer}."
        ids = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
        counts.append(max(ids) + 1 if ids else 0)
    names = {(2, 2, 2, 2, False): "ResNet-18", (3, 4, 6, 3, False): "ResNet-34",
             (3, 4, 6, 3, True): "ResNet-50", (3, 4, 23, 3, True): "ResNet-101",
             (3, 8, 36, 3, True): "ResNet-152"}
    name = names.get((*counts, bottleneck), f"ResNet ({'bottleneck' if bottleneck else 'basic'} "
                                             f"blocks {counts})")
    return (counts[0], counts[1], counts[2]), bottleneck, name


def load_feature_extractor(path: str | Path) -> tuple[nn.Module, str]:
    """A frozen VGG-19 (to relu5_2) or ResNet (to layer3) from a torchvision state dict file.

    The file is read with ``torch.load(weights_only=True)`` (no code runs). The
    architecture is recognised from the key names (``features.N.*`` = VGG-19,
    ``conv1`` + ``layerN`` = ResNet). Returns the module in eval mode and a
    description for the metadata. Every failure is an :class:`InputError`.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"The feature weights file {path} does not exist.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "unreadable"
        raise InputError(
            f"{path.name} could not be read as PyTorch weights ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})."
        ) from error
    state = _unwrap_state(obj, path)
    if "features.0.weight" in state:
        module: nn.Module = VGG19Features()
        _load_matching(module, state, path, "VGG-19 (features.N keys)")
        name = "VGG-19 relu5_2"
    elif "conv1.weight" in state and "layer1.0.conv1.weight" in state:
        blocks, bottleneck, arch = _resnet_layout(state)
        if min(blocks) == 0:
            raise InputError(f"{path.name} looks like a ResNet but lacks layer1..layer3.")
        module = ResNetFeatures(blocks, bottleneck)
        _load_matching(module, state, path, arch)
        name = f"{arch} layer3"
    else:
        sample = ", ".join(list(state)[:3])
        raise InputError(
            f"{path.name} is neither a torchvision VGG-19 (features.0.weight, ...) nor a "
            f"torchvision ResNet (conv1.weight, layer1.0..., ...); its first keys are {sample}."
        )
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module, f"{name} from {path.name}"
