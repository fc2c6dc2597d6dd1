"""The README's 3-D screenshot: nuclei of a z-stack split as a volume, in napari's 3-D view.

    xvfb-run -a python docs/make_volume_screenshot.py

The stack is ``benchmarks/bench_volume.py``'s synthetic one (48 x 192 x 192, planes 2.5
pixels apart, ellipsoid nuclei, most touching). Its Otsu foreground is split into 3-D
objects with the voxel spacing (``separate_objects(mask, spacing)``, what Model inference's
"as a volume" objects mode runs) and shown as a Labels layer with the stack's scale; the
plane-by-plane objects joined by overlap are in the layer list, hidden, to compare.
Writes ``docs/images/volume_objects.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))
sys.path.insert(0, str(HERE))

from make_screenshots import OUT, WINDOW, _save, _virtual_display  # noqa: E402


def main() -> int:
    display = _virtual_display()
    try:
        import napari
        from bench_volume import foreground, nuclei_volume

        from napari_unsupseg.core.predict.objects import join_planes, separate_objects

        volume = nuclei_volume((48, 192, 192), 2.5, seed=0)
        mask = foreground(volume)
        objects = separate_objects(mask, volume.spacing)
        joined = join_planes(separate_objects(mask), 0.85)
        viewer = napari.Viewer(title="napari-unsupseg", ndisplay=3)
        viewer.window.resize(*WINDOW)
        viewer.add_image(volume.image, name="nuclei stack", scale=volume.spacing,
                         colormap="gray", rendering="mip", visible=False)
        viewer.add_labels(joined, name="planes, joined by overlap", scale=volume.spacing,
                          opacity=0.9, visible=False)  # in the layer list, to compare
        viewer.add_labels(objects, name="objects as a volume", scale=volume.spacing,
                          opacity=0.9)
        viewer.reset_view()
        viewer.camera.angles = (-25.0, 35.0, 145.0)  # tilted: the planes' depth shows
        viewer.text_overlay.visible = True
        viewer.text_overlay.position = "top_left"
        viewer.text_overlay.font_size = 9
        viewer.text_overlay.text = (
            f"objects split as a volume: {len(set(objects.flat)) - 1} ({int(volume.truth.max())} "
            f"nuclei; split plane by plane and joined: {len(set(joined.flat)) - 1})")
        OUT.mkdir(parents=True, exist_ok=True)
        _save(viewer.screenshot(canvas_only=False, flash=False), "volume_objects.png")
        viewer.close()
    finally:
        if display is not None:
            display.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
