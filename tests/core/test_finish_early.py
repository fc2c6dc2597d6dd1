"""Finishing early gives a finished result; previews only when the driver asks; core defects."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unsupseg.core import samples
from napari_unsupseg.core.backprop import BackpropParams, plane_superpixels, segment
from napari_unsupseg.core.base.engine import Progress, RunControl, run_to_end
from napari_unsupseg.core.base.images import normalize

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mosaic() -> tuple[np.ndarray, np.ndarray]:
    return samples.mosaic(96, n_regions=6, noise=0.05, seed=3)


def _stop_after(control: RunControl, steps: int):
    """An on_progress callback that asks the engine to finish at iteration ``steps``."""

    def on_progress(event: Progress) -> None:
        if event.step >= steps:
            control.request_stop()

    return on_progress


def test_stopped_run_is_post_processed_like_a_full_run(mosaic):
    image = mosaic[0]
    params = BackpropParams(max_iter=50, patience=0, min_labels=1, n_labels=3, min_size=40)
    control = RunControl()
    result = run_to_end(segment(image, params, control=control), _stop_after(control, 3))
    labels = result.labels
    assert result.metadata["stopped_early"] is True
    assert result.metadata["iterations"] == [3]
    assert result.metadata["stop_reason"] == "stopped"
    # The merge to n_labels and the small-region merge were applied, ids are 1..K.
    ids = np.unique(labels)
    assert ids.min() >= 1 and len(ids) <= 3 and ids.max() == len(ids)
    from skimage.measure import label as components

    pieces = components(labels, connectivity=1)
    sizes = np.bincount(pieces.ravel())
    # Specks were absorbed (the nearest-pixel hand-out may leave a stray pixel or two).
    assert np.mean(sizes[pieces] < 40) < 0.002


def test_full_run_is_not_marked_stopped(mosaic):
    result = run_to_end(segment(mosaic[0], BackpropParams(max_iter=4, patience=0)))
    assert result.metadata["stopped_early"] is False
    # One entry per training run (the default restarts, one after the other).
    assert result.metadata["iterations"] == [4] * BackpropParams().restarts


def test_stopped_run_keeps_scribble_class_ids(mosaic):
    image, truth = mosaic
    scribbles = np.zeros(truth.shape, np.int32)
    for region, cls in ((1, 3), (4, 7)):
        ys, xs = np.nonzero(truth == region)
        cy, cx = int(np.median(ys)), int(np.median(xs))
        scribbles[cy - 1 : cy + 2, cx - 6 : cx + 7] = cls
    control = RunControl()
    result = run_to_end(
        segment(image, BackpropParams(max_iter=50, patience=0), scribbles=scribbles,
                control=control),
        _stop_after(control, 10),
    )
    assert result.metadata["stopped_early"] is True
    labels = result.labels
    # Not renumbered 1 and 2 as the raw network outputs are: the painted ids.
    assert np.mean(labels[scribbles == 3] == 3) > 0.9
    assert np.mean(labels[scribbles == 7] == 7) > 0.9


def test_stopped_plane_by_plane_stack_keeps_ids_apart_and_zeroes_planes_not_reached(mosaic):
    image = mosaic[0][:48, :48]
    stack = np.stack([image, image[::-1], image[:, ::-1]])
    control = RunControl()
    # Ask to stop during the second plane's training: the third is never reached.
    result = run_to_end(
        segment(stack, BackpropParams(max_iter=5, patience=0, min_labels=1, restarts=1),
                control=control),
        _stop_after(control, 7),
    )
    labels = result.labels
    meta = result.metadata
    assert meta["stopped_early"] is True and meta["planes_done"] == 2
    assert meta["planes_total"] == 3
    assert not set(np.unique(labels[0])) & set(np.unique(labels[1]))
    assert (labels[0] > 0).all() and (labels[1] > 0).all() and (labels[2] == 0).all()


def test_previews_only_when_the_driver_asks(mosaic):
    image = mosaic[0]
    params = BackpropParams(max_iter=6, patience=0, min_labels=1, restarts=1)  # one run's steps
    events: list[Progress] = []
    run_to_end(segment(image, params), events.append)
    assert all(e.preview is None for e in events)

    class EveryThird(RunControl):
        calls = 0

        def preview_due(self) -> bool:
            self.calls += 1
            return self.calls % 3 == 0

    events.clear()
    run_to_end(segment(image, params, control=EveryThird()), events.append)
    assert [e.step for e in events if e.preview is not None] == [3, 6]


def test_scribble_classes_above_16_bits_keep_their_ids(mosaic):
    image, truth = mosaic
    scribbles = np.zeros(truth.shape, np.int64)
    ys, xs = np.nonzero(truth == 2)
    scribbles[ys[0], xs[0]] = 70_000
    ys, xs = np.nonzero(truth == 5)
    scribbles[ys[0], xs[0]] = 3
    result = run_to_end(segment(image, BackpropParams(max_iter=4, patience=0),
                                scribbles=scribbles))
    assert result.labels.dtype == np.uint32
    assert 70_000 in np.unique(result.labels)


def test_boolean_image_is_normalised():
    picture = np.zeros((16, 16, 1), bool)
    picture[4:12, 4:12] = True
    out = normalize(picture)
    assert out.dtype == np.float32 and set(np.unique(out).tolist()) == {0.0, 1.0}


def test_stack_superpixels_keep_the_shared_scale():
    """A plane of faint noise in a stack with a contrasted plane stays nearly one
    superpixel: the stack's normalisation is not stretched again per plane."""
    rng = np.random.default_rng(0)
    sharp = np.zeros((64, 64, 1), np.float32)
    sharp[:, 32:] = 1.0
    faint = 0.5 + 0.01 * rng.standard_normal((64, 64, 1)).astype(np.float32)
    planes = normalize(np.stack([sharp, faint]))
    params = BackpropParams(network="fast")
    faint_shared = plane_superpixels(planes[1], params)
    faint_alone = plane_superpixels(normalize(faint), params)
    assert faint_shared.max() * 4 <= faint_alone.max()


