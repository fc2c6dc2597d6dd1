"""Tiled prediction: plan properties, tiled = untiled, odd sizes and channel counts, classes,
metadata, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _models import sharp_unet
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from napari_unsupseg.core.base.engine import Progress, RunControl, run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.models import ModelConfig, build_model
from napari_unsupseg.core.models.checkpoints import LoadedModel, save_checkpoint
from napari_unsupseg.core.predict import PredictParams, plan_tiles, predict


def smooth_image(shape, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    image = ndi.gaussian_filter(rng.random(shape), (3, 3, 0)[: len(shape)])
    image = (image - image.min()) / (image.max() - image.min())
    return (image * np.iinfo(dtype).max).astype(dtype)


def run(image, model, **kwargs):
    return run_to_end(predict(image, PredictParams(**kwargs), model=model))


@settings(max_examples=60, deadline=None)
@given(length=st.integers(2, 3000), tile=st.integers(64, 1100), overlap=st.integers(0, 200),
       multiple=st.sampled_from([1, 8, 16, 32]))
def test_tile_plan_covers_the_axis(length, tile, overlap, multiple):
    overlap = min(overlap, tile // 2)
    plan = plan_tiles(length, tile, overlap, multiple)
    assert plan.starts[0] == 0 and plan.ends[-1] == length
    for i, (start, end) in enumerate(zip(plan.starts, plan.ends, strict=True)):
        assert start % multiple == 0
        assert end - start <= max(tile, multiple) + multiple - 1
        if i < len(plan.starts) - 1:
            assert (end - start) % multiple == 0
            assert plan.starts[i + 1] <= end  # no gap
            assert plan.starts[i + 1] > start
    covered = np.zeros(length, int)
    for start, end in zip(plan.starts, plan.ends, strict=True):
        covered[start:end] += 1
    assert covered.min() >= 1
    for (a, b), cov in zip(plan.segments, plan.covering, strict=True):
        assert all(covered[a:b] == len(cov))
    assert all(w.min() > 0 and w.max() <= 1 for w in plan.windows)


def test_tiled_equals_untiled_away_from_tile_edges():
    model = sharp_unet()
    image = smooth_image((190, 171, 3))
    whole = run(image, model, tile_size=1024, confidence=True)
    assert whole.metadata["tiles"] == 1
    assert len(np.unique(whole.labels)) >= 3  # a prediction with structure, not one class
    tiled = run(image, model, tile_size=96, overlap=48, confidence=True)
    assert tiled.metadata["tiles"] == 9
    # A pixel is "far" when every tile covering it sees >= 40 px (> the receptive field of
    # this U-Net) around it, except at the image border where both paddings agree.
    ys = plan_tiles(190, 96, 48, 4)
    xs = plan_tiles(171, 96, 48, 4)

    def far(plan, length):
        ok = np.ones(length, bool)
        for start, end in zip(plan.starts, plan.ends, strict=True):
            pos = np.arange(start, end)
            inner = ((pos - start >= 40) | (start == 0)) & ((end - pos > 40) | (end == length))
            ok[start:end] &= inner
        return ok

    mask = far(ys, 190)[:, None] & far(xs, 171)[None, :]
    assert mask.sum() > 1000
    np.testing.assert_array_equal(tiled.labels[mask], whole.labels[mask])
    np.testing.assert_allclose(tiled.extras["confidence"][mask].astype(np.float32),
                               whole.extras["confidence"][mask].astype(np.float32), atol=2e-3)
    assert (tiled.labels == whole.labels).mean() > 0.97  # blending keeps the rest close


def test_deeplab_single_tile_is_the_unpadded_whole_image_forward():
    # DeepLab takes any size: an image that fits one tile (70 x 90, not a multiple of 16)
    # is not padded, so ASPP pooling and the final resize see only the image.
    config = ModelConfig("deeplabv3plus_mobilenet", 21)
    model = build_model(config)
    image = smooth_image((70, 90, 3))
    result = run(image, LoadedModel(model, config), tile_size=128, confidence=True)
    assert result.metadata["padded_to_multiple"] == 1
    x = (image.astype(np.float32) / 255 - np.float32([0.485, 0.456, 0.406])) / np.float32(
        [0.229, 0.224, 0.225])
    x = torch.from_numpy(x.transpose(2, 0, 1)[None].copy())
    with torch.inference_mode():
        probs = model(x)[0].softmax(0)
    np.testing.assert_array_equal(result.labels, probs.argmax(0).numpy())
    np.testing.assert_allclose(result.extras["confidence"], probs.max(0).values.numpy(),
                               atol=1e-3)
    assert result.metadata["class_names"][15] == "person" and result.metadata["label_offset"] == 0
    assert result.labels.dtype == np.uint8


def test_deeplab_tiles_blend_into_a_full_prediction():
    config = ModelConfig("deeplabv3_mobilenet", 19)  # Cityscapes: no background -> offset 1
    image = smooth_image((97, 83, 3))
    result = run(image, LoadedModel(build_model(config), config), tile_size=64, overlap=16)
    assert result.labels.shape == (97, 83)
    assert result.labels.min() >= 1 and result.labels.max() <= 19
    assert result.metadata["classes"]["1"] == "road"
    assert result.metadata["tile_grid"] == [2, 2]


@pytest.mark.parametrize("shape", [(1, 1), (45, 1), (97, 3)])
def test_odd_sizes_and_channel_counts(shape):
    height, channels = shape
    model = sharp_unet(channels=3)
    image = smooth_image((height + 20, 33, channels), dtype=np.uint16)
    result = run(image, model, tile_size=64, overlap=16)
    assert result.labels.shape == image.shape[:2]
    if channels == 1:
        assert result.metadata["channel_note"].startswith("grey image repeated")
        rgb = np.repeat(image, 3, axis=-1)
        np.testing.assert_array_equal(run(rgb, model, tile_size=64, overlap=16).labels,
                                      result.labels)


def test_four_channels():
    image = smooth_image((61, 75, 4))
    four = sharp_unet(channels=4)
    assert run(image, four, tile_size=64, overlap=16).labels.shape == (61, 75)
    three = sharp_unet(channels=3)
    with pytest.raises(InputError, match="takes 3 channel"):
        run(image, three)
    picked = run(image, three, channels="0,1,2").labels
    np.testing.assert_array_equal(picked, run(image[..., :3], three).labels)
    with pytest.raises(InputError, match="do not exist"):
        run(image, three, channels="0,1,7")


def test_stack_is_predicted_plane_by_plane_and_reports_progress():
    model = sharp_unet()
    stack = np.stack([smooth_image((70, 70, 3), seed=s) for s in range(2)])
    events: list[Progress] = []
    result = run_to_end(predict(stack, PredictParams(tile_size=64, overlap=16), model=model),
                        events.append)
    assert result.labels.shape == (2, 70, 70)
    assert events[-1].step == events[-1].total == 2 * 4
    assert [e.step for e in events] == sorted(e.step for e in events)
    # planes share one intensity scale: plane 1 alone, scaled by the stack's range, matches
    single = run(stack[1], model, tile_size=64, overlap=16, intensity="dtype")
    both = run(stack, model, tile_size=64, overlap=16, intensity="dtype")
    np.testing.assert_array_equal(both.labels[1], single.labels)


def test_intensity_modes_matter_for_16_bit():
    model = sharp_unet()
    image = (smooth_image((64, 64, 3)).astype(np.uint16) * 4)  # 12-bit data in 16-bit
    dtype = run(image, model, intensity="dtype")
    auto = run(image, model)
    np.testing.assert_array_equal(auto.labels, run(image, model, intensity="percentile").labels)
    assert (dtype.labels != auto.labels).any()
    low, high = auto.metadata["intensity"]["low"], auto.metadata["intensity"]["high"]
    assert 0 < high[0] <= 1020 and low[0] < high[0]


def test_checkpoint_path_and_metadata(tmp_path):
    model = sharp_unet(classes=3)
    config = ModelConfig("unet", 3, in_channels=3, depth=2, base_channels=8,
                         class_names=["background", "cell", "edge"], background=True,
                         mean=[0.5] * 3, std=[0.25] * 3)
    path = save_checkpoint(tmp_path / "cells.pt", model.model, config)
    result = run(smooth_image((50, 40, 3)), None, checkpoint=str(path), tile_size=64)
    meta = result.metadata
    assert meta["engine"] == "predict"
    assert meta["model"]["architecture"] == "unet" and len(meta["model"]["sha256"]) == 64
    assert meta["classes"] == {"0": "background", "1": "cell", "2": "edge"}
    assert meta["parameters"]["tile_size"] == 64
    json.dumps(meta)
    # same weights in memory, but no class names there: labels = class + 1
    in_memory = run(smooth_image((50, 40, 3)), model, tile_size=64)
    assert in_memory.metadata["label_offset"] == 1
    np.testing.assert_array_equal(result.labels, in_memory.labels - 1)


def test_class_names_from_the_user():
    model = sharp_unet(classes=4)
    image = smooth_image((40, 40, 3))
    result = run(image, model, classes="sky, tree, road, roof")
    assert result.metadata["classes"] == {"1": "sky", "2": "tree", "3": "road", "4": "roof"}
    with pytest.raises(InputError, match="3 class names"):
        run(image, model, classes="a,b,c")
    with pytest.raises(InputError, match="'voc' classes are 21"):
        run(image, model, classes="voc")


def test_plain_word_errors():
    model = sharp_unet()
    image = smooth_image((40, 40, 3))
    with pytest.raises(InputError, match="checkpoint"):
        run(image, None)
    assert run(image, model, tile_size=64, overlap=40).metadata["overlap_used"] == 32
    with pytest.raises(InputError, match="tile_size"):
        run(image, model, tile_size=8)
    with pytest.raises(InputError, match="Expected"):
        run(image[..., 0], model)


def test_cli_predict(tmp_path, monkeypatch, capsys):
    import tifffile
    from PIL import Image

    from napari_unsupseg import cli

    monkeypatch.setattr(cli, "SUBCOMMANDS", {"predict": "napari_unsupseg.cli.predict"})
    model = sharp_unet(classes=3)
    config = ModelConfig("unet", 3, depth=2, base_channels=8, class_names=["a", "b", "c"],
                         mean=[0.5] * 3, std=[0.25] * 3)
    checkpoint = save_checkpoint(tmp_path / "m.pt", model.model, config)
    image = smooth_image((70, 50, 3))
    Image.fromarray(image).save(tmp_path / "in.png")
    out = tmp_path / "out.tif"
    code = cli.main(["predict", str(tmp_path / "in.png"), "--checkpoint", str(checkpoint),
                     "--tile", "64", "--overlap", "16", "--confidence", "--quiet", "-o", str(out)])
    assert code == 0
    labels = tifffile.imread(out)
    np.testing.assert_array_equal(labels, run(image, model, tile_size=64, overlap=16).labels)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["classes"] == {"1": "a", "2": "b", "3": "c"}
    assert tifffile.imread(tmp_path / "out_confidence.tif").dtype == np.float16
    assert "classes seen" in capsys.readouterr().out
    code = cli.main(["predict", str(tmp_path / "in.png"), "--checkpoint",
                     str(tmp_path / "nope.pth"), "-o", str(out)])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_paused_run_leaves_its_thread_able_to_train():
    """Grad modes are per thread: a prediction paused at a yield (as a cancelled worker
    leaves it, to be closed later from another thread) must not leave its thread in
    inference mode for the next engine that trains there."""
    import threading

    seen: list[bool] = []

    def worker() -> None:
        run = predict(smooth_image((96, 96, 3)), PredictParams(tile_size=64, overlap=8),
                      model=sharp_unet())
        next(run)
        next(run)
        seen.append(torch.is_grad_enabled() and not torch.is_inference_mode_enabled())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [True]


def test_a_stopped_run_is_a_finished_result_with_the_tiles_done():
    model = sharp_unet()  # 4 classes, no background: every predicted pixel is >= 1
    image = smooth_image((100, 100, 3))
    control = RunControl()
    engine = predict(image, PredictParams(tile_size=64, overlap=16), model=model,
                     control=control)
    assert next(engine).step == 0
    first = next(engine)  # one tile done
    assert first.preview is None  # no preview unless the control asks for one
    control.request_stop()
    result = run_to_end(engine)
    meta = result.metadata
    assert meta["stopped_early"] is True
    assert (meta["tiles_done"], meta["tiles_total"]) == (1, 4)
    assert meta["class_names"] == [f"class {i}" for i in range(4)] and len(meta["palette"]) == 4
    full = run(image, model, tile_size=64, overlap=16)
    assert full.metadata["stopped_early"] is False and full.metadata["tiles_done"] == 4
    plan = plan_tiles(100, 64, 16, 4)
    end, own = plan.ends[0], plan.starts[1]  # first tile; the part no other tile covers
    done = result.labels > 0
    assert done[:end, :end].all() and done.sum() == end * end  # the rest is 0
    np.testing.assert_array_equal(result.labels[:own, :own], full.labels[:own, :own])


def test_previews_only_when_the_control_wants_one():
    model = sharp_unet()
    image = smooth_image((100, 100, 3))
    events = []
    run_to_end(predict(image, PredictParams(tile_size=64, overlap=16), model=model,
                       control=RunControl(preview_interval=0)), events.append)
    previews = [e.preview for e in events if e.preview is not None]
    assert len(previews) == 4 and all(p.shape == (100, 100) for p in previews)
    assert previews[0] is not previews[-1] and (previews[0] == 0).any()  # copies, in order
    events.clear()
    run_to_end(predict(image, PredictParams(tile_size=64, overlap=16), model=model),
               events.append)
    assert all(e.preview is None for e in events)


def test_only_architectures_that_need_it_are_padded():
    unet = sharp_unet()  # depth 2: sizes must be multiples of 4
    result = run(smooth_image((50, 63, 3)), unet)
    assert result.metadata["padded_to_multiple"] == 4 and result.labels.shape == (50, 63)
    config = ModelConfig("deeplabv3_mobilenet", 3)
    deep = run(smooth_image((50, 63, 3)), LoadedModel(build_model(config), config))
    assert deep.metadata["padded_to_multiple"] == 1
