"""Closed-loop latency and schedule lag of `optogenetic_plan` with the `Analyzer`.

Everything is measured from the run's documents (`faro_bluesky.storage.run_timing`), as a
user would measure a stored run: each frame's exposure start/end (``camera-timing``), the
visit's scheduled start, the mask event (its timestamp: the plan has the mask; its
``mask-pixels_at``, ``mask-labels_at`` and ``mask-compute_ms``, which the analyzer hands
over with the mask) and the DMD reading's timestamp (pattern shown). Prints, per stage,
p50/p95/p99/max and the machine's load average (before -> after the run):

- lag: scheduled start -> the visit's first exposure starts;
- pixels: the source frame's (the visit's last imaging frame's) exposure end -> the analyzer
  has the visit's pixels from the camera's memory (readout, the frame's event, the
  analyzer's intake);
- labels: -> the stimulator's inputs are ready: segmentation done (it may have started with
  the first plane, during the second exposure) and, for a stimulator that needs them, the
  cells tracked;
- mask: -> the plan has the mask (the stimulator, the hand-off to the RunEngine's loop);
- dmd: -> the pattern is shown on the DMD;
- stim: -> the stimulation exposure starts;
- total: exposure end -> stim exposure start (the sum of the five above);
- pixels_to_mask: exposure end -> the plan has the mask (pixels + labels + mask);
- compute: the analysis components' compute in that span (segmentation after the last
  exposure ended, positions, tracking, the stimulator), from the mask events;
- framework: total minus compute: what the plan, devices, documents and hand-offs cost.

Whole-field runs have no analyzer: pixels, labels, mask, compute and framework are n/a.

Configuration (issue "Closed loop in 30 ms"): 512x512, current mode, 2 imaging channels of
20 ms (miRFP, ERKKTR), 50 ms stimulation on every frame, Otsu + ERK-KTR + nearest-neighbour
tracking + ``FractionOfCells(0.5)``, 1 s interval; 1 FOV and 4 FOVs staggered
(``time_per_fov=0.25``). ``--whole-field`` runs without analysis (whole-field light).
FOVs sit on a square grid 400 µm apart (one field of view), visited in a snake order.
``--throughput`` runs visits back to back for 4, 16 and 64 FOVs
and compares visits/s with the physical limit (stage travel + exposures per visit).

Run: ``uv run python benchmarks/closed_loop_latency.py [--timepoints N] [--whole-field]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pandas as pd
from bluesky import RunEngine
from overhead import fov_list  # the same snake grid (benchmarks/ is on sys.path)

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import ErkKtrFeatures, FractionOfCells, OtsuSegmenter
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import LATENCY_STAGES, events_table, run_timing

IMAGING = [Channel("miRFP", 20), Channel("ERKKTR", 20)]
STIM = [Channel("Cyan", 50, power=20)]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def percentiles(values: pd.Series | list[float]) -> str:
    a = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy()
    if not len(a):
        return "n/a"
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return f"p50 {p50:6.1f}  p95 {p95:6.1f}  p99 {p99:6.1f}  max {a.max():6.1f} ms  (n={len(a)})"


def analyzer() -> Analyzer:
    return Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"),
        features=ErkKtrFeatures(channel="ERKKTR"),
        stimulator=FractionOfCells(0.5),
    )


class StreamEvents:
    """A RunEngine callback keeping the events of streams ``primary`` and ``mask``."""

    def __init__(self) -> None:
        self.streams: dict[str, str] = {}
        self.events: dict[str, list[dict]] = {"primary": [], "mask": []}

    def __call__(self, name: str, doc: dict) -> None:
        if name == "descriptor":
            self.streams[doc["uid"]] = doc["name"]
        elif name == "event" and self.streams.get(doc["descriptor"]) in self.events:
            self.events[self.streams[doc["descriptor"]]].append(doc)

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The primary and mask events as tables (`events_table`)."""
        return events_table(self.events["primary"]), events_table(self.events["mask"])


def stim_phase(timepoints: int, interval: float = 1.0) -> Phase:
    """The issue's configuration: 2 imaging channels, stimulation at every timepoint."""
    return Phase(
        "stim",
        interval=interval,
        n_frames=timepoints,
        channels=IMAGING,
        stim_channels=STIM,
        stim_frames=range(timepoints),
    )


