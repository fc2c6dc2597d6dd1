"""Agreement of ``predict`` with DeepLabV3Plus-Pytorch's own forward on the same weights.

Builds the networks from a checkout of VainF/DeepLabV3Plus-Pytorch (its ``network``
package only needs torch), gives them random weights and random BatchNorm statistics,
saves each checkpoint as that project's ``train.py`` does (``model_state`` and friends),
loads it with :func:`napari_unsupseg.core.models.checkpoints.load_checkpoint` and compares
the labels of :func:`~napari_unsupseg.core.predict.predict` with the arg-max of the
reference forward on a 300 x 420 RGB image.

    python benchmarks/agreement_vainf.py /path/to/DeepLabV3Plus-Pytorch
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.models.checkpoints import load_checkpoint
from napari_unsupseg.core.predict import PredictParams, predict

NAMES = ("deeplabv3plus_mobilenet", "deeplabv3plus_resnet50", "deeplabv3_mobilenet")


def randomise(model: torch.nn.Module, x: torch.Tensor, seed: int) -> torch.nn.Module:
    """Random weights, then BatchNorm statistics other than 0 / 1, taken from ``x``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.dtype.is_floating_point and name.endswith("weight") and tensor.ndim > 1:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2 / fan_in) ** 0.5)
            elif tensor.dtype.is_floating_point:
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.2 + 0.9
                             if "weight" in name or "var" in name else
                             torch.randn(tensor.shape, generator=gen) * 0.1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def image(shape=(300, 420), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndi.gaussian_filter(rng.random((*shape, 3)), (6, 6, 0))
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


def main(vainf: str) -> None:
    sys.path.insert(0, str(Path(vainf)))
    import network  # VainF's package, from the checkout given

    rgb = image()
    x = (rgb.astype(np.float32) / 255 - np.float32([0.485, 0.456, 0.406])) / np.float32(
        [0.229, 0.224, 0.225])
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
    calib = torch.cat([x, x.flip(-1)])
    for seed, name in enumerate(NAMES):
        reference = network.modeling.__dict__[name](num_classes=21, output_stride=16,
                                                    pretrained_backbone=False)
        randomise(reference, calib, seed)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"best_{name}_voc_os16.pth"
            torch.save({"cur_itrs": 1000, "model_state": reference.state_dict(),
                        "optimizer_state": {}, "scheduler_state": {},
                        "best_score": np.float64(0.5)}, path)
            loaded = load_checkpoint(path)
        with torch.inference_mode():
            expected = reference(x)[0]
            ours = loaded.model(x)[0]
        truth = expected.argmax(0).numpy()
        labels = run_to_end(predict(rgb, PredictParams(tile_size=1024), model=loaded)).labels
        print(f"{name}: predict agrees with the reference on "
              f"{100 * (labels == truth).mean():.2f}% of pixels "
              f"({len(np.unique(truth))} classes present; max logit difference "
              f"{(ours - expected).abs().max().item():.2e})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/vainf")
