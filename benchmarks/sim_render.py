"""CPU time the simulated camera spends per frame, before and after decision 0047.

"before" is a verbatim copy (below) of the rendering and noise code as it was before the
change (per-cell profiles computed every frame in float64, ``Generator.standard_normal``
noise); "after" is `SimWorld._expose` as it is. Both render the same world (same sample,
same stage position, same clock) in one process, alternating in blocks, so machine load
hits both alike; figures are process CPU time (``time.process_time``) per frame, median of
the blocks, next to ``os.getloadavg()``. The sample clock advances ``--dt`` sample seconds
per frame (cells drift ~0.2 px/s at most, so at 0.05 s most cells keep their stamp; with
``--dt 5`` most do not, as in tests that run the sample 100x faster than the clock).

Run: ``uv run python benchmarks/sim_render.py [--size 512] [--frames 100] [--blocks 5]``.
Asserts nothing; the target (<= 1.5 ms per 512² frame) is read by people (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from faro_bluesky.sim import SampleParams, SimSample, SimWorld
from faro_bluesky.sim._render import (
    BRIGHTFIELD,
    DMD_BLEED,
    KTR,
    NUCLEAR_MARKER,
    STIM_REFLECTION,
    FieldRenderer,
)
from faro_bluesky.sim._sample import Cells
from faro_bluesky.sim._world import CAMERA_OFFSET, LIGHT_FOR_FILTER, READ_NOISE


class Clock:
    """Sample clock advanced by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


# ------------------------------------------------------------------ before (verbatim copy)
def old_stamps(r: FieldRenderer, cells: Cells, center_um: tuple[float, float]) -> list:
    h, w = r.shape
    factor = r.sample.params.cell_radius_factor
    out = []
    for index, ((cx, cy), rn, el, ang) in enumerate(
        zip(
            r.to_pixels(cells.xy_um, center_um),
            cells.nucleus_um / r.pixel_size_um,
            cells.elongation,
            cells.angle,
            strict=True,
        )
    ):
        reach = int(np.ceil(rn * factor + 2))
        r0, r1 = max(int(cy) - reach, 0), min(int(cy) + reach + 1, h)
        c0, c1 = max(int(cx) - reach, 0), min(int(cx) + reach + 1, w)
        if r0 >= r1 or c0 >= c1:
            continue
        dy, dx = np.mgrid[r0:r1, c0:c1].astype(float)
        dx -= cx
        dy -= cy
        u = dx * np.cos(ang) + dy * np.sin(ang)
        v = -dx * np.sin(ang) + dy * np.cos(ang)
        a_n, b_n = rn, rn / el
        nucleus = np.clip((1 - np.hypot(u / a_n, v / b_n)) * b_n + 0.5, 0, 1)
        a_c, b_c = rn * factor, rn * factor / np.sqrt(el)
        cell = np.clip((1 - np.hypot(u / a_c, v / b_c)) * b_c + 0.5, 0, 1)
        out.append((index, slice(r0, r1), slice(c0, c1), nucleus, np.maximum(cell, nucleus)))
    return out


def old_render(r: FieldRenderer, kind: str, cells: Cells, stamps: list, light=None) -> np.ndarray:
    img = np.zeros(r.shape)
    if kind == "miRFP":
        img += 1.0
        for i, rows, cols, nucleus, cell in stamps:
            m = cells.marker[i]
            img[rows, cols] += NUCLEAR_MARKER * m * (nucleus + 0.05 * (cell - nucleus))
    elif kind == "ERKKTR":
        img += 1.0
        ratio = r.sample.erk_ratio(cells.activity)
        for i, rows, cols, nucleus, cell in stamps:
            rr = ratio[i]
            nuc = KTR * cells.ktr[i] / (1 + rr)
            img[rows, cols] += nuc * nucleus + nuc * rr * (cell - nucleus)
    elif kind == "BF":
        img += BRIGHTFIELD
        for _, rows, cols, nucleus, cell in stamps:
            edge = 4 * cell * (1 - cell)
            img[rows, cols] -= BRIGHTFIELD * (0.12 * cell + 0.08 * nucleus - 0.1 * edge)
    elif kind == "Cyan":
        img += 0.5
        if light is not None:
            img += STIM_REFLECTION * (DMD_BLEED + (1 - DMD_BLEED) * light)
        for _, rows, cols, _, cell in stamps:
            img[rows, cols] += 2.0 * cell
    return img


def old_expose(world: SimWorld, rng: np.random.Generator, exposure_ms: float) -> np.ndarray:
    """The camera's per-frame work before 0047 (light delivery left out: not rendering)."""
    kind = world.optics.filter
    level = world.optics.levels.get(LIGHT_FOR_FILTER.get(kind, ""), 0.0)
    center = (float(world.xy[0]), float(world.xy[1]))
    r = world.renderer
    cells = r.cells(center, world.sample.now(), margin_px=30)
    stamps = old_stamps(r, cells, center)
    light = world.light_in_camera() if kind == "Cyan" else None
    expected = old_render(r, kind, cells, stamps, light) * (level / 100.0 * exposure_ms)
    sigma = 0.8 * abs(world.z - world.focus_z)
    if sigma > 0.3:
        expected = ndimage.gaussian_filter(expected, sigma)
    noise = rng.standard_normal(world.image_shape, dtype=np.float32)
    noise *= np.sqrt(expected.astype(np.float32) + READ_NOISE**2)
    noise += expected + CAMERA_OFFSET
    return np.clip(noise, 0, 65535).astype(np.uint16)


# ------------------------------------------------------------------------------ harness
def cpu_ms(step: Callable[[], object], clock: Clock, dt: float, frames: int) -> float:
    start = time.process_time()
    for _ in range(frames):
        clock.t += dt
        step()
    return (time.process_time() - start) / frames * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=100, help="frames per block")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--dt", type=float, nargs="+", default=[0.05, 5.0])
    parser.add_argument("--exposure", type=float, default=20.0)
    args = parser.parse_args()

    clock = Clock()
    world = SimWorld(
        SimSample(0, SampleParams(), clock=clock),
        image_shape=(args.size, args.size),
        pixel_size_um=0.65,
        dmd_shape=(600, 800),
        dmd_rotation_deg=1.0,
        dmd_scale=1.1,
        dmd_shift=(0.0, 0.0),
        seed=0,
    )
    world.autoshutter = lambda: True
    rng = np.random.default_rng(0)
    cells = world.renderer.cells((0.0, 0.0), 0.0, margin_px=30)
    print(
        f"simulated camera {args.size}², {len(cells.ids)} cells in reach, {args.exposure} ms "
        f"exposure; CPU ms per frame, median of {args.blocks} blocks of {args.frames} frames"
    )
    print(
        f"{'channel':>8} {'dt s':>6} {'before':>8} {'after':>8} {'speed-up':>9}  load (1/5/15 min)"
    )
    for kind in ("miRFP", "ERKKTR", "BF"):
        world.optics.filter = kind
        for dt in args.dt:
            before, after = [], []
            cpu_ms(lambda: world._expose(args.exposure), clock, dt, 3)  # warm up
            for _ in range(args.blocks):
                before.append(
                    cpu_ms(lambda: old_expose(world, rng, args.exposure), clock, dt, args.frames)
                )
                after.append(cpu_ms(lambda: world._expose(args.exposure), clock, dt, args.frames))
            b, a = statistics.median(before), statistics.median(after)
            load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"{kind:>8} {dt:6.2f} {b:8.2f} {a:8.2f} {b / a:8.1f}x  {load}")


if __name__ == "__main__":
    main()
