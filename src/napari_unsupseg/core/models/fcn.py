"""FCN-32s / 16s / 8s on VGG-16 (Long et al. 2015) in the layout of wkentaro/pytorch-fcn.

That project's ``.pth`` files (ports of the original Caffe weights, e.g.
``fcn8s_from_caffe.pth``) load unchanged: flat keys ``conv1_1`` .. ``conv5_3``, ``fc6``
(7x7 conv to 4096), ``fc7``, ``score_fr``, ``score_pool4`` / ``score_pool3`` (16s / 8s)
and the transposed convolutions ``upscore`` (32s), ``upscore2`` + ``upscore16`` (16s),
``upscore2`` + ``upscore_pool4`` + ``upscore8`` (8s), without bias.

The Caffe geometry is kept exactly: ``conv1_1`` pads by 100 pixels, pools round up
(``ceil_mode``), and the score maps are cropped at the fixed offsets of the original
(5 and 9 for the skips; 19, 27 or 31 for the final crop), so any input size gives logits
of that size. Inputs are BGR, 0..255 minus the BGR mean (see :data:`CAFFE_MEAN_BGR`);
:func:`caffe_normalisation` gives it as the mean and std of a :class:`~.presets.ModelConfig`
(with ``bgr=True``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FCNVGG16", "CAFFE_MEAN_BGR", "caffe_normalisation"]

CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
# (transposed conv name, kernel, stride) per variant, and the final crop offset
_UPSCORES = {32: ((("upscore", 64, 32),), 19),
             16: ((("upscore2", 4, 2), ("upscore16", 32, 16)), 27),
             8: ((("upscore2", 4, 2), ("upscore_pool4", 4, 2), ("upscore8", 16, 8)), 31)}
_SKIPS = (("score_pool4", 512, 5), ("score_pool3", 256, 9))


def caffe_normalisation(channels: int = 3) -> tuple[list[float], list[float]]:
    """(mean, std) that turn [0, 1] BGR intensities into Caffe's 0..255 minus the mean."""
    mean = [m / 255.0 for m in CAFFE_MEAN_BGR][:channels]
    mean += [sum(CAFFE_MEAN_BGR) / 765.0] * (channels - len(mean))
    return mean, [1.0 / 255.0] * channels


class FCNVGG16(nn.Module):
    """FCN-``variant``s (32, 16 or 8): ``forward`` returns logits at the input size."""

    def __init__(self, variant: int = 8, num_classes: int = 21, in_channels: int = 3) -> None:
        super().__init__()
        if variant not in _UPSCORES:
            raise ValueError(f"FCN variant must be 32, 16 or 8, not {variant}")
        cin = in_channels
        for stage, (channels, convs) in enumerate(_STAGES, start=1):
            for index in range(1, convs + 1):
                pad = 100 if (stage, index) == (1, 1) else 1
                setattr(self, f"conv{stage}_{index}", nn.Conv2d(cin, channels, 3, padding=pad))
                cin = channels
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        ups, self.crop = _UPSCORES[variant]
        if variant <= 16:
            self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        if variant == 8:
            self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        for name, kernel, stride in ups:
            setattr(self, name, nn.ConvTranspose2d(num_classes, num_classes, kernel, stride,
                                                   bias=False))
        self.upscores = [name for name, _, _ in ups]
        self.variant = variant
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = torch.relu
        h = x
        pools = {}
        for stage, (_, convs) in enumerate(_STAGES, start=1):
            for index in range(1, convs + 1):
                h = relu(getattr(self, f"conv{stage}_{index}")(h))
            h = self.pool(h)
            pools[stage] = h
        h = self.score_fr(relu(self.fc7(relu(self.fc6(h)))))  # dropout: identity in eval
        # Each upsampling but the last adds a cropped skip score (pool4, then pool3).
        for (name, _, offset), up in zip(_SKIPS, self.upscores[:-1], strict=False):
            h = getattr(self, up)(h)
            skip = getattr(self, name)(pools[4 if name == "score_pool4" else 3])
            h = h + skip[:, :, offset:offset + h.shape[2], offset:offset + h.shape[3]]
        h = getattr(self, self.upscores[-1])(h)
        c = self.crop
        return h[:, :, c:c + x.shape[2], c:c + x.shape[3]].contiguous()
