"""Round trip of one segmentation job: in-process thread vs a `distributed` worker process.

What a remote segmenter adds to the mask latency is the job's round trip minus its
computation. For a simulated 512x512 uint16 miRFP frame and the analyzer's own
early-segmentation job (`faro_bluesky.analysis._jobs.segment` with `OtsuSegmenter`), timed
inside the job as well, this measures the round trip (submit → result in the caller) and its
overhead (round trip − the job's own computation) when the job runs:

- ``thread``: on a one-thread `ThreadPoolExecutor` (the analyzer's default pool);
- ``cluster``: through `ClusterExecutor` on a `LocalCluster` with one worker process on
  loopback (the frame goes client → scheduler → worker and the labels back the same way:
  distributed's default outside a worker);
- ``cluster-direct``: the same, the client fetching results straight from the worker
  (``Client(direct_to_workers=True)``).

Methods alternate job by job, so a change in machine load hits them all alike; the load
average is printed before and after. Also prints the pickled sizes of what crosses the
network per job and, as estimates, what sending them over 1 GbE and 10 GbE adds.

Run: ``uv run python benchmarks/cluster_latency.py [--jobs 200] [--fovs 8]``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
from concurrent.futures import Executor, ThreadPoolExecutor

import bluesky.plan_stubs as bps
import numpy as np
from bluesky import RunEngine

from faro_bluesky.analysis import ClusterExecutor
from faro_bluesky.analysis._jobs import segment
from faro_bluesky.analysis.components import OtsuSegmenter
from faro_bluesky.devices import LightSetting
from faro_bluesky.sim import sim_microscope

SIZE = 512
SPACING_UM = 700.0  # > the field of view: different cells in every frame
#: usable TCP throughput (bytes/s) of a link, for the estimates: ~94 % of the line rate
LINKS = {"1 GbE": 0.94e9 / 8, "10 GbE": 9.4e9 / 8}
LAN_RTT_S = 0.2e-3  # a typical switched-LAN round trip, for the estimates


def snap_frames(n: int, data_dir: str) -> list[np.ndarray]:
    """``n`` simulated miRFP frames (uint16, SIZE x SIZE), each of other cells."""
    RE = RunEngine(context_managers=[])
    scope = sim_microscope(seed=0, data_dir=data_dir, image_shape=(SIZE, SIZE))
    try:
        RE(bps.mv(scope.channel, LightSetting("miRFP", exposure=20)))
        frames = []
        for i in range(n):
            RE(bps.mv(scope.stage, (i * SPACING_UM, 0.0)))
            scope.core.snapImage()
            frames.append(np.array(scope.core.getImage()))
        return frames
    finally:
        scope.close()


def timed_segment(seg: OtsuSegmenter, frame: np.ndarray) -> tuple[np.ndarray, float]:
    """The analyzer's segmentation job, and how long it computed (ms, where it ran)."""
    start = time.perf_counter()
    labels = segment(seg, frame)
    return labels, 1000.0 * (time.perf_counter() - start)


def round_trip(executor: Executor, seg: OtsuSegmenter, frame: np.ndarray) -> tuple[float, float]:
    """(round trip, computation) in ms of one job: submitted → its result in the caller."""
    start = time.perf_counter()
    _, compute_ms = executor.submit(timed_segment, seg, frame).result()
    return 1000.0 * (time.perf_counter() - start), compute_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200, help="jobs per method")
    parser.add_argument("--fovs", type=int, default=8, help="distinct frames")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    load_before = os.getloadavg()
    seg = OtsuSegmenter()
    with tempfile.TemporaryDirectory() as tmp:
        frames = snap_frames(args.fovs, tmp)
    labels = segment(seg, frames[0])
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},  # its HTTP server: any free port
            preload=["faro_bluesky.analysis"],
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
        Client(cluster, set_as_default=False, direct_to_workers=True) as direct,
        ThreadPoolExecutor(1) as threads,
    ):
        methods: dict[str, Executor] = {
            "thread": threads,
            "cluster": ClusterExecutor(client),
            "cluster-direct": ClusterExecutor(direct),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
        for i in range(args.jobs + 5):  # the first 5 warm up (imports, caches, connections)
            frame = frames[i % len(frames)]
            for name, executor in methods.items():
                timing = round_trip(executor, seg, frame)
                if i >= 5:
                    times[name].append(timing)
    load_after = os.getloadavg()

    print(
        f"one segmentation job, {SIZE}x{SIZE} uint16 frame, OtsuSegmenter, {args.jobs} jobs "
        f"per method over {args.fovs} frames (measured)"
    )
    print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"({os.cpu_count()} cores)"
    )
    print(
        f"{'method':>15} {'round trip p50/p95 ms':>22} {'compute p50':>12} "
        f"{'overhead p50/p95 ms':>20}"
    )
    for name, timings in times.items():
        trips = np.array([trip for trip, _ in timings])
        computes = np.array([compute for _, compute in timings])
        overheads = trips - computes
        print(
            f"{name:>15} {np.percentile(trips, 50):11.2f} /{np.percentile(trips, 95):7.2f}"
            f" {np.median(computes):12.2f} {np.percentile(overheads, 50):10.2f} /"
            f"{np.percentile(overheads, 95):7.2f}"
        )

    out = len(pickle.dumps(frames[0], protocol=5)) + len(pickle.dumps(seg, protocol=5))
    back = len(pickle.dumps(labels, protocol=5))
    print(
        f"\ncrosses the network per job (measured, pickled): frame + segmenter "
        f"{out / 1e6:.2f} MB out, labels {back / 1e6:.2f} MB back ({labels.dtype})"
    )
    for link, rate in LINKS.items():
        one_way = out / rate * 1000
        both = (out + back) / rate * 1000
        print(
            f"estimate, {link}: frame {one_way:.1f} ms, frame + labels {both:.1f} ms, "
            f"+ ~{2 * LAN_RTT_S * 1000:.1f} ms for two LAN round trips"
        )


if __name__ == "__main__":
    main()
