"""Closed-loop latency and scheduling lag of `optogenetic_plan` with the `Analyzer`.

Prints, for 1 and 4 FOVs at a 1 s interval on the simulated 512x512 microscope in
``"current"`` mode (Otsu segmentation, ERK-KTR features, tracking, half the cells lit):

- closed-loop latency: end of the visit's last imaging exposure -> its mask shown on the DMD;
- of which analysis: the visit's stack complete -> its mask published (`VisitSummary.mask_ms`);
- scheduling lag: first frame's exposure start - the visit's scheduled start.

Run: ``uv run python benchmarks/closed_loop_latency.py [--timepoints N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile

import numpy as np
from bluesky import RunEngine

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import ErkKtrFeatures, FractionOfCells, OtsuSegmenter
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope


def percentiles(values: list[float]) -> str:
    """p50 / p95 / max of ``values`` in ms."""
    a = np.asarray(values) * 1000.0
    return (
        f"p50 {np.percentile(a, 50):7.1f}  p95 {np.percentile(a, 95):7.1f}  max {a.max():7.1f} ms"
    )


def measure(
    n_fovs: int, timepoints: int, data_dir: str
) -> tuple[list[float], list[float], list[float]]:
    """Run one experiment; return (closed-loop latencies, scheduling lags, mask times) in s."""
    RE = RunEngine(context_managers=[], call_returns_result=True)
    scope = sim_microscope(seed=0, data_dir=data_dir, dmd_calibrated=True)
    frames: dict[tuple[str, int], float] = {}  # (uri, index) -> exposure end (epoch s)
    scope.camera.frames.frame_added.connect(
        lambda f: frames.__setitem__((f.uri, f.index), f.timestamp)
    )
    shown: list[float] = []  # DMD pattern shown (epoch s), lit patterns only

    def on_dmd(readings) -> None:
        (reading,) = readings.values()
        if reading["value"] > 0:
            shown.append(reading["timestamp"])

    async def watch_dmd() -> None:  # signals subscribe on the RunEngine's loop
        scope.dmd.fraction.subscribe(on_dmd)

    asyncio.run_coroutine_threadsafe(watch_dmd(), RE.loop).result()
    visits: list[dict] = []
    streams: dict[str, str] = {}
    datums: dict[tuple[str, int], tuple[str, int]] = {}
    resources: dict[str, str] = {}

    def cb(name, doc):
        if name == "descriptor":
            streams[doc["uid"]] = doc["name"]
        elif name == "stream_resource":
            resources[doc["uid"]] = doc["uri"]
        elif name == "stream_datum":
            datums[(doc["descriptor"], doc["seq_nums"]["start"])] = (
                resources[doc["stream_resource"]],
                doc["indices"]["start"],
            )
        elif name == "event" and streams.get(doc["descriptor"]) == "primary":
            d = doc["data"]
            loc = datums[(doc["descriptor"], doc["seq_num"])]
            visits.append(
                {
                    **{k: d[k] for k in d if k.startswith("visit-")},
                    "loc": loc,
                    "exposure": d.get("channel-exposure", 0.0),
                }
            )

    analyzer = Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"),
        features=ErkKtrFeatures(channel="ERKKTR"),
        stimulator=FractionOfCells(0.5),
    )
    fovs = [(400.0 * i, 0.0) for i in range(n_fovs)]
    phase = Phase(
        "stim",
        interval=1.0,
        n_frames=timepoints,
        channels=[Channel("miRFP", 20), Channel("ERKKTR", 20)],
        stim_channels=[Channel("Cyan", 50, power=20)],
        stim_frames=range(timepoints),
    )
    RE.subscribe(cb)
    RE(optogenetic_plan(fovs, [phase], microscope=scope, analyzer=analyzer))
    analyzer.close()
    mask_times = [s.mask_ms / 1000.0 for s in analyzer.summaries if s.mask_ms == s.mask_ms]
    scope.close()

    latencies, lags = [], []
    by_visit: dict[tuple[int, int], list[dict]] = {}
    for v in visits:
        by_visit.setdefault((v["visit-p"], v["visit-t"]), []).append(v)
    shown_sorted = sorted(shown)
    for frames_of_visit in by_visit.values():
        images = [v for v in frames_of_visit if v["visit-kind"] == "image"]
        first, last = images[0], images[-1]
        start = frames[first["loc"]] - first["exposure"] / 1000.0
        lags.append(start - first["visit-scheduled"])
        end = frames[last["loc"]]
        after = [s for s in shown_sorted if s >= end]
        if after:
            latencies.append(after[0] - end)
    return latencies, lags, mask_times


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timepoints", type=int, default=10)
    args = parser.parse_args()
    print(f"closed loop, current mode, 512x512, interval 1 s, {args.timepoints} timepoints")
    for n in (1, 4):
        with tempfile.TemporaryDirectory() as tmp:
            latencies, lags, mask_times = measure(n, args.timepoints, tmp)
        print(f"{n} FOV(s)  latency exposure end -> DMD  {percentiles(latencies)}")
        print(f"{n} FOV(s)   of which stack -> mask out  {percentiles(mask_times)}")
        print(f"{n} FOV(s)  scheduling lag              {percentiles(lags)}")


if __name__ == "__main__":
    main()