def run(n_fovs: int, timepoints: int, *, whole_field: bool, interval: float = 1.0):
    """One experiment; its primary and mask event tables, and the analyzer (or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        RE = RunEngine(context_managers=[], call_returns_result=True)
        scope = sim_microscope(seed=0, data_dir=tmp, dmd_calibrated=True)
        collected = StreamEvents()
        RE.subscribe(collected)
        an = None if whole_field else analyzer()
        phase = stim_phase(timepoints, interval)
        fovs = fov_list(n_fovs)
        tpf = interval / n_fovs if n_fovs > 1 and interval > 0 else None
        t0 = time.perf_counter()
        RE(optogenetic_plan(fovs, [phase], microscope=scope, analyzer=an, time_per_fov=tpf))
        elapsed = time.perf_counter() - t0
        if an is not None:
            an.close()
        scope.close()
    return (*collected.tables(), an, elapsed)


def latency(n_fovs: int, timepoints: int, whole_field: bool) -> None:
    """Print lag and every latency stage of one run, all from its documents."""
    before = load()
    primary, masks, _, _ = run(n_fovs, timepoints, whole_field=whole_field)
    timing = run_timing(primary, masks)
    lat = timing.latency
    label = "whole field" if whole_field else "closed loop"
    print(f"{label}, {n_fovs} FOV(s), {timepoints} timepoints ({before} -> {load()})")
    print(f"  {'lag':<15} {percentiles(timing.lag['lag_ms'])}")
    for stage in LATENCY_STAGES:
        print(f"  {stage:<15} {percentiles(lat[stage])}")


def throughput(n_fovs: int, min_visits: int = 40) -> None:
    """Visits/s back to back (interval 0) against the physical limit of the same visits.

    At least ``min_visits`` visits (whole timepoints). Timed from the documents: the first
    exposure's start to the last exposure's end. The physical limit of those visits is
    their exposures plus the stage's travel between consecutive visits in the order they
    ran (an interval-0 phase visits each FOV's timepoints back to back, so the stage moves
    once per FOV, not once per visit).
    """
    speed = 5000.0  # µm/s, the sim stage (SimOptions.stage_speed_um_s)
    per_visit = (sum(c.exposure for c in IMAGING) + sum(c.exposure for c in STIM)) / 1000
    timepoints = max(2, -(-min_visits // n_fovs))
    primary, _, _, _ = run(n_fovs, timepoints, whole_field=False, interval=0.0)
    first = primary.groupby(["visit-t", "visit-p"], sort=False).first()
    first = first.sort_values("camera-timing-start")
    xy = first[["stage-x", "stage-y"]].to_numpy(float)
    travel = float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum()) / speed
    visits = len(first)
    actual = primary["camera-timing-end"].max() - primary["camera-timing-start"].min()
    physical = visits * per_visit + travel
    print(
        f"throughput {n_fovs:3d} FOVs x {timepoints} timepoints: {visits / actual:5.2f} "
        f"visits/s, physical limit {visits / physical:5.2f} ({physical / actual:.2f} of it; "
        f"{travel:.2f} s of travel; {load()})"
    )


def drift(minutes: float) -> None:
    """Issue 11 point 5 for ``minutes``: 4 FOVs, lag p99 and its trend over the run."""
    timepoints = max(2, round(minutes * 60))
    primary, masks, _, _ = run(4, timepoints, whole_field=False)
    lag = run_timing(primary, masks).lag
    first = lag.groupby("t")["lag_ms"].median()
    slope = np.polyfit(first.index.to_numpy(float), first.to_numpy(), 1)[0] if len(first) > 2 else 0
    half = len(first) // 2
    print(f"4 FOVs, {timepoints} timepoints at 1 s ({load()})")
    print(f"  lag             {percentiles(lag['lag_ms'])}")
    print(
        f"  drift: lag median first half {first.iloc[:half].median():.2f} ms, second half "
        f"{first.iloc[half:].median():.2f} ms, slope {slope * 60:+.3f} ms per minute"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timepoints", type=int, default=20)
    parser.add_argument("--whole-field", action="store_true")
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--minutes", type=float, help="one 4-FOV run this long: lag drift")
    args = parser.parse_args()
    if args.minutes:
        drift(args.minutes)
        return
    if args.throughput:
        for n in (4, 16, 64):
            throughput(n)
        return
    for n in (1, 4):
        latency(n, args.timepoints, args.whole_field)


if __name__ == "__main__":
    main()
