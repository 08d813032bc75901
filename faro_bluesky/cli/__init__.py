"""The ``faro-bluesky`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from .._version import version_string
from . import _demo


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``faro-bluesky``."""
    parser = argparse.ArgumentParser(
        prog="faro-bluesky",
        description="Closed-loop optogenetic microscopy on the Bluesky stack.",
    )
    parser.add_argument("--version", action="version", version=version_string())
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="time-lapse on the simulated microscope")
    _demo.add_arguments(demo)
    args = parser.parse_args(argv)
    console = Console()
    if args.command == "demo":
        return _demo.run(args, console)
    return 2  # pragma: no cover - argparse enforces the choices


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