# ------------------------------------------------------------------------ command line


def test_ctrl_c_on_the_command_line_writes_the_finished_result(tmp_path, monkeypatch):
    """The first Ctrl+C finishes the run with what it has, post-processed and written."""
    import json
    import signal

    import tifffile
    from PIL import Image

    from napari_unsupseg.cli import backprop as cli_backprop
    from napari_unsupseg.cli import main

    image, _ = samples.mosaic(64, n_regions=4, noise=0.05, seed=1)
    path = tmp_path / "mosaic.png"
    Image.fromarray((image * 255).astype(np.uint8)).save(path)
    real = cli_backprop.segment

    def interrupted(*args, **kwargs):
        run = real(*args, **kwargs)
        event = next(run)
        while True:
            if event.step == 3:
                signal.raise_signal(signal.SIGINT)
            try:
                event = run.send(None)
            except StopIteration as stop:
                return stop.value
            yield event

    monkeypatch.setattr(cli_backprop, "segment", interrupted)
    out = tmp_path / "labels.tif"
    code = main(["backprop", str(path), "--max-iter", "200", "--patience", "0",
                 "--n-labels", "2", "-o", str(out), "--quiet"])
    assert code == 0
    labels = tifffile.imread(out)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["stopped_early"] is True and meta["iterations"] == [3]
    assert len(np.unique(labels)) == 2


def test_one_bit_png_segments_on_the_command_line(tmp_path):
    from PIL import Image

    from napari_unsupseg.cli import main

    picture = np.zeros((48, 48), bool)
    picture[8:40, 8:24] = True
    path = tmp_path / "mask.png"
    Image.fromarray(picture).convert("1").save(path)
    out = tmp_path / "preseg.tif"
    assert main(["preseg", str(path), "--channel-axis", "none", "-o", str(out)]) == 0
