"""Training the part-segmentation network over a stack and reading the parts out."""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..base.device import describe, resolve_device, seed_everything
from ..base.engine import Progress, Result, RunControl, Stopwatch, no_control, provenance
from ..base.errors import InputError
from ..base.images import check_image, normalize
from ..base.params import validate
from . import losses as L
from .features import (
    TEXTURE_SCALES,
    axis_orientation,
    network_features,
    scale_features,
    texture_codes,
    texture_features,
)
from .nets import build_part_net, load_feature_extractor
from .params import FALLBACK_FEATURES, PartsParams
from .readout import enlarge_nearest, label_centres, part_spread, read_labels, region_centres
from .start import colour_regions, initial_bases, nearest_basis_labels, saliency_maps
from .start import resize as _resize
from .warps import colour_jitter, random_grid, warp

#: Resolution of the built-in texture features, as a share of the working size: coarser
#: than the network's output, as the paper's stride-16 network features are.
FEATURE_SCALE = 0.5
#: The region-consistency weight grows linearly from 0 over this share of the steps: the
#: region means of an untrained network are noise, and pulling towards them early locks
#: the parts in before the semantic and equivariance losses have shaped them.
REGION_RAMP = 0.5
#: A preview reads the whole collection out: previews are made at most this share of
#: the training time, however often the driver asks (a large stack costs more than a
#: training step to preview; measured: 0.07 s against 0.06 s for 32 images of 128^2).
PREVIEW_SHARE = 0.1
#: A run stopped early keeps the network's parts only if they spread over the object at
#: least this much as the initial clustering's do (effective number of parts, see
#: :func:`part_spread`); before that, the network may still give most of the object to
#: one part, and the clustering it started from is the better answer.
STOPPED_SPREAD = 0.8


