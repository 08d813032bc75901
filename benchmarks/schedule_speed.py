"""A 200 000-visit experiment: plan build + validation, and the status strip after the start.

Issue 13 point 4: the schedule is computed once (columns, `Schedule.columns`) and shared by
validation, the plan and, in the same process, the status callback (`schedule_key` in the
start document); a status in another process rebuilds it from the start document.
Prints, with the machine load:

- ``optogenetic_plan(...)``: build + validate (target <= 2 s);
- the start document's metadata;
- start document -> status layout ready, in-process (shared) and from the document alone;
- start document -> the widget's strip painted (target <= 0.5 s; Qt offscreen).

Run: ``uv run python benchmarks/schedule_speed.py [--visits 200000]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from bluesky import RunEngine
from qtpy.QtWidgets import QApplication

from faro_bluesky.callbacks import StatusCallback
from faro_bluesky.plans import Channel, Phase, optogenetic_plan, wait
from faro_bluesky.sim import sim_microscope
from faro_bluesky.widgets import ExperimentStatusWidget


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def experiment(n_visits: int):
    fovs = [(x * 400.0, y * 400.0) for x in range(10) for y in range(10)]
    frames = n_visits // len(fovs)
    img = [Channel("miRFP", 20), Channel("ERKKTR", 20)]
    n_base = frames // 4
    phases = [
        Phase("base", interval=60, n_frames=n_base, channels=img),
        wait(600),
        Phase(
            "stim",
            interval=60,
            n_frames=frames - n_base,
            channels=img,
            stim_channels=[Channel("Cyan", 50, power=10)],
            stim_frames=range(0, frames - n_base, 2),
        ),
    ]
    return fovs, phases


def strip_after_start(status: StatusCallback, start: dict, app: QApplication) -> float:
    widget = ExperimentStatusWidget(status, poll_ms=60_000)
    widget.resize(900, 500)
    widget.show()
    app.processEvents()
    t0 = time.perf_counter()
    status("start", start)
    deadline = t0 + 30
    while status.snapshot.layout is None and time.perf_counter() < deadline:
        app.processEvents()  # a big layout is built on a helper thread
    widget.show_status(status.snapshot)
    widget.grab()
    elapsed = time.perf_counter() - t0
    widget.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=200_000)
    args = parser.parse_args()
    RunEngine(context_managers=[])  # the devices need the bluesky loop
    # (before Qt: a core made with a QApplication around emits through Qt objects)
    scope = sim_microscope(seed=0, data_dir=tempfile.mkdtemp(), image_shape=(64, 64))
    app = QApplication.instance() or QApplication([])
    fovs, phases = experiment(args.visits)
    print(f"{args.visits} visits, {len(fovs)} FOVs ({load()})")
    t0 = time.perf_counter()
    plan = optogenetic_plan(fovs, phases, microscope=scope)
    print(f"  optogenetic_plan() build + validate  {time.perf_counter() - t0:7.3f} s")
    t0 = time.perf_counter()
    md = plan._start_md()
    print(f"  start document metadata              {time.perf_counter() - t0:7.3f} s")
    start = {**md, "uid": "bench-shared", "time": time.time()}
    shared = strip_after_start(StatusCallback(tick_s=None), start, app)
    print(f"  start -> strip painted, shared       {shared:7.3f} s")
    elsewhere = {k: v for k, v in start.items() if k != "schedule_key"} | {"uid": "bench-doc"}
    rebuilt = strip_after_start(StatusCallback(tick_s=None), elsewhere, app)
    print(f"  start -> strip painted, from the doc {rebuilt:7.3f} s")
    print(f"  ({load()})")
    scope.close()


if __name__ == "__main__":
    main()
