"""Per-frame cost of the embedded catalog: no catalog, thread writer, process writer.

One simulated microscope, one FOV, one channel, ``--exposure`` ms, a burst of
``--frames`` frames (interval 0: one camera sequence), run ``--repeats`` times per method,
the methods alternating so that the machine's load hits them alike:

- ``plan``: no catalog;
- ``thread``: the embedded catalog written by a thread of this process (`CatalogWriter`);
- ``process``: written by a writer process (`ProcessCatalogWriter`, decision 0059).

Each run subscribes and unsubscribes (as ``benchmarks/overhead.py`` does), the writer
process being warm (started once before the first measured run). Prints the median wall
time per frame (``RE(plan)`` until it returns, i.e. including the stop's wait for the
catalog), its ratio to ``plan``, the CPU time this process spent per frame (all its
threads) and the load average.

Run: ``uv run python benchmarks/catalog_writer_process.py [--frames 400] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from bluesky import RunEngine

from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog

METHODS = ("plan", "thread", "process")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--exposure", type=float, default=10.0)
    ap.add_argument("--shape", type=int, default=512)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="faro-writer-process-"))
    RE = RunEngine(context_managers=[], call_returns_result=True)
    catalog = Catalog.local(tmp / "catalog")
    scope = sim_microscope(seed=0, data_dir=catalog.data_dir, image_shape=(args.shape, args.shape))

    def run(method: str, n: int) -> tuple[float, float]:
        sub = None if method == "plan" else catalog.subscribe(RE, process=method == "process")
        if sub is not None and method == "process":
            sub.recorder.writer.wait_ready(120)  # as a session's writer is by its 1st run
        phase = Phase("burst", interval=0, n_frames=n, channels=[Channel("miRFP", args.exposure)])
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                RE(optogenetic_plan([(0, 0)], [phase], microscope=scope, analyzer=None))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            if sub is not None:
                sub.unsubscribe()
        return wall / n * 1000.0, cpu / n * 1000.0

    for method in METHODS:  # warm every path (and start the writer process) once
        run(method, 5)
    walls: dict[str, list[float]] = {m: [] for m in METHODS}
    cpus: dict[str, list[float]] = {m: [] for m in METHODS}
    loads = []
    for _ in range(args.repeats):
        for method in METHODS:
            wall, cpu = run(method, args.frames)
            walls[method].append(wall)
            cpus[method].append(cpu)
        loads.append(os.getloadavg()[0])
    scope.close()
    catalog.close()
    base = statistics.median(walls["plan"])
    print(
        f"{args.frames} frames {args.shape}² at {args.exposure:g} ms, 1 FOV, "
        f"{args.repeats} repeats, load {min(loads):.2f}-{max(loads):.2f}"
    )
    for method in METHODS:
        wall = statistics.median(walls[method])
        print(
            f"  {method:8s} {wall:6.2f} ms/frame ({wall / base:.2f}x plan; "
            f"runs {min(walls[method]):.2f}-{max(walls[method]):.2f}), "
            f"CPU here {statistics.median(cpus[method]):.2f} ms/frame"
        )


if __name__ == "__main__":
    main()