def working_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Longer side ``size`` (never enlarged), both sides multiples of 4, at least 16."""
    scale = min(1.0, size / max(height, width))
    return (max(16, int(round(height * scale / 4)) * 4), max(16, int(round(width * scale / 4)) * 4))


def _check_inputs(images: np.ndarray, saliency: np.ndarray | None) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise InputError(
            "Part discovery takes a stack of images (N, Y, X, C), the first axis indexing "
            f"the images; got shape {images.shape}."
        )
    check_image(images)
    if images.shape[0] < 1:
        raise InputError("Part discovery needs at least one image.")
    if saliency is not None and np.shape(saliency) != images.shape[:3]:
        raise InputError(
            f"The saliency mask has shape {np.shape(saliency)}, but the images are "
            f"{images.shape[:3]} (N, Y, X): they must match."
        )
    return images


@dataclass
class PartModel:
    """A trained part network with the prepared collection it was trained on."""

    net: torch.nn.Module
    params: PartsParams
    device: torch.device
    inputs: torch.Tensor  # (N, C, h, w) in [0, 1], on the CPU
    image_shape: tuple[int, int]  # (Y, X) of the original images
    feature_name: str
    saliency_name: str
    initial_labels: np.ndarray | None = None  # (N, h, w): nearest initial basis
    foreground: torch.Tensor | None = None  # (N, 1, h', w') saliency weights, or None
    features: torch.Tensor | None = None  # (N, D, h, w) semantic-consistency target
    bases: torch.Tensor | None = None  # (K + 1, D) part bases (before the ReLU)
    steps_done: int = 0
    loss_history: list[float] = field(default_factory=list)
    last_losses: dict[str, float] = field(default_factory=dict)
    stopwatch: Stopwatch = field(default_factory=Stopwatch)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax part maps ``(B, K + 1, h, w)`` for inputs ``(B, C, h, w)`` in [0, 1]."""
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                return torch.softmax(self.net(x.to(self.device)), dim=1).cpu()
        finally:
            self.net.train(was_training)

    def recalibrate(self, chunk: int = 16) -> None:
        """Re-estimate batch-norm statistics on the (unwarped) collection."""
        norms = [m for m in self.net.modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the passes below
        self.net.train()
        with torch.no_grad():
            for start in range(0, self.inputs.shape[0], chunk):
                self.net(self.inputs[start:start + chunk].to(self.device))
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum

    def segment(self, chunk: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Labels uint8 ``(N, Y, X)`` at the original size and centres ``(N, K, 2)`` (pixels)."""
        n_images = self.inputs.shape[0]
        height, width = self.image_shape
        k = self.params.n_parts
        labels = np.zeros((n_images, height, width), np.uint8)
        centres = np.full((n_images, k, 2), np.nan, np.float32)
        for start in range(0, n_images, chunk):
            probs = self.probabilities(self.inputs[start:start + chunk])
            for j in range(probs.shape[0]):
                full = F.interpolate(probs[j:j + 1], size=(height, width), mode="bilinear",
                                     align_corners=False)[0]
                found = read_labels(full, self._foreground(start + j, (height, width)))
                labels[start + j] = found.numpy().astype(np.uint8)
                centres[start + j] = region_centres(full, found)
        return labels, centres

    def _foreground(self, index: int, size: tuple[int, int]) -> torch.Tensor | None:
        if self.foreground is None:
            return None
        return F.interpolate(self.foreground[index:index + 1], size=size, mode="bilinear",
                             align_corners=False)[0, 0]

    def preview(self, chunk: int = 16) -> np.ndarray:
        """A cheap label stack uint8 ``(N, Y, X)``: read out at the working size, then
        enlarged by repeating pixels (no centres, no full-size probabilities)."""
        size = tuple(self.inputs.shape[-2:])
        small = torch.stack([
            read_labels(p, self._foreground(i + j, size))
            for i in range(0, self.inputs.shape[0], chunk)
            for j, p in enumerate(self.probabilities(self.inputs[i:i + chunk]))])
        return enlarge_nearest(small.numpy().astype(np.uint8), self.image_shape)

    def initial_partition(self) -> np.ndarray:
        """The initialisation baseline at full size, uint8 ``(N, Y, X)``: each pixel's
        nearest initial part basis (what training starts from and must improve on)."""
        return enlarge_nearest(self.initial_labels, self.image_shape)

    def result(self) -> Result:
        labels, centres = self.segment()
        labels_from = "network"
        stopped = self.steps_done < self.params.iterations
        if stopped and self.initial_labels is not None:
            # Stopped before the network has spread the object over its parts: keep the
            # clustering training started from, on the network's foreground.
            start = self.initial_partition()
            if part_spread(labels) < STOPPED_SPREAD * part_spread(start):
                labels = np.where(labels > 0, start, 0).astype(np.uint8)
                centres = label_centres(labels, self.params.n_parts)
                labels_from = "initial clustering (stopped before the network spread the parts)"
        self.stopwatch.lap("segment")
        metadata = provenance(
            "parts",
            self.params,
            device=describe(self.device),
            seed=self.params.seed,
            features=self.feature_name,
            saliency=self.saliency_name,
            n_images=int(self.inputs.shape[0]),
            working_shape=list(self.inputs.shape[-2:]),
            label_meaning="0 = background, 1..K = parts",
            centres="extras['centres']: (image, part, [row, column]) in pixels; NaN = part absent",
            final_losses=self.last_losses,
            steps=self.steps_done,
            stopped_early=stopped,
            labels_from=labels_from,
            timings=self.stopwatch.total(),
        )
        extras = {"centres": centres, "loss_history": np.asarray(self.loss_history, np.float32)}
        return Result(labels=labels, metadata=metadata, extras=extras)


def fit_parts(
    images: np.ndarray, params: PartsParams, *, saliency: np.ndarray | None = None,
    control: RunControl | None = None,
) -> Generator[Progress, None, PartModel]:
    """Train the part network on a stack; yields :class:`Progress`, returns a :class:`PartModel`.

    ``control``: a stop request ends training after the current step (the model
    is finished as after a full run and records ``steps_done``); previews (label
    stacks read out at the working size, see :meth:`PartModel.preview`) are made
    only when ``control.preview_due()``.
    """
    control = control or no_control()
    validate(params)
    images = _check_inputs(images, saliency)
    stopwatch = Stopwatch()
    device = resolve_device(params.device)
    rng = seed_everything(params.seed)
    n_images, height, width, channels = images.shape
    total = params.iterations
    yield Progress(0, total, message="preparing images")

    size = working_shape(height, width, params.working_size)
    unit = normalize(images)
    inputs = torch.cat([
        _resize(torch.as_tensor(unit[i:i + 16]).permute(0, 3, 1, 2), size)
        for i in range(0, n_images, 16)
    ]).clamp(0, 1).contiguous()
    # Saliency and texture are measured at the images' own resolution (the texture may
    # not survive the resizing), at most 4x the working size for very large images.
    texture_size = working_shape(height, width, 4 * params.working_size)
    full = unit if texture_size == (height, width) else torch.cat([
        _resize(torch.as_tensor(unit[i:i + 16]).permute(0, 3, 1, 2), texture_size)
        for i in range(0, n_images, 16)]).permute(0, 2, 3, 1).numpy()
    del unit
    full_mask, saliency_name = saliency_maps(full, params, saliency)
    mask = None if full_mask is None else _resize(full_mask, size).clamp(0, 1)
    stopwatch.lap("prepare")

    # Features for the semantic-consistency loss, computed once.
    if params.feature_weights:
        extractor, feature_name = load_feature_extractor(params.feature_weights)
        extractor.to(device)
        raw = None
        for done, out in network_features(extractor, inputs.to(device)):
            yield Progress(0, total, message=f"features {done}/{n_images}")
            raw = out
        raw = raw.cpu().numpy()
        del extractor
    else:
        feature_name = FALLBACK_FEATURES
        # Texture energies inside the object (see texture_features), averaged down to
        # the feature resolution.
        fsize = (int(size[0] * FEATURE_SCALE), int(size[1] * FEATURE_SCALE))
        raw = np.zeros((n_images, len(TEXTURE_SCALES) * 3, *fsize), np.float32)
        turn = None if full_mask is None else np.zeros((n_images, 1, *fsize), np.float32)
        for i in range(n_images):
            inside = None if full_mask is None else full_mask[i, 0].numpy()
            energy = torch.as_tensor(texture_features(full[i], inside))[None]
            raw[i] = F.interpolate(energy, size=fsize, mode="area")[0].numpy()
            if turn is not None:
                across = torch.as_tensor(axis_orientation(full[i], inside))[None, None]
                turn[i] = F.interpolate(across, size=fsize, mode="area")[0].numpy()
            if (i + 1) % 8 == 0:
                yield Progress(0, total, message=f"texture {i + 1}/{n_images}")
    del full
    feat_mask = None if mask is None else _resize(mask, raw.shape[-2:]).numpy()
    if params.feature_weights:
        features = torch.as_tensor(scale_features(raw, feat_mask))
    else:
        features = torch.as_tensor(texture_codes(raw, feat_mask, turn))
    feat_mask_t = None if feat_mask is None else torch.as_tensor(feat_mask)
    stopwatch.lap("features")

    regions = (colour_regions(inputs, params.region_scale)
               if params.w_region > 0 or params.pool_features else None)
    k = params.n_parts
    net = build_part_net(params.backbone, channels, k + 1).to(device)
    start_bases = initial_bases(features, feat_mask_t, k, rng)
    bases = torch.nn.Parameter(start_bases.clone().to(device))
    optimiser = torch.optim.Adam([
        {"params": net.parameters(), "lr": params.learning_rate},
        {"params": [bases], "lr": 5 * params.learning_rate},
    ])
    model = PartModel(net=net, params=params, device=device, inputs=inputs,
                      image_shape=(height, width), feature_name=feature_name,
                      saliency_name=saliency_name, stopwatch=stopwatch,
                      initial_labels=nearest_basis_labels(features, start_bases, feat_mask_t),
                      foreground=full_mask, features=features, bases=bases)
    # The initialisation above clusters the per-pixel features; what the semantic loss
    # reconstructs may be their means over the colour regions instead: sharp where the
    # images' colour edges are, where the per-pixel texture energies are blurred.
    # One image at a time: network features at the working size can be large.
    target = features if not params.pool_features else torch.cat([F.interpolate(
        L.region_means(F.interpolate(features[i:i + 1], size=size, mode="nearest"),
                       regions[i:i + 1]), size=features.shape[-2:], mode="area")
        for i in range(n_images)])
    batch = min(params.batch_size, n_images)
    next_preview = -math.inf  # no preview before this time (see PREVIEW_SHARE)
    net.train()
    for step in range(total):
        if control.stop_requested:
            break
        # Training needs gradients whatever the caller's grad mode (a notebook's
        # no_grad, a reused worker thread); the mode is not held across the yield.
        with torch.enable_grad():
            index = rng.choice(n_images, size=batch, replace=False)
            x = inputs[index].to(device)
            grid = random_grid(rng, batch, *size, kind=params.warp,
                               max_rotation=params.max_rotation, device=device)
            warped, valid = warp(x, grid)
            if params.colour_jitter:
                warped = colour_jitter(warped, rng) * valid
            probs_all = torch.softmax(net(torch.cat([x, warped])), dim=1)
            probs, probs_of_warped = probs_all[:batch], probs_all[batch:]
            warped_probs, _ = warp(probs, grid)

            terms: dict[str, torch.Tensor] = {}
            terms["concentration"] = 0.5 * (L.concentration_loss(probs[:, 1:])
                                            + L.concentration_loss(probs_of_warped[:, 1:]))
            terms["equivariance"] = L.equivariance_kl(probs_of_warped, warped_probs, valid)
            centres_a, _ = L.part_centres(probs_of_warped[:, 1:], valid)
            centres_b, _ = L.part_centres(warped_probs[:, 1:], valid)
            terms["centre"] = L.centre_loss(centres_a, centres_b)
            f = target[index].to(device)
            fm = None if feat_mask_t is None else feat_mask_t[index].to(device)
            pooled = F.interpolate(probs, size=f.shape[-2:], mode="area")
            terms["semantic"] = L.semantic_loss(pooled, f, bases, fm)
            terms["orthonormal"] = L.orthonormal_loss(bases[1:])
            fg_weights = None if mask is None else mask[index].to(device)
            terms["diversity"] = L.diversity_loss(probs, fg_weights)
            if params.w_colour_affinity > 0:
                terms["colour_affinity"] = L.colour_affinity_loss(probs, x)
            if params.w_region > 0:
                terms["region"] = L.region_consistency_loss(probs, regions[index].to(device))
            loss = (params.w_concentration * terms["concentration"]
                    + params.w_equivariance * (terms["equivariance"]
                                               + params.w_equivariance_centre * terms["centre"])
                    + params.w_semantic * terms["semantic"]
                    + params.w_orthonormal * terms["orthonormal"]
                    + params.w_diversity * terms["diversity"])
            if params.w_colour_affinity > 0:
                loss = loss + params.w_colour_affinity * terms["colour_affinity"]
            if params.w_region > 0:
                ramp = min(1.0, step / max(1.0, REGION_RAMP * total))
                loss = loss + ramp * params.w_region * terms["region"]
            if mask is not None and params.w_saliency > 0:
                terms["saliency"] = L.saliency_loss(probs, mask[index].to(device))
                loss = loss + params.w_saliency * terms["saliency"]
            if not torch.isfinite(loss):
                raise InputError(
                    f"Training diverged at step {step + 1} (the loss is {loss.item()}); "
                    "try a smaller learning rate or smaller loss weights."
                )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

        value = float(loss.detach())
        model.loss_history.append(value)
        model.last_losses = {name: float(t.detach()) for name, t in terms.items()}
        model.steps_done = step + 1
        preview = None
        # A driver asking for every preview (interval 0) gets every one.
        paced = control.preview_interval != 0 and time.monotonic() < next_preview
        if not paced and control.preview_due():
            started = time.monotonic()
            preview = model.preview()
            next_preview = started + (time.monotonic() - started) / PREVIEW_SHARE
        yield Progress(step + 1, total, loss=value, n_labels=k, preview=preview)
    stopwatch.lap("train")
    model.recalibrate()
    return model


def discover_parts_impl(
    images: np.ndarray, params: PartsParams, *, saliency: np.ndarray | None = None,
    control: RunControl | None = None,
) -> Generator[Progress, None, Result]:
    model = yield from fit_parts(images, params, saliency=saliency, control=control)
    return model.result()
