"""The torch side of the backprop segmenter: networks, the vote, one training step.

Imported lazily by :mod:`napari_unsupseg.core.backprop` from inside the engine,
so that importing the parameters never imports torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The target of a pixel left out of the loss.
IGNORED = -100


def kanezaki_net(in_channels: int, n_features: int = 100, n_conv: int = 2) -> nn.Sequential:
    """Kanezaki (ICASSP 2018): ``n_conv`` 3x3 conv-ReLU-BN blocks, then 1x1 conv + BN."""
    layers: list[nn.Module] = []
    channels = in_channels
    for _ in range(n_conv):
        layers += [
            nn.Conv2d(channels, n_features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(n_features),
        ]
        channels = n_features
    # The final BN spreads the argmax over many labels at the start.
    layers += [nn.Conv2d(n_features, n_features, 1), nn.BatchNorm2d(n_features)]
    return nn.Sequential(*layers)


def fast_net(in_channels: int, n_features: int = 32) -> nn.Sequential:
    """The fast variant: 3x3 C->64, 1x1 64->F, 3x3 F->64, 1x1 64->F (F = 32).

    Each conv is followed by BN and ReLU, the last by BN only.
    """
    widths = [(in_channels, 64, 3), (64, n_features, 1), (n_features, 64, 3), (64, n_features, 1)]
    layers: list[nn.Module] = []
    for index, (c_in, c_out, size) in enumerate(widths):
        layers += [nn.Conv2d(c_in, c_out, size, padding=size // 2), nn.BatchNorm2d(c_out)]
        if index < len(widths) - 1:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def build_network(name: str, in_channels: int, n_features: int, n_conv: int) -> nn.Sequential:
    if name == "kanezaki":
        return kanezaki_net(in_channels, n_features, n_conv)
    return fast_net(in_channels, n_features)


def vote_torch(
    superpixels: torch.Tensor,
    labels: torch.Tensor,
    n_superpixels: int,
    n_classes: int,
    hist: torch.Tensor | None = None,
) -> torch.Tensor:
    """Majority label inside each superpixel, painted back on every pixel (flat int64 tensors).

    One 2-D histogram (superpixel x class) filled by a scatter-add, argmax per row:
    torch's argmax returns the first maximum, so the lowest class wins a tie, as
    ``np.argmax`` over per-class counts does in the reference loop. A scatter-add
    rather than ``bincount``, which on CUDA reads the input's maximum back to the
    host (a device sync every iteration). ``hist``: an optional reusable buffer of
    ``n_superpixels * n_classes`` int64 counts. Integer counts make it exact and
    deterministic on every device.
    """
    size = n_superpixels * n_classes
    if hist is None:
        hist = torch.zeros(size, dtype=torch.int64, device=labels.device)
    else:
        hist.zero_()
    index = superpixels * n_classes + labels
    hist.scatter_add_(0, index, torch.ones_like(index))
    winners = hist.view(n_superpixels, n_classes).argmax(dim=1)
    return winners[superpixels]


def count_labels(
    labels: torch.Tensor, n_classes: int, ignore: torch.Tensor | None = None
) -> torch.Tensor:
    """How many of the ``n_classes`` labels occur outside ``ignore`` (a device scalar;
    no host sync: ignored pixels count in a spare slot rather than being selected out)."""
    present = torch.zeros(n_classes + 1, dtype=torch.int64, device=labels.device)
    if ignore is not None:
        labels = labels.masked_fill(ignore, n_classes)
    present.index_fill_(0, labels.reshape(-1), 1)
    return present[:n_classes].sum()


class Trainer:
    """Trains one network on one image or a batch of planes, one step per call.

    Everything in :meth:`step` stays on the model's device; the caller decides
    when to bring the small statistics tensor to the host.
    """

    def __init__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        superpixels: torch.Tensor | None,
        n_superpixels: int,
        *,
        lr: float,
        momentum: float,
        w_sim: float,
        w_con: float,
        scribbles: torch.Tensor | None = None,
        w_scribble: float = 0.5,
        channels_last: bool = False,
        ignore: torch.Tensor | None = None,
    ) -> None:
        self.model = model
        self.images = images
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.images = self.images.contiguous(memory_format=torch.channels_last)
        self.superpixels = superpixels
        self.n_superpixels = n_superpixels
        self.w_sim = w_sim
        self.w_con = w_con
        self.w_scribble = w_scribble
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        n, _, h, w = images.shape
        self.shape = (n, h, w)
        self.prev_target: torch.Tensor | None = None
        self._hist: torch.Tensor | None = None
        # (n, h, w) bool: pixels without data (nodata, outside the area of interest) take
        # no part in the loss or in the label count; they still pass through the network.
        self.ignore = ignore
        self.scribbles = scribbles  # (n, h, w) int64: class index, -1 unlabelled
        if scribbles is not None:
            self.labelled = scribbles >= 0
            if ignore is not None:
                self.labelled = self.labelled & ~ignore
            unlabelled = ~self.labelled if ignore is None else ~self.labelled & ~ignore
            self.unlabelled = unlabelled
            self.n_labelled = self.labelled.sum().clamp(min=1)
            self.n_unlabelled = unlabelled.sum().clamp(min=1)

    @torch.enable_grad()  # training needs gradients whatever the caller's grad mode
    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One update; returns (refined target (n, h, w), stats [loss, n_changed, n_labels])."""
        self.model.train()  # batch statistics of this image throughout, as in the reference
        self.optimizer.zero_grad(set_to_none=True)
        response = self.model(self.images)
        n_classes = response.shape[1]
        with torch.no_grad():
            labels = response.argmax(dim=1).reshape(-1)
            if self.superpixels is not None:
                if self._hist is None:
                    self._hist = torch.zeros(
                        self.n_superpixels * n_classes, dtype=torch.int64, device=labels.device
                    )
                target = vote_torch(
                    self.superpixels, labels, self.n_superpixels, n_classes, self._hist
                )
            else:
                target = labels
            target = target.view(self.shape)
        loss = self._loss(response, target)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            if self.prev_target is None:
                changed = torch.tensor(target.numel(), device=target.device)
            else:
                changed = (target != self.prev_target).sum()
            n_labels = count_labels(target, n_classes, self.ignore)
            stats = torch.stack([loss.detach().float(), changed.float(), n_labels.float()])
        self.prev_target = target
        return target, stats

    def _loss(self, response: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.scribbles is None:
            if self.ignore is not None:  # cross_entropy leaves out (and averages without)
                target = target.masked_fill(self.ignore, IGNORED)
            loss = self.w_sim * F.cross_entropy(response, target, ignore_index=IGNORED)
        else:
            # One log-softmax for both terms: scribbled pixels are pulled to their class,
            # the others to the vote; each term is a mean over its own pixels (TIP 2020).
            combined = torch.where(self.labelled, self.scribbles, target)
            per_pixel = F.cross_entropy(response, combined, reduction="none")
            sim = (per_pixel * self.unlabelled).sum() / self.n_unlabelled
            scr = (per_pixel * self.labelled).sum() / self.n_labelled
            loss = self.w_sim * sim + self.w_scribble * scr
        if self.w_con > 0:
            dy = (response[:, :, 1:, :] - response[:, :, :-1, :]).abs().mean()
            dx = (response[:, :, :, 1:] - response[:, :, :, :-1]).abs().mean()
            loss = loss + self.w_con * (dy + dx)
        return loss

    @torch.inference_mode()
    def label(
        self, images: torch.Tensor, superpixels: torch.Tensor | None, n_superpixels: int
    ) -> torch.Tensor:
        """The trained network's labels of other (larger) planes ``(n, c, h, w)``, voted by
        their superpixels: the argmax of one forward pass with the batch statistics of those
        planes, as in training."""
        self.model.train()
        response = self.model(images)
        labels = response.argmax(dim=1)
        if superpixels is None:
            return labels
        voted = vote_torch(superpixels, labels.reshape(-1), n_superpixels, response.shape[1])
        return voted.view(labels.shape)

    def response_argmax(self) -> torch.Tensor:
        """The argmax of one more forward pass (what the Kanezaki scripts return)."""
        return self.label(self.images, None, 0)
