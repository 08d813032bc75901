"""``faro-bluesky shell``: IPython as a bluesky session over the profile's instruments.

``RE(optogenetic_plan(fovs, phases))`` works as typed: the plans take the session's
microscope and analyzer; Ctrl-C pauses at the next visit (twice: at once), ``RE.resume()``
goes on. The instruments and plans come from a profile (``devices/``, ``plans/``); runs
get a persistent ``scan_id``, a baseline and bluesky's terminal feedback; ``%mov``,
``%movr``, ``%wa`` and ``%ct`` work on the labelled devices; IPython keeps its history.
``--gui`` opens napari with the status widget docked and a live image layer; the
RunEngine then runs with a Qt ``during_task`` so napari stays live during ``RE(...)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ._profile import find_profile, mm_config_from
from ._session import Session, open_session

BANNER = """faro-bluesky shell - {where}
  profile    {profile}
  devices    {devices}
  plans      {plans}
  RE         RunEngine (Ctrl-C pauses at the next visit; RE.resume(), RE.stop(), RE.abort());
             RE.md persists (next scan_id {scan_id}); sd.baseline is read with every run
  scope      the microscope: scope.stage, scope.camera, scope.channel, scope.dmd, scope.core
  catalog    every run (catalog[-1], catalog.search(...)), stored in {data}
  analyzer   closed-loop analysis: segments plane 0 of each visit; e.g.
             analyzer.features = components.ErkKtrFeatures(channel="ERKKTR")
             analyzer.stimulator = components.FractionOfCells(0.5)  (after calibrate_dmd)
  status     live RunStatus (status.snapshot); bec: bluesky's BestEffortCallback (plots off)
  magics     %wa (where all), %mov focus 5, %movr stage.x 10, %ct (count the detectors)
  Phase, Channel, wait, parallel, schedule, optogenetic_plan, calibrate_dmd, bp, bps, np

  fovs = [(0, 0), (400, 0)]
  phases = [Phase("baseline", interval=2, n_frames=3, channels=[Channel("miRFP", 20)])]
  RE(optogenetic_plan(fovs, phases))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``shell`` command."""
    parser.add_argument("--data", type=Path, default=Path("faro-data"), help="catalog directory")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="profile directory with devices/ and plans/ (default: $FARO_PROFILE, else the "
        "working directory if it has both, else the packaged default)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="Micro-Manager config for the profile (default: $FARO_MM_CONFIG, else simulation)",
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
    try:
        profile = find_profile(args.profile)
        mm_config = mm_config_from(args.config)
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}", soft_wrap=True)
        return 2
    during_task: Any = None
    if args.gui:
        from ..widgets import QtDuringTask

        during_task = QtDuringTask()
    session: Session = open_session(
        args.data,
        profile=profile,
        mm_config=mm_config,
        seed=args.seed,
        console=console,
        during_task=during_task,
    )
    try:
        return _start_ipython(args, console, session, mm_config)
    finally:
        session.close()


def _start_ipython(
    args: argparse.Namespace, console: Console, session: Session, mm_config: Path | None
) -> int:
    """Run IPython with the session's namespace and bluesky's magics until the user exits."""
    from IPython.terminal.ipapp import TerminalIPythonApp

    from ._magics import register_magics

    argv = ["--no-confirm-exit", "--no-banner"]
    if args.simple_prompt:
        argv.append("--simple-prompt")
    if args.gui:
        argv.append("--gui=qt")
        lines = ", ".join(repr(line) for line in _gui_lines())
        argv.append(f"--InteractiveShellApp.exec_lines=[{lines}]")
    where = f"Micro-Manager config {mm_config}" if mm_config else "simulated microscope"
    banner = BANNER.format(
        where=where,
        profile=session.profile.path,
        devices=", ".join(session.instruments),
        plans=", ".join(session.plans) or "-",
        scan_id=session.RE.md.get("scan_id", 0) + 1,
        data=session.catalog.path,
    )
    console.print(banner, soft_wrap=True, highlight=False, markup=False)
    app = TerminalIPythonApp.instance(user_ns=session.namespace())
    app.initialize(argv)
    register_magics(app.shell, session.RE)
    app.start()
    return 0
