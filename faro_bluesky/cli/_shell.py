"""``faro-bluesky shell``: IPython with the RunEngine, microscope, catalog and analyzer wired.

``RE(optogenetic_plan(fovs, phases))`` works as typed: the plans take the session's
microscope and analyzer; Ctrl-C pauses at the next visit (twice: at once), ``RE.resume()``
goes on. ``--gui`` opens napari with the status widget docked and a live image layer; the
RunEngine then runs with a Qt ``during_task`` so napari stays live during ``RE(...)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from ._session import Session, open_session

BANNER = """faro-bluesky shell - {where}
  RE         RunEngine (Ctrl-C pauses at the next visit; RE.resume(), RE.stop(), RE.abort())
  scope      the microscope: scope.stage, scope.camera, scope.channel, scope.dmd, scope.core
  catalog    every run (catalog[-1], catalog.search(...)), stored in {data}
  analyzer   closed-loop analysis: segments plane 0 of each visit; e.g.
             analyzer.features = components.ErkKtrFeatures(channel="ERKKTR")
             analyzer.stimulator = components.FractionOfCells(0.5)  (after calibrate_dmd)
  status     live RunStatus (status.snapshot)
  Phase, Channel, wait, parallel, schedule, optogenetic_plan, calibrate_dmd, bp, bps, np

  fovs = [(0, 0), (400, 0)]
  phases = [Phase("baseline", interval=2, n_frames=3, channels=[Channel("miRFP", 20)])]
  RE(optogenetic_plan(fovs, phases))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``shell`` command."""
    parser.add_argument("--data", type=Path, default=Path("faro-data"), help="catalog directory")
    parser.add_argument(
        "--config", type=Path, default=None, help="Micro-Manager config (default: simulation)"
    )
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--gui", action="store_true", help="napari with the status widget")
    parser.add_argument(
        "--simple-prompt", action="store_true", help="plain IPython prompt (terminals, tests)"
    )


def _gui_lines() -> list[str]:
    """IPython start-up lines that open napari with the widget and a live image layer."""
    return [
        "from faro_bluesky.widgets import add_to_napari as _add_to_napari",
        "from faro_bluesky.widgets._live import LiveImage as _LiveImage",
        "import napari as _napari",
        "viewer = _napari.Viewer(title='faro-bluesky')",
        "_dock = _add_to_napari(viewer, status, RE)",
        "_live = _LiveImage(viewer, scope.camera.frames)",
    ]


def run(args: argparse.Namespace, console: Console) -> int:
    """Start IPython in a wired session; release everything when it exits."""
    from IPython import start_ipython

    RE: Any = None
    if args.gui:
        from bluesky import RunEngine

        from ..widgets import QtDuringTask

        RE = RunEngine(call_returns_result=True, during_task=QtDuringTask())
    session: Session = open_session(
        args.data, config=args.config, seed=args.seed, console=console, RE=RE
    )
    where = f"Micro-Manager config {args.config}" if args.config else "simulated microscope"
    argv = ["--no-confirm-exit", "--no-banner", "--HistoryManager.enabled=False"]
    if args.simple_prompt:
        argv.append("--simple-prompt")
    if args.gui:
        argv.append("--gui=qt")
        lines = ", ".join(repr(line) for line in _gui_lines())
        argv.append(f"--InteractiveShellApp.exec_lines=[{lines}]")
    console.print(BANNER.format(where=where, data=session.catalog.path), soft_wrap=True)
    try:
        start_ipython(argv=argv, user_ns=session.namespace())
    finally:
        session.close()
    return 0
