"""Simulated camera snap time vs exposure, and per-frame cost of bp.count vs a raw snap loop.

Run: ``uv run python benchmarks/camera_overhead.py [--frames N] [--size 512]``.
Prints figures; asserts nothing (targets are read by people, see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import bluesky.plan_stubs as bps
import bluesky.plans as bp
from bluesky import RunEngine

from faro_bluesky.devices import LightSetting
from faro_bluesky.sim import sim_microscope


def snap_times(core, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        core.snapImage()
        core.getImage()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    RE = RunEngine(context_managers=[])
    with tempfile.TemporaryDirectory() as tmp:
        scope = sim_microscope(data_dir=tmp, image_shape=(args.size, args.size))
        RE(bps.mv(scope.channel, LightSetting("miRFP", 10)))
        core = scope.core
        print(f"simulated camera {args.size}x{args.size} uint16, {args.frames} frames each")
        print("\nsnap time vs exposure (raw core.snapImage + getImage)")
        print(f"{'exposure ms':>12} {'mean ms':>9} {'p95 ms':>9} {'overhead ms':>12}")
        for exposure in (5.0, 10.0, 50.0):
            core.setExposure(exposure)
            snap_times(core, 3)  # warm up
            t = [1000 * x for x in snap_times(core, args.frames)]
            mean = statistics.mean(t)
            p95 = sorted(t)[int(0.95 * (len(t) - 1))]
            print(f"{exposure:12.1f} {mean:9.2f} {p95:9.2f} {mean - exposure:12.2f}")

        print("\nper-frame cost at 10 ms exposure")
        core.setExposure(10.0)
        raw = statistics.mean(snap_times(core, args.frames)) * 1000
        RE(bp.count([scope.camera], num=3))  # warm up
        t = time.perf_counter()
        RE(bp.count([scope.camera], num=args.frames))
        count = (time.perf_counter() - t) / args.frames * 1000
        print(f"{'raw snapImage loop':>28}: {raw:7.2f} ms/frame")
        print(f"{'bp.count([camera]) (zarr)':>28}: {count:7.2f} ms/frame")
        print(f"{'bluesky + zarr overhead':>28}: {count - raw:7.2f} ms/frame")
        scope.close()


if __name__ == "__main__":
    main()
