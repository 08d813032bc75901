"""Per-frame cost of acquisition, against the camera itself, in one process.

For each configuration (exposure, frame size, number of FOVs) the methods run in turn,
alternating, ``--repeats`` times, on the same simulated microscope:

- ``raw``: ``snapImage(); getImage()`` in a Python loop (every frame of a FOV, then the
  next, as an interval-0 schedule visits them);
- ``mda-seq`` / ``mda-event``: pymmcore-plus's MDA runner with and without hardware
  sequencing (one FOV: a camera sequence; events otherwise);
- ``plan``: ``optogenetic_plan`` without a catalog; ``plan+cat``: with the embedded
  catalog subscribed (the demo's and the shell's default).

Phases use ``interval=0`` ("as fast as possible"): with one FOV that is a burst through
one camera sequence. The two-channel row switches channels inside that sequence (the
sim's filter is sequenceable, as TTL-triggered light paths are); ``plan-step`` runs the
same phase on a sim whose filter is not (``sequenceable_filter=False``), so channels go
step by step, one snap and one preset per frame, as pymmcore-plus's ``mda-event`` does.
Prints ms per frame (median over
repeats), the ratio to ``raw`` and the machine load; ``--write`` puts the table into
``docs/benchmarks.md``. ``--lag`` measures schedule lag (scheduled start -> exposure
start) at 1 s interval; ``--memory N`` runs one N-frame run with the catalog and prints
the resident memory every 10 %.

Run: ``uv run python benchmarks/overhead.py [--quick] [--write]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import useq
from bluesky import RunEngine

from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog

DOC = Path(__file__).parents[1] / "docs" / "benchmarks.md"
MARK = "<!-- overhead.py -->"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def fov_list(n: int) -> list[tuple[float, float]]:
    """``n`` FOVs 400 µm apart on a square grid, snake order (every move one step)."""
    side = int(np.ceil(np.sqrt(n)))
    out = []
    for r in range(side):
        cols = range(side) if r % 2 == 0 else reversed(range(side))
        out += [(c * 400.0, r * 400.0) for c in cols]
    return out[:n]


class Bench:
    """One simulated microscope (and catalog) reused by every method of a configuration."""

    def __init__(self, shape: int, exposure: float, n_fovs: int, channels: list[str]):
        self.tmp = tempfile.mkdtemp(prefix="faro-overhead-")
        self.RE = RunEngine(context_managers=[], call_returns_result=True)
        self.catalog = Catalog.local(Path(self.tmp) / "catalog")
        self.scope = sim_microscope(
            seed=0, data_dir=self.catalog.data_dir, image_shape=(shape, shape)
        )
        self.core = self.scope.core
        self.exposure = exposure
        self.fovs = fov_list(n_fovs)
        self.channels = channels
        self.shape = shape
        self.step_scope = None

    def raw(self, n_timepoints: int) -> int:
        # the visiting order of an interval-0 schedule: every frame of a FOV, then the next
        core = self.core
        core.setExposure(self.exposure)
        frames = 0
        for x, y in self.fovs:
            core.setXYPosition(x, y)
            core.waitForDevice(core.getXYStageDevice())
            for _ in range(n_timepoints):
                for ch in self.channels:
                    if len(self.channels) > 1:
                        core.setConfig("Channel", ch)
                    core.snapImage()
                    core.getImage()
                    frames += 1
        return frames

    def mda(self, n_timepoints: int, sequenced: bool) -> int:
        core = self.core
        core.mda.engine.use_hardware_sequencing = sequenced
        seq = useq.MDASequence(
            time_plan={"interval": 0, "loops": n_timepoints},
            stage_positions=[(x, y) for x, y in self.fovs] if len(self.fovs) > 1 else (),
            channels=[{"config": c, "exposure": self.exposure} for c in self.channels],
            axis_order="ptc",  # the order of an interval-0 schedule
        )
        core.mda.run(seq)
        return n_timepoints * len(self.fovs) * len(self.channels)

    def plan(self, n_timepoints: int, catalog: bool, scope=None) -> int:
        sub = self.catalog.subscribe(self.RE) if catalog else None
        phase = Phase(
            "burst",
            interval=0,
            n_frames=n_timepoints,
            channels=[Channel(c, self.exposure) for c in self.channels],
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.RE(
                    optogenetic_plan(
                        self.fovs, [phase], microscope=scope or self.scope, analyzer=None
                    )
                )
        finally:
            if sub is not None:
                sub.unsubscribe()
        return n_timepoints * len(self.fovs) * len(self.channels)

    def plan_step(self, n_timepoints: int) -> int | None:
        """The plan on a sim whose channels cannot switch inside a camera sequence."""
        if len(self.channels) < 2:
            return None  # one channel: the same burst as ``plan``
        if self.step_scope is None:
            self.step_scope = sim_microscope(
                seed=0,
                data_dir=self.catalog.data_dir,
                image_shape=(self.shape, self.shape),
                sequenceable_filter=False,
                name="step",
            )
        return self.plan(n_timepoints, False, scope=self.step_scope)

    def close(self) -> None:
        self.scope.close()
        if self.step_scope is not None:
            self.step_scope.close()
        self.catalog.close()


METHODS = {
    "raw": lambda b, n: b.raw(n),
    "mda-seq": lambda b, n: b.mda(n, True),
    "mda-event": lambda b, n: b.mda(n, False),
    "plan": lambda b, n: b.plan(n, False),
    "plan+cat": lambda b, n: b.plan(n, True),
    "plan-step": lambda b, n: b.plan_step(n),
}


def measure(
    shape: int, exposure: float, n_fovs: int, channels: list[str], frames: int, repeats: int
) -> dict[str, float]:
    bench = Bench(shape, exposure, n_fovs, channels)
    n_t = max(2, frames // (n_fovs * len(channels)))
    for method in METHODS.values():  # warm up every path once
        method(bench, 2)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(repeats):
        for name, method in METHODS.items():
            gc.collect()
            t0 = time.perf_counter()
            n = method(bench, n_t)
            if n is not None:  # (a method that does not apply to this configuration)
                times[name].append((time.perf_counter() - t0) / n * 1000.0)
    bench.close()
    return {m: statistics.median(v) if v else float("nan") for m, v in times.items()}


def lag(interval: float = 1.0, n: int = 30, n_fovs: int = 1) -> list[float]:
    """Scheduled start -> exposure start of each visit's first frame (ms).

    Several FOVs are staggered (``time_per_fov``): each has its own slot in the interval,
    so its visit is due when the previous one has had time to finish.
    """
    tmp = tempfile.mkdtemp(prefix="faro-lag-")
    RE = RunEngine(context_managers=[], call_returns_result=True)
    scope = sim_microscope(seed=0, data_dir=tmp)
    starts: list[float] = []
    scope.camera.frames.frame_added.connect(lambda f: starts.append(f.metadata["exposure_start"]))
    scheduled: list[float] = []

    def cb(name, doc):
        data = doc.get("data", {})
        if name == "event" and data.get("visit-kind") == "image" and data["visit-c"] == 0:
            scheduled.append(data["visit-scheduled"])

    RE.subscribe(cb)
    phase = Phase("lag", interval=interval, n_frames=n, channels=[Channel("miRFP", 10)])
    tpf = interval / n_fovs if n_fovs > 1 else None
    RE(
        optogenetic_plan(
            fov_list(n_fovs), [phase], microscope=scope, analyzer=None, time_per_fov=tpf
        )
    )
    scope.close()
    firsts = starts[::1]  # one channel: every frame is a visit's first
    return [(s - d) * 1000.0 for s, d in zip(firsts, scheduled, strict=False)]


def memory(n: int) -> None:
    tmp = tempfile.mkdtemp(prefix="faro-mem-")
    RE = RunEngine(context_managers=[], call_returns_result=True)
    catalog = Catalog.local(Path(tmp) / "catalog")
    catalog.subscribe(RE)
    scope = sim_microscope(seed=0, data_dir=catalog.data_dir)
    marks: list[tuple[int, float, float]] = []

    def cb(name, doc):
        if name == "event" and doc["seq_num"] % max(1, n // 10) == 0:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            marks.append((doc["seq_num"], peak, resident_mb()))

    RE.subscribe(cb)
    phase = Phase("mem", interval=0, n_frames=n, channels=[Channel("miRFP", 5)])
    t0 = time.perf_counter()
    RE(optogenetic_plan([(0, 0)], [phase], microscope=scope, analyzer=None))
    dt = time.perf_counter() - t0
    scope.close()
    catalog.close()  # (its per-FOV views are built after the run: not at interpreter exit)
    shutil.rmtree(tmp, ignore_errors=True)  # ~2 GB for 10 000 frames
    print(f"memory over {n} frames with the catalog ({dt / n * 1000:.1f} ms/frame, {load()}):")
    for seq, peak, now in marks:
        print(f"  frame {seq:6d}: max RSS {peak:.0f} MB, RSS now {now:.0f} MB")
    if len(marks) > 4:
        half = marks[len(marks) // 2]
        per_k = (marks[-1][1] - half[1]) / max(1, marks[-1][0] - half[0]) * 1000
        print(f"  max RSS over the second half: {per_k:+.1f} MB per 1000 frames")


def resident_mb() -> float:
    """The process's resident memory now (Linux; NaN elsewhere): the peak hides a fall."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="512² only, 10 ms, fewer frames")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write the table to docs")
    ap.add_argument("--lag", action="store_true")
    ap.add_argument("--memory", type=int, default=0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    args = ap.parse_args()
    if args.memory:
        memory(args.memory)
        return
    if args.lag:
        for n_fovs in (1, 4):
            lags = np.asarray(lag(n_fovs=n_fovs))
            print(
                f"lag {n_fovs} FOV(s), 1 s interval: p50 {np.percentile(lags, 50):.1f} "
                f"p99 {np.percentile(lags, 99):.1f} max {lags.max():.1f} ms ({load()})"
            )
        return
    configs = []
    sizes = (512,) if args.quick else tuple(args.sizes)
    exposures = (10.0,) if args.quick else (5.0, 10.0, 50.0)
    for shape in sizes:
        for exposure in exposures:
            for n_fovs in (1, 4):
                configs.append((shape, exposure, n_fovs, ["miRFP"]))
    configs.append((512, 10.0, 1, ["miRFP", "ERKKTR"]))
    rows = []
    header = "| frame | exposure | FOVs | channels | " + " | ".join(METHODS) + " | load |"
    print(header)
    for shape, exposure, n_fovs, channels in configs:
        frames = args.frames if shape <= 512 else max(20, args.frames // 4)
        res = measure(shape, exposure, n_fovs, channels, frames, args.repeats)
        raw = res["raw"]
        cells = [f"{res['raw']:.1f} ms"] + [
            f"{res[m]:.1f} ({res[m] / raw:.2f}×)" if res[m] == res[m] else "—"
            for m in METHODS
            if m != "raw"
        ]
        row = (
            f"| {shape}² | {exposure:g} ms | {n_fovs} | {len(channels)} | "
            + " | ".join(cells)
            + f" | {os.getloadavg()[0]:.2f} |"
        )
        print(row, flush=True)
        rows.append(row)
    if args.write:
        table = "\n".join([header, "|" + "---|" * (len(METHODS) + 5), *rows])
        text = DOC.read_text()
        start, end = text.find(MARK), text.rfind(MARK)
        if start < 0 or start == end:
            raise SystemExit(f"{DOC} has no {MARK} ... {MARK} section")
        DOC.write_text(text[: start + len(MARK)] + "\n" + table + "\n" + text[end:])
        print(f"written to {DOC}")


if __name__ == "__main__":
    main()
