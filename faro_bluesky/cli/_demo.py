"""``faro-bluesky demo``: a whole closed-loop optogenetic experiment on the simulated microscope.

The story a new user should see in one command: calibrate the DMD, image a baseline, wait,
stimulate half of the tracked cells with masks computed from each frame, watch them recover;
live progress; every run stored in the catalog; a report PNG at the end. The instruments and
the experiment's phases (``plans/demo.py``) come from the packaged default profile, always
on the simulated microscope. ``--gui`` shows the
status widget during the run, ``--screenshot PATH`` saves it as PNG at the end.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from bluesky import RunEngine
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..analysis.components import ErkKtrFeatures, FractionOfCells, OtsuSegmenter
from ..plans import calibrate_dmd, optogenetic_plan
from ..storage import write_report
from ._profile import default_profile
from ._session import open_session


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``demo`` command."""
    parser.add_argument("--data", type=Path, default=Path("faro-data"), help="catalog directory")
    parser.add_argument("--fovs", type=int, default=2, help="number of fields of view")
    parser.add_argument("--frames", type=int, default=4, help="frames per phase (recovery: 2x)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between frames")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--gui", action="store_true", help="show the status widget")
    parser.add_argument("--screenshot", type=Path, default=None, help="save the widget as PNG")


class _Gui:
    """The status widget in its own window, for ``--gui`` and ``--screenshot``."""

    def __init__(self, status: Any, RE: RunEngine, show: bool) -> None:
        from qtpy.QtWidgets import QApplication

        from ..widgets import ExperimentStatusWidget

        self.app = QApplication.instance() or QApplication([])
        self.widget = ExperimentStatusWidget(status, RE)
        self.widget.setWindowTitle("faro-bluesky demo")
        self.widget.resize(900, 520)
        if show:
            self.widget.show()

    def screenshot(self, path: Path) -> Path:
        self.widget.refresh() if hasattr(self.widget, "refresh") else None
        for _ in range(5):
            self.app.processEvents()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.widget.grab().save(str(path)):
            raise OSError(f"could not write the screenshot {path}")
        return path


def run(args: argparse.Namespace, console: Console) -> int:
    """Run the demo experiment and say where everything went."""
    if args.fovs < 1 or args.frames < 1 or args.interval <= 0:
        console.print("[red]--fovs and --frames must be >= 1 and --interval > 0", soft_wrap=True)
        return 2
    during_task = None
    gui = args.gui or args.screenshot is not None
    if gui:
        from ..widgets import QtDuringTask

        during_task = QtDuringTask()
    session = open_session(
        args.data,
        profile=default_profile(),
        seed=args.seed,
        console=console,
        during_task=during_task,
    )
    RE = session.RE
    analyzer = session.analyzer
    analyzer.segmenter = OtsuSegmenter(channel="miRFP")
    analyzer.features = ErkKtrFeatures(channel="ERKKTR")
    analyzer.stimulator = FractionOfCells(0.5, seed=args.seed)
    window = _Gui(session.status, RE, show=args.gui) if gui else None
    fovs = [(400.0 * i, 0.0) for i in range(args.fovs)]
    phases = session.plans["demo_phases"](args.frames, args.interval)
    console.print(
        f"[bold]faro-bluesky demo[/]: closed-loop optogenetics on the simulated microscope, "
        f"{args.fovs} FOV(s); baseline, wait, stimulation of half the cells, recovery",
        soft_wrap=True,
    )
    t0 = time.monotonic()
    try:
        # calibrate where no FOV is: its light stimulates the cells it shines on
        away = (0.0, -3.0 * session.scope.field_of_view_um()[1])
        affine = RE(calibrate_dmd(session.scope, position=away)).plan_result
        error = np.abs(affine - session.scope.sim.true_affine).max()
        console.print(
            f"DMD calibrated (largest difference to the truth {error:.3f})", soft_wrap=True
        )
        result = RE(optogenetic_plan(fovs, phases, md={"sample": "simulated HeLa, ERK-KTR"}))
        analyzer.wait_idle(120)
        uid = result.run_start_uids[0]
        run = session.catalog[uid]
        report = write_report(run, session.catalog.path / "reports" / f"{uid[:8]}.png")
        shot = window.screenshot(args.screenshot) if window and args.screenshot else None
        _summary(console, session, run, result, report, shot, time.monotonic() - t0)
        warning = (run.stop or {}).get("reason") if result.exit_status == "success" else None
        if warning:  # asked for and never done (e.g. no mask ever delivered): not a success
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    finally:
        session.close()
    return 0 if result.exit_status == "success" and not warning else 1


def _summary(
    console: Console,
    session: Any,
    run: Any,
    result: Any,
    report: Path,
    shot: Path | None,
    elapsed: float,
) -> None:
    tracks = run.tracks()
    table = Table(title="Where everything went", show_header=False)
    table.add_row("run uid", run.uid)
    table.add_row("exit status", result.exit_status)
    table.add_row("frames", str(len(run.frames)))
    table.add_row("catalog", str(session.catalog.path))
    table.add_row("zarr store", str(run.store_path))
    table.add_row("per-FOV OME-Zarr (napari, Fiji)", str(run.fov_store()))
    table.add_row("labels", ", ".join(run.label_names))
    table.add_row("tracks", f"{len(tracks)} rows, {tracks['particle'].nunique()} particles")
    if "lit" in tracks and "cnr" in tracks:
        stim = tracks[tracks["phase"] == "stim"]
        lit = stim.groupby(["fov", "particle"])["lit"].mean() > 0.5
        lit_cnr = stim.join(lit.rename("is_lit"), on=["fov", "particle"])
        means = lit_cnr.groupby("is_lit")["cnr"].mean()
        table.add_row(
            "ERK activity (stim phase)",
            f"lit cells {means.get(True, float('nan')):.2f} vs "
            f"dark cells {means.get(False, float('nan')):.2f} (c/n ratio)",
        )
    table.add_row("analysis errors", str(len(session.analyzer.errors)))
    table.add_row("report", str(report))
    if shot is not None:
        table.add_row("screenshot", str(shot))
    table.add_row("elapsed", f"{elapsed:.1f} s")
    console.print(table)
    console.print(
        "Open it again: [cyan]from faro_bluesky.storage import Catalog; "
        f"run = Catalog.local({str(session.catalog.path)!r})[{run.uid[:8]!r}][/] "
        "(run.images(0), run.tracks(), run.labels('nuclei', 0)); "
        f"or [cyan]faro-bluesky report {run.uid[:8]} --data {session.catalog.path}[/]",
        soft_wrap=True,
    )
