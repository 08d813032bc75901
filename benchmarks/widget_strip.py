"""Render time of the status widget's event strip for 1k, 10k and 100k visits.

Run: ``uv run python benchmarks/widget_strip.py [--width 800] [--moves 50]``
(headless: ``QT_QPA_PLATFORM=offscreen`` is set unless already chosen).
Prints, per size: building the run layout from the schedule rows, the first render of the
strip (colour reduction + images + paint) and of the whole widget, and a cursor move.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from dataclasses import replace

from qtpy.QtWidgets import QApplication

from faro_bluesky.callbacks import RunLayout, RunStatus, StatusCallback
from faro_bluesky.plans import Channel, Phase, schedule, wait
from faro_bluesky.widgets import ExperimentStatusWidget
from faro_bluesky.widgets._strip import EventStrip


def layout_of(n_visits: int) -> tuple[RunLayout, float]:
    """A three-phase, 100-FOV experiment of ``n_visits`` visits, and the layout build time."""
    fovs = [(x * 200.0, y * 200.0) for x in range(10) for y in range(10)]
    frames = n_visits // 100
    n_base, n_stim = frames * 3 // 10, frames * 4 // 10
    img = [Channel("miRFP", 20)]
    phases = [
        Phase("base", interval=60, n_frames=n_base, channels=img),
        wait(600),
        Phase(
            "stim",
            interval=60,
            n_frames=n_stim,
            channels=img,
            stim_channels=[Channel("Cyan", 100, 10)],
            stim_frames=range(0, n_stim, 3),
        ),
        Phase("recovery", interval=60, n_frames=frames - n_base - n_stim, channels=img),
    ]
    rows = schedule(fovs, phases).rows()
    t0 = time.perf_counter()
    layout = RunLayout.from_visits(
        f"bench-{n_visits}", rows, fovs=fovs, waits_before=[len(fovs) * n_base]
    )
    return layout, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=800, help="strip width in pixels")
    parser.add_argument("--moves", type=int, default=50, help="cursor moves to average")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    print(f"strip width {args.width} px, platform {app.platformName()}")
    print(
        f"{'visits':>8} {'layout ms':>10} {'strip first ms':>15} {'widget first ms':>16}"
        f" {'cursor move ms':>15}"
    )
    for n in (1_000, 10_000, 100_000):
        layout, t_layout = layout_of(n)
        strip = EventStrip()
        strip.resize(args.width, 22)
        strip.show()
        t0 = time.perf_counter()
        strip.set_layout(layout)
        strip.set_cursor(0)
        strip.grab()
        t_first = time.perf_counter() - t0
        moves = []
        for k in range(args.moves):
            t0 = time.perf_counter()
            strip.set_cursor((k + 1) * (len(layout.cells) - 1) // args.moves)
            strip.grab()
            moves.append(time.perf_counter() - t0)
        widget = ExperimentStatusWidget(StatusCallback(tick_s=None), poll_ms=60_000)
        widget.resize(args.width, 600)
        widget.show()
        snap = RunStatus(state="running", run_uid=layout.uid, layout=layout, cell=0, p=0, time=1e12)
        t0 = time.perf_counter()
        widget.show_status(replace(snap))
        widget.grab()
        t_widget = time.perf_counter() - t0
        print(
            f"{n:>8} {t_layout * 1e3:>10.1f} {t_first * 1e3:>15.1f} {t_widget * 1e3:>16.1f}"
            f" {statistics.median(moves) * 1e3:>15.2f}"
        )
        widget.close()
        strip.close()


if __name__ == "__main__":
    main()
