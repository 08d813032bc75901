"""Terminal progress of a run: overall and per-phase bars, lag and errors (rich).

The display reads `RunStatus` snapshots; it never renders on the RunEngine thread. A
render thread per run takes the latest snapshot a few times a second and redraws, so a
burst of frames costs the RunEngine one snapshot each (microseconds) and the terminal a
bounded number of redraws, however fast the camera is.
"""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Column

from ._status import RunStatus, StatusCallback

__all__ = ["ProgressDisplay", "format_duration"]


def format_duration(seconds: float | None) -> str:
    """``1:02:03``, ``2:03``, ``0:07``; ``--`` when unknown."""
    if seconds is None:
        return "--"
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressDisplay:
    """Overall and per-phase progress bars with state, lag and errors, in the terminal.

    Two ways to use it::

        RE.subscribe(ProgressDisplay())            # owns a StatusCallback fed by RE

        status = StatusCallback(RE=RE)             # shared with a widget
        RE.subscribe(status)
        ProgressDisplay(status=status)             # follows it; not subscribed itself

    Parameters
    ----------
    console : rich Console, optional
        Where to draw (default: stderr).
    status : StatusCallback, optional
        Follow this status instead of building one. Documents sent to the display are
        then ignored (the status gets them from the RunEngine).
    refresh_per_second : float
        Most redraws per second.

    """

    def __init__(
        self,
        console: Console | None = None,
        status: StatusCallback | None = None,
        *,
        refresh_per_second: float = 4.0,
    ) -> None:
        self._console = console or Console(stderr=True)
        self._own = status is None
        self.status = status if status is not None else StatusCallback(tick_s=None)
        self._period = 1.0 / refresh_per_second
        self._lock = threading.Lock()
        self._run: str | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.status.changed.connect(self._on_change)

    def close(self) -> None:
        """Stop following the status and finish drawing."""
        self.status.changed.disconnect(self._on_change)
        with self._lock:
            self._wake.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def __call__(self, name: str, doc: Any) -> None:
        """Feed a document to the owned status (ignored when following a shared one)."""
        if self._own:
            self.status(name, doc)

    # ---------------------------------------------------------------- RE thread
    def _on_change(self, snap: RunStatus) -> None:
        """Start a renderer for a new run; wake it at the end. Nothing is drawn here."""
        thread = None
        with self._lock:
            if snap.active and snap.run_uid is not None and snap.run_uid != self._run:
                self._run = snap.run_uid
                self._wake = threading.Event()
                self._thread = threading.Thread(
                    target=self._render,
                    args=(snap.run_uid, self._wake),
                    daemon=True,
                    name="faro-progress",
                )
                self._thread.start()
            elif not snap.active and snap.run_uid == self._run and self._thread is not None:
                self._wake.set()
                thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)  # the run is over: let the last frame reach the terminal

    # ----------------------------------------------------------- render thread
    def _render(self, uid: str, wake: threading.Event) -> None:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=7)),
            # the long info text folds onto a second line rather than eating the counts
            TextColumn("{task.fields[info]}", table_column=Column(ratio=1, overflow="fold")),
            console=self._console,
            auto_refresh=False,
            transient=False,
        )
        tasks: dict[str, TaskID] = {}
        progress.start()
        try:
            while True:
                wake.wait(self._period)
                snap = self.status.snapshot
                if snap.run_uid != uid:
                    break
                self._draw(progress, tasks, snap)
                progress.refresh()
                if not snap.active:
                    break
        finally:
            progress.stop()
        if snap.run_uid == uid and snap.state == "failed":
            self._console.print(f"[red]run ended: {snap.exit_status} {'; '.join(snap.errors)}")

    @staticmethod
    def _draw(progress: Progress, tasks: dict[str, TaskID], snap: RunStatus) -> None:
        if snap.visits_total:
            done, total, unit = snap.visits_done, snap.visits_total, "visits"
        else:
            done, total, unit = snap.frames_received, snap.frames_total, "frames"
        info = [f"[bold]{snap.state}[/]"]
        if snap.wait_remaining_s is not None:
            info.append(f"next visit in {format_duration(snap.wait_remaining_s)}")
        if unit == "visits":
            info.append(f"{snap.frames_received} frames")
        if snap.lag_ms is not None:
            colour = "red" if snap.lag_ms > 5000 else "green"
            info.append(f"lag [{colour}]{snap.lag_ms:.0f} ms[/]")
        if snap.n_errors:
            info.append(f"[red]{snap.n_errors} error(s)[/]")
        info.append(
            f"{format_duration(snap.elapsed_s)} elapsed, {format_duration(snap.remaining_s)} left"
        )
        name = snap.plan_name or "run"
        if name not in tasks:
            tasks[name] = progress.add_task(f"[bold]{name}", total=total, info="")
        progress.update(tasks[name], completed=done, total=total, info="  ".join(info))
        if len(snap.phases) > 1:
            for ph in snap.phases:
                key = f"phase:{ph.name}"
                if key not in tasks:
                    tasks[key] = progress.add_task(f"  {ph.name}", total=ph.total, info="")
                progress.update(tasks[key], completed=ph.done, total=ph.total, info=unit)
