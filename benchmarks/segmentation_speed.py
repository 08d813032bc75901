"""Time of `OtsuSegmenter.segment` on simulated nuclear-marker frames (miRFP, 20 ms).

For each image size, snaps one miRFP frame at each of ``--fovs`` stage positions of the
simulated microscope (different cells in every frame), then times the default segmenter on
each frame ``--repeats`` times and prints mean and p95 over all timings, with the number of
cells found. Asserts nothing (the target, ≤ 25 ms at 512², is read by people).

Run: ``uv run python benchmarks/segmentation_speed.py [--fovs 20] [--repeats 3] [--sizes 256 512]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import bluesky.plan_stubs as bps
import numpy as np
from bluesky import RunEngine

from faro_bluesky.analysis.components import OtsuSegmenter
from faro_bluesky.devices import LightSetting
from faro_bluesky.sim import sim_microscope

SPACING_UM = 700.0  # > the field of view (512 px * 0.65 um): no cell is seen twice


def snap_frames(size: int, n_fovs: int, data_dir: str) -> list[np.ndarray]:
    """One miRFP frame (uint16, size x size) at each of ``n_fovs`` stage positions."""
    RE = RunEngine(context_managers=[])
    scope = sim_microscope(seed=0, data_dir=data_dir, image_shape=(size, size))
    try:
        RE(bps.mv(scope.channel, LightSetting("miRFP", exposure=20)))
        side = int(np.ceil(np.sqrt(n_fovs)))
        frames = []
        for i in range(n_fovs):
            row, col = divmod(i, side)
            x = (col - side / 2) * SPACING_UM
            y = (row - side / 2) * SPACING_UM
            RE(bps.mv(scope.stage, (x, y)))
            scope.core.snapImage()
            frames.append(np.array(scope.core.getImage()))
        return frames
    finally:
        scope.close()


def time_segmenter(
    seg: OtsuSegmenter, frames: list[np.ndarray], repeats: int
) -> tuple[list[float], list[int]]:
    """Segment times (ms) over all frames x repeats, and the cells found per frame."""
    seg.segment(frames[0])  # warm up (imports, caches)
    times, cells = [], []
    for frame in frames:
        for _ in range(repeats):
            t = time.perf_counter()
            labels = seg.segment(frame)
            times.append(1000 * (time.perf_counter() - t))
        cells.append(int(labels.max()))
    return times, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fovs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    print(f"OtsuSegmenter().segment, miRFP 20 ms, {args.fovs} FOVs x {args.repeats} repeats")
    print(f"{'size':>9} {'mean ms':>9} {'p95 ms':>9} {'max ms':>9} {'cells/frame':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            frames = snap_frames(size, args.fovs, tmp)
            times, cells = time_segmenter(OtsuSegmenter(), frames, args.repeats)
            p95 = float(np.percentile(times, 95))
            print(
                f"{size:>4}x{size:<4} {statistics.mean(times):9.2f} {p95:9.2f} "
                f"{max(times):9.2f} {statistics.mean(cells):12.1f}"
            )


if __name__ == "__main__":
    main()
