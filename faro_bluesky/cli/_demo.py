"""``faro-bluesky demo``: a multi-FOV, multi-channel time-lapse on the simulated microscope."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import zarr
from bluesky import RunEngine
from bluesky.utils import MsgGenerator
from rich.console import Console
from rich.table import Table

from ..callbacks import ProgressDisplay
from ..devices import LightSetting, Microscope
from ..sim import sim_microscope


def timelapse(
    scope: Microscope,
    fovs: Sequence[tuple[float, float]],
    channels: Sequence[LightSetting],
    n_timepoints: int,
    interval_s: float,
) -> MsgGenerator[str]:
    """Image every FOV in every channel, ``n_timepoints`` times, ``interval_s`` apart.

    A stand-in for the experiment plans to come: stage moves once per FOV, a checkpoint
    before each FOV visit (Ctrl-C pauses there), one event per frame.
    """
    for ch in channels:
        scope.channel.check_value(ch)
    for xy in fovs:
        scope.stage.check_value(xy)
    md = {
        "plan_name": "demo_timelapse",
        "num_points": len(fovs) * len(channels) * n_timepoints,
        "fovs": [list(map(float, xy)) for xy in fovs],
        "channels": [c.config for c in channels],
        "interval_s": interval_s,
    }

    @bpp.stage_decorator([scope.camera])
    @bpp.run_decorator(md=md)
    def inner() -> MsgGenerator[None]:
        t0 = time.monotonic()
        for t in range(n_timepoints):
            yield from bps.sleep(max(0.0, t0 + t * interval_s - time.monotonic()))
            for xy in fovs:
                yield from bps.checkpoint()
                yield from bps.mv(scope.stage, xy)
                for ch in channels:
                    yield from bps.mv(scope.channel, ch)
                    yield from bps.trigger_and_read([scope.camera, scope.stage, scope.channel])

    return (yield from inner())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``demo`` command."""
    parser.add_argument("--data-dir", type=Path, default=Path("faro-data"), help="zarr output")
    parser.add_argument("--fovs", type=int, default=3, help="number of fields of view")
    parser.add_argument("--timepoints", type=int, default=5, help="frames per FOV and channel")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between timepoints")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")


def run(args: argparse.Namespace, console: Console) -> int:
    """Run the demo and print where the data went."""
    RE = RunEngine(call_returns_result=True)
    scope = sim_microscope(args.seed, data_dir=args.data_dir)
    fovs = [(400.0 * i, 0.0) for i in range(args.fovs)]
    channels = [LightSetting("miRFP", 50, 100), LightSetting("ERKKTR", 80, 100)]
    resources: list[dict] = []
    RE.subscribe(lambda name, doc: resources.append(doc) if name == "stream_resource" else None)
    RE.subscribe(ProgressDisplay(console))
    console.print(
        f"[bold]faro-bluesky demo[/]: {args.fovs} FOVs x {len(channels)} channels x "
        f"{args.timepoints} timepoints every {args.interval:g} s on the simulated microscope"
    )
    t0 = time.monotonic()
    try:
        result = RE(timelapse(scope, fovs, channels, args.timepoints, args.interval))
    finally:
        scope.close()
    elapsed = time.monotonic() - t0

    table = Table(title="Where the data went", show_header=False)
    table.add_row("run uid", result.run_start_uids[0])
    table.add_row("exit status", result.exit_status)
    for res in resources:
        path = Path(res["uri"].removeprefix("file://localhost"))
        array = zarr.open_array(path, mode="r")
        table.add_row("zarr store", str(path.parent))
        table.add_row("array", f"{path.name}: shape {array.shape} {np.dtype(array.dtype)}")
    table.add_row("elapsed", f"{elapsed:.1f} s")
    console.print(table)
    console.print(
        "Open it with: [cyan]zarr.open_array(<zarr store>/camera)[/] "
        "(axes t, c, y, x; events in acquisition order)"
    )
    return 0 if result.exit_status == "success" else 1
