"""Per-frame cost of each closed-loop component on simulated 512x512 frames.

Snaps ``--fovs`` FOVs x ``--timepoints`` timepoints (miRFP + ERKKTR, 20 ms each) on the
simulated microscope (sample 100x faster than the clock, so cells move between timepoints),
then times, frame by frame in acquisition order, what the analyzer does per frame:
segmentation, the feature extractors, one tracker step, each stimulator (given this frame's
tracked cells, as the analyzer gives them to a stimulator without `Need.HISTORY`) and the
DMD warp of the ``FractionOfCells`` mask. Prints mean and p95 per component next to the
figures measured before issue 11 (``BEFORE``), the sum of what a ``FractionOfCells`` mask
waits for (before: with the ERK-KTR features; now: positions only; in a closed loop the
segmentation also overlaps the visit's second exposure, see closed_loop_latency.py), and the
machine load: other work on the 2 shared cores inflates the figures. Asserts nothing (the
target, ≤ 2-3 ms per component but segmentation, is read by people).

Run: ``uv run python benchmarks/component_speed.py [--fovs 3] [--timepoints 10] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable

import bluesky.plan_stubs as bps
import numpy as np
from bluesky import RunEngine

from faro_bluesky.analysis import FrameInfo
from faro_bluesky.analysis.components import (
    CenterCircle,
    ErkKtrFeatures,
    FractionOfCells,
    MovingLine,
    NearestNeighbourTracker,
    NoLight,
    OtsuSegmenter,
    PercentageOfCell,
    SimpleFeatures,
    TopEdge,
)
from faro_bluesky.analysis.components._features import positions
from faro_bluesky.devices import LightSetting, Microscope
from faro_bluesky.sim import sim_microscope

CHANNELS = ("miRFP", "ERKKTR")
SPACING_UM = 700.0  # > the field of view (512 px * 0.65 um): no cell is seen twice

#: mean / p95 ms per component at 512², measured with this script on the 2-core development
#: machine on the code before issue 11 (2026-12-01, load average 1.2), for comparison
BEFORE: dict[str, tuple[float, float]] = {
    "segmentation (Otsu)": (11.76, 13.31),
    "positions (no features)": (1.02, 1.29),
    "SimpleFeatures": (2.04, 2.29),
    "ErkKtrFeatures": (14.90, 16.62),
    "tracker step (NN)": (2.30, 2.59),
    "stim FractionOfCells(0.5)": (11.55, 12.74),
    "stim PercentageOfCell": (14.81, 16.46),
    "stim TopEdge": (8.99, 9.47),
    "stim CenterCircle": (0.40, 0.54),
    "stim MovingLine": (0.03, 0.05),
    "stim NoLight": (0.01, 0.03),
    "DMD warp (to_dmd)": (6.15, 6.43),
}

STIMULATORS = {
    "stim FractionOfCells(0.5)": FractionOfCells(0.5),
    "stim PercentageOfCell": PercentageOfCell(),
    "stim TopEdge": TopEdge(),
    "stim CenterCircle": CenterCircle(),
    "stim MovingLine": MovingLine(stripe_width_px=40, frames_per_loop=10),
    "stim NoLight": NoLight(),
}


def snap_stacks(scope: Microscope, RE: RunEngine, n_fovs: int, timepoints: int) -> list[tuple]:
    """``(fov, t, (2, Y, X) uint16 stack)`` per visit, FOVs visited in turn each timepoint."""
    out = []
    for t in range(timepoints):
        for fov in range(n_fovs):
            RE(bps.mv(scope.stage, (fov * SPACING_UM, 0.0)))
            planes = []
            for channel in CHANNELS:
                RE(bps.mv(scope.channel, LightSetting(channel, exposure=20)))
                scope.core.snapImage()
                planes.append(np.array(scope.core.getImage()))
            out.append((fov, t, np.stack(planes)))
    return out


def timed(times: dict[str, list[float]], name: str, repeats: int, call: Callable, *args):
    """Run ``call(*args)`` ``repeats`` times, record each duration (ms) under ``name``."""
    for _ in range(repeats):
        start = time.perf_counter()
        result = call(*args)
        times[name].append(1000.0 * (time.perf_counter() - start))
    return result


def run(scope: Microscope, stacks: list[tuple], repeats: int) -> dict[str, list[float]]:
    """Time every component on every stack, in acquisition order (the tracker is stateful).

    Stimulators get this frame's tracked rows, as the analyzer gives them to a stimulator
    that does not declare `Need.HISTORY` (all of these).
    """
    seg, erk, simple = OtsuSegmenter(channel="miRFP"), ErkKtrFeatures(), SimpleFeatures(1)
    tracker = NearestNeighbourTracker()
    times: dict[str, list[float]] = defaultdict(list)
    shape = stacks[0][2].shape[1:]
    for fov, t, stack in stacks:
        info = FrameInfo(
            fov=fov, t=t, frame=t, channels=CHANNELS, shape=shape, stim=True,
            metadata={"stim_fraction": 0.3},
        )  # fmt: skip
        labels = timed(times, "segmentation (Otsu)", repeats, seg.segment, stack[0])
        timed(times, "positions (no features)", repeats, positions, labels)
        timed(times, "SimpleFeatures", repeats, simple.extract, labels, stack, info)
        cells, _ = timed(times, "ErkKtrFeatures", repeats, erk.extract, labels, stack, info)
        tracked = timed(times, "tracker step (NN)", 1, tracker.track, fov, t, cells)
        tracks = tracked.assign(t=t)
        masks = {
            name: timed(times, name, repeats, stim.mask, labels, tracks, stack, info)
            for name, stim in STIMULATORS.items()
        }
        lit = masks["stim FractionOfCells(0.5)"]
        timed(times, "DMD warp (to_dmd)", repeats, scope.dmd.to_dmd, lit)
    return times


#: the components a FractionOfCells mask waits for: before issue 11 all features were
#: measured before the mask; now only positions are (the stimulator needs no features)
PATH_NOW = ("segmentation (Otsu)", "positions (no features)", "tracker step (NN)")
PATH_BEFORE = ("segmentation (Otsu)", "ErkKtrFeatures", "tracker step (NN)")
PATH_END = ("stim FractionOfCells(0.5)", "DMD warp (to_dmd)")


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fovs", type=int, default=3)
    parser.add_argument("--timepoints", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    RE = RunEngine(context_managers=[])
    with tempfile.TemporaryDirectory() as tmp:
        scope = sim_microscope(seed=0, data_dir=tmp, dmd_calibrated=True, time_scale=100.0)
        try:
            stacks = snap_stacks(scope, RE, args.fovs, args.timepoints)
            run(scope, stacks[:2], 1)  # warm up (imports, caches)
            load = os.getloadavg()
            times = run(scope, stacks, args.repeats)
            load_after = os.getloadavg()
        finally:
            scope.close()
    n_cells = statistics.mean(
        int(OtsuSegmenter().segment(s[2][0]).max()) for s in stacks[: args.fovs]
    )
    print(
        f"512x512, {len(stacks)} frames ({args.fovs} FOVs x {args.timepoints} timepoints), "
        f"~{n_cells:.0f} cells/frame, {args.repeats} repeats; load average "
        f"{load[0]:.2f} before, {load_after[0]:.2f} after (1 min)"
    )
    print(f"{'component':<28} {'mean ms':>8} {'p95 ms':>8}   {'before mean / p95':>18}")
    for name, values in times.items():
        before = BEFORE.get(name)
        was = f"{before[0]:7.2f} / {before[1]:6.2f}" if before else ""
        p95 = float(np.percentile(values, 95))
        print(f"{name:<28} {statistics.mean(values):8.2f} {p95:8.2f}   {was:>18}")
    now = sum(statistics.mean(times[name]) for name in PATH_NOW + PATH_END)
    was = sum(BEFORE[name][0] for name in PATH_BEFORE + PATH_END)
    print(f"{'mask path (sum of means)':<28} {now:8.2f} {'':>8}   {was:7.2f}")


if __name__ == "__main__":
    main()
