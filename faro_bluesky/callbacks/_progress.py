"""Terminal progress of a run, driven by documents (a rich progress bar)."""

from __future__ import annotations

import time

from event_model import DocumentRouter
from event_model.documents import Event, EventDescriptor, RunStart, RunStop
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class ProgressDisplay(DocumentRouter):
    """Shows events done / expected (``num_points`` in the start document) and the rate.

    Subscribe with ``RE.subscribe(ProgressDisplay())``. Updating a rich progress bar is a
    few microseconds: rich redraws on its own thread, so acquisition is never slowed.
    """

    def __init__(self, console: Console | None = None, stream: str = "primary") -> None:
        super().__init__()
        self._console = console or Console(stderr=True)
        self._stream = stream
        self._progress: Progress | None = None
        self._task = None
        self._descriptors: set[str] = set()
        self._t0 = 0.0
        self.events = 0

    def start(self, doc: RunStart) -> None:
        """Open a bar for the run."""
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self._console,
            transient=False,
        )
        self._progress.start()
        total = doc.get("num_points")
        self._task = self._progress.add_task(doc.get("plan_name", "run"), total=total, rate="")
        self._t0 = time.monotonic()
        self.events = 0

    def descriptor(self, doc: EventDescriptor) -> None:
        """Follow the main stream only."""
        if doc["name"] == self._stream:
            self._descriptors.add(doc["uid"])

    def event(self, doc: Event) -> Event:
        """Advance by one event."""
        if doc["descriptor"] in self._descriptors and self._progress is not None:
            self.events += 1
            dt = time.monotonic() - self._t0
            rate = f"{self.events / dt:.1f} frames/s" if dt > 0 else ""
            self._progress.update(self._task, advance=1, rate=rate)
        return doc

    def stop(self, doc: RunStop) -> None:
        """Close the bar and say how the run ended."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if doc["exit_status"] != "success":
            self._console.print(f"[red]run ended: {doc['exit_status']} {doc.get('reason', '')}")
