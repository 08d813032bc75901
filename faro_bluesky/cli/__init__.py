"""The ``faro-bluesky`` command line, and the profile API its ``devices/`` files use."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from .._version import version_string
from . import _analysis, _demo, _network, _queue, _shell, _storage
from ._profile import Profile, Setup, add_labels, default_profile, find_profile, load_profile
from ._session import Session, open_session

__all__ = [
    "Profile",
    "Session",
    "Setup",
    "add_labels",
    "default_profile",
    "find_profile",
    "load_profile",
    "main",
    "open_session",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``faro-bluesky``."""
    parser = argparse.ArgumentParser(
        prog="faro-bluesky",
        description="Closed-loop optogenetic microscopy on the Bluesky stack.",
    )
    parser.add_argument("--version", action="version", version=version_string())
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="closed-loop experiment on the simulated microscope")
    _demo.add_arguments(demo)
    _storage.add_serve_arguments(sub.add_parser("serve", help="tiled server over a catalog"))
    _storage.add_runs_arguments(sub.add_parser("runs", help="list the runs of a catalog"))
    _shell.add_arguments(sub.add_parser("shell", help="IPython with RE, microscope, catalog"))
    _analysis.add_replay_arguments(sub.add_parser("replay", help="replay a stored run"))
    _analysis.add_reanalyze_arguments(
        sub.add_parser("reanalyze", help="analyse a stored run again, as a new run")
    )
    _analysis.add_report_arguments(sub.add_parser("report", help="a stored run's report PNG"))
    _network.add_commands(sub)  # status --follow, analyzer (documents over the network)
    _queue.add_commands(sub)  # queue: bluesky-queueserver's RE Manager on the profile
    args = parser.parse_args(argv)
    console = Console()
    if args.command == "demo":
        return _demo.run(args, console)
    if args.command == "serve":
        return _storage.serve(args, console)
    if args.command == "shell":
        return _shell.run(args, console)
    if args.command in ("replay", "reanalyze", "report"):
        return getattr(_analysis, args.command)(args, console)
    if args.command == "runs":
        return _storage.runs(args, console)
    if args.command in _network.COMMANDS:
        return _network.run(args, console)
    if args.command == "queue":
        return _queue.run(args, console)
    return 2  # pragma: no cover - argparse enforces the choices


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
