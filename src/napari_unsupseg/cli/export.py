"""``napari-unsupseg export``: any model file this plugin reads, written as ONNX, a
``torch.export`` program or a bioimage.io package.

Example::

    napari-unsupseg export best_deeplabv3plus_mobilenet_voc_os16.pth -o voc.onnx
    napari-unsupseg export cells_model.pt -o cells_bioimageio.zip --name "HeLa nuclei"

The output format follows the file name: ``.onnx``, ``.pt2`` (``torch.export``), a
``.zip`` or a folder (bioimage.io package: rdf.yaml, weights, test tensors). TorchScript
(``.pt`` / ``.ts``) is no longer written: PyTorch deprecates it in favour of
``torch.export``; TorchScript files are still read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.base.errors import InputError

HELP = ("Write a model file as ONNX, a torch.export program or a bioimage.io package (by the "
        "output name).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="The model file (any format predict reads).")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="model.onnx, model.pt2 (torch.export), package.zip or a folder.")
    parser.add_argument("--architecture", default="auto",
                        help="Architecture when the keys do not say it.")
    parser.add_argument("--name", default="", help="Name of the bioimage.io package.")
    parser.add_argument("--description", default="", help="Its description.")


def run(args: argparse.Namespace) -> int:
    from ..core.models.checkpoints import describe, load_checkpoint

    loaded = load_checkpoint(args.model, args.architecture)
    out: Path = args.output
    suffix = out.suffix.lower()
    if suffix == ".onnx":
        from ..core.models.export import export_onnx

        written = export_onnx(loaded, out)
    elif suffix == ".pt2":
        from ..core.models.export import export_program

        written = export_program(loaded, out)
    elif suffix in (".pt", ".ts", ".pth"):
        raise InputError(f"{out.name}: TorchScript is no longer written (PyTorch deprecates "
                         "it); name the output .pt2 for a torch.export program, or .onnx.")
    elif suffix == ".zip" or not suffix:
        from ..core.models.bioimageio import export_package

        written = export_package(loaded, out, name=args.name, description=args.description)
    else:
        raise InputError(f"Cannot tell the format of {out.name}: name it .onnx, .pt2 "
                         "(torch.export), .zip or a folder (bioimage.io package).")
    print(describe(loaded))
    print(f"wrote {written}")
    return 0
