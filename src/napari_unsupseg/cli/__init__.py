"""The ``napari-unsupseg`` command line: the same engines and parameters as the widgets.

Each subcommand lives in its own module exposing ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``. Bad input ends with exit code 2 and one plain sentence.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..core.base.errors import InputError

SUBCOMMANDS: dict[str, str] = {
    "demo": "napari_unsupseg.cli.demo",
    "preseg": "napari_unsupseg.cli.preseg",
    "backprop": "napari_unsupseg.cli.backprop",
    "predict": "napari_unsupseg.cli.predict",
    "parts": "napari_unsupseg.cli.parts",
    "train": "napari_unsupseg.cli.train",
    "batch": "napari_unsupseg.cli.batch",
    "geojson": "napari_unsupseg.cli.geojson",
    "measure": "napari_unsupseg.cli.measure",
    "compare": "napari_unsupseg.cli.compare",
    "export": "napari_unsupseg.cli.export",
}

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-unsupseg",
        description="Segment images without (or with) a trained model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(
            name,
            aliases=getattr(module, "ALIASES", ()),
            help=module.HELP,
            description=module.HELP,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except InputError as error:
        print(f"napari-unsupseg: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("napari-unsupseg: interrupted", file=sys.stderr)
        return 130
