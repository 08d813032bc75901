"""`ExperimentStatusWidget`: see and steer the running experiment (napari dock or window).

It shows a `StatusCallback`'s snapshots and, given the RunEngine, drives it with Pause
(deferred: the plan pauses between visits), Resume and Stop. Snapshots reach it only on
the GUI thread: pushed through a coalescing queued Qt signal (`StatusBridge`) and pulled
by a QTimer, which also ticks the clocks between documents; nothing here runs on the
RunEngine's thread. Each new run (a new start document) rebinds the strip and the map.
"""

from __future__ import annotations

import html
from typing import Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QPalette
from qtpy.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..callbacks import RunLayout, RunStatus, StatusCallback, format_duration
from ._bridge import StatusBridge
from ._control import RunControl
from ._fovmap import FovMap
from ._parts import Chip, QueueBar
from ._strip import EventStrip
from ._theme import LAG_RED

__all__ = ["ExperimentStatusWidget"]

LAG_LIMIT_MS = 5000.0
"""Lag shown in red above this."""
_LEGEND = (("image", "imaging"), ("stim", "stim"), ("ref", "ref"), ("wait", "wait"))
_STATS = ("visit", "frames", "elapsed", "scheduled", "lag", "remaining", "errors")


def _chip_text(snap: RunStatus) -> str:
    if snap.state == "waiting":
        return f"WAITING {format_duration(snap.wait_remaining_s)}"
    if snap.state in ("pausing", "stopping"):
        return snap.state.upper() + "…"
    return snap.state.upper()


def _red(text: str) -> str:
    return f'<span style="color:{LAG_RED}">{html.escape(text)}</span>'


class ExperimentStatusWidget(QWidget):
    """State chip, legend, event strip, FOV map, stats, queues and run buttons.

    Parameters
    ----------
    status : StatusCallback
        The status to show (subscribed to the RunEngine by the caller).
    RE : RunEngine, optional
        Enables the buttons (and binds ``status`` to it if it is not bound yet). See
        `RunControl` for where resume/stop run: on a worker thread for a RunEngine with
        ``context_managers=[]``, on the GUI thread (needs
        ``RunEngine(during_task=QtDuringTask())``) for one with bluesky's SIGINT handler.
    resume_on : {"auto", "gui", "thread"}
        Override that choice.
    poll_ms : int
        How often the clocks and queue depths are refreshed.

    """

    def __init__(
        self,
        status: StatusCallback,
        RE: Any = None,
        parent: QWidget | None = None,
        *,
        resume_on: str = "auto",
        poll_ms: int = 250,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Experiment status")
        self.status = status
        self.control = RunControl(RE, resume_on=resume_on) if RE is not None else None
        if RE is not None and status.RE is None:
            status.bind(RE)  # pausing/paused/stopping come from the RunEngine's state
        self._layout: RunLayout | None = None
        self._run_uid: str | None = None
        self._last: RunStatus | None = None
        self._busy = False  # a resume/stop was requested; wait for the state to move
        self._busy_from = ""
        self._build()
        self.bridge = StatusBridge(status, self)
        self.bridge.updated.connect(self.show_status)
        self.timer = QTimer(self)
        self.timer.setInterval(poll_ms)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        self.show_status(status.snapshot)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(8, 8, 8, 8)
        root.setSpacing(6)
        top = QHBoxLayout()
        self.state_chip = Chip("IDLE")
        top.addWidget(self.state_chip)
        top.addStretch(1)
        self.legend: dict[str, Chip] = {}
        for kind, label in _LEGEND:
            chip = Chip(label, kind)
            self.legend[kind] = chip
            top.addWidget(chip)
        root.addLayout(top)
        self.strip = EventStrip()
        root.addWidget(self.strip)
        self.fov_map = FovMap()
        root.addWidget(self.fov_map, 1)

        panel = QFrame()
        panel.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(panel)
        grid.setContentsMargins(8, 6, 8, 6)
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(2)
        self.values: dict[str, QLabel] = {}
        for row, key in enumerate(_STATS):
            name = QLabel(key.capitalize())
            name.setForegroundRole(QPalette.ColorRole.PlaceholderText)  # a quieter caption
            value = QLabel("--")
            value.setTextFormat(Qt.TextFormat.RichText)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(name, row, 0)
            grid.addWidget(value, row, 1)
            self.values[key] = value
        grid.setColumnStretch(1, 1)
        self._queue_grid = QGridLayout()
        self._queue_grid.setColumnStretch(1, 1)
        grid.addLayout(self._queue_grid, len(_STATS), 0, 1, 2)
        self.queue_bars: dict[str, tuple[QLabel, QueueBar]] = {}
        root.addWidget(panel)

        buttons = QHBoxLayout()
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause at the next visit (deferred pause); Resume continues")
        self.pause_button.clicked.connect(self._on_pause_resume)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("End the run now, keeping everything acquired")
        self.stop_button.clicked.connect(self._on_stop)
        buttons.addWidget(self.pause_button)
        buttons.addWidget(self.stop_button)
        root.addLayout(buttons)

    # ----------------------------------------------------------------- updates
    def poll(self) -> None:
        """Timer tick (GUI thread): take a fresh snapshot (clocks, queues) and show it."""
        self.show_status(self.status.refresh())

    def show_status(self, snap: RunStatus) -> None:
        """Show ``snap`` (GUI thread only); older snapshots than the shown one are ignored."""
        last = self._last
        if last is not None and snap.time < last.time:
            return
        if self._busy and self._settled(snap):
            self._busy = False
        self._last = snap
        if snap.layout is not self._layout or snap.run_uid != self._run_uid:
            self._rebind(snap)
        self.state_chip.setText(_chip_text(snap))
        for kind, chip in self.legend.items():
            chip.set_active(snap.active and snap.kind == kind)
        self.strip.set_cursor(snap.cell)
        self.fov_map.set_current(snap.p, snap.kind or "image")
        self._show_stats(snap)
        self._show_queues(snap)
        self._show_buttons(snap)

    def _rebind(self, snap: RunStatus) -> None:
        """A new run (or its layout arrived): reset the strip and the map."""
        self._layout = snap.layout
        self._run_uid = snap.run_uid
        self.strip.set_layout(snap.layout)
        if snap.layout is not None:
            self.fov_map.set_fovs(snap.layout.fovs, snap.layout.path)
        else:
            self.fov_map.set_fovs(())

    def _set(self, key: str, text: str) -> None:
        label = self.values[key]
        if label.text() != text:
            label.setText(text)

    def _show_stats(self, snap: RunStatus) -> None:
        total = snap.visits_total
        visit = f"{snap.visits_done}/{total if total is not None else '?'}"
        if snap.t is not None:
            visit += html.escape(f"  (t {snap.t}, FOV {snap.p}, {snap.phase or '-'})")
        self._set("visit", visit)
        frames = f"{snap.frames_received}/{snap.frames_total or '?'}"
        if snap.stim_frames:
            frames += f"  + {snap.stim_frames} stim"
        self._set("frames", frames)
        self._set("elapsed", format_duration(snap.elapsed_s))
        self._set("scheduled", format_duration(snap.scheduled_s))
        lag = "--"
        if snap.lag_ms is not None:
            ms = snap.lag_ms
            lag = f"{ms / 1000:.1f} s" if abs(ms) >= 1000 else f"{ms:.0f} ms"
            lag = _red(lag) if ms > LAG_LIMIT_MS else lag
        self._set("lag", lag)
        self._set("remaining", format_duration(snap.remaining_s))
        errors = _red(str(snap.n_errors)) if snap.n_errors else "0"
        self._set("errors", errors)
        self.values["errors"].setToolTip("\n".join(snap.errors) or "no errors")

    def _show_queues(self, snap: RunStatus) -> None:
        names = [q.name for q in snap.queues]
        if names != list(self.queue_bars):
            for label, bar in self.queue_bars.values():
                label.deleteLater()
                bar.deleteLater()
            self.queue_bars = {}
            for row, name in enumerate(names):
                label, bar = QLabel(), QueueBar()
                self._queue_grid.addWidget(label, row, 0)
                self._queue_grid.addWidget(bar, row, 1)
                self.queue_bars[name] = (label, bar)
        for q in snap.queues:
            label, bar = self.queue_bars[q.name]
            cap = f"/{q.capacity}" if q.capacity else ""
            text = f"{q.name} {q.depth}{cap}"
            if label.text() != text:
                label.setText(text)
            bar.set_value(q.depth, q.capacity)

    def _show_buttons(self, snap: RunStatus) -> None:
        state = snap.state
        paused = state == "paused"
        self.pause_button.setText(
            "Resume" if paused else "Pausing…" if state == "pausing" else "Pause"
        )
        can = self.control is not None and not self._busy
        self.pause_button.setEnabled(can and state in ("running", "waiting", "paused"))
        self.stop_button.setEnabled(can and state in ("running", "waiting", "pausing", "paused"))

    # ----------------------------------------------------------------- buttons
    def _settled(self, snap: RunStatus) -> bool:
        """A resume/stop request has had its effect (or its worker gave up)."""
        worker = self.control.worker if self.control is not None else None
        return snap.state != self._busy_from or (worker is not None and not worker.is_alive())

    def _mark_busy(self) -> None:
        self._busy = True
        self._busy_from = self.status.snapshot.state
        self._show_buttons(self.status.snapshot)

    def _on_pause_resume(self) -> None:
        if self.control is None:
            return
        if self.status.snapshot.state == "paused":
            self._mark_busy()
            self.control.resume()
        else:
            try:
                self.control.pause()
            except Exception as exc:  # e.g. the run ended between the click and now
                self.status.add_error(f"pause failed: {exc}")
        self.show_status(self.status.refresh())

    def _on_stop(self) -> None:
        if self.control is None:
            return
        self._mark_busy()
        try:
            self.control.stop()
        except Exception as exc:
            self._busy = False
            self.status.add_error(f"stop failed: {exc}")
        self.show_status(self.status.refresh())

    def closeEvent(self, event: Any) -> None:
        """Stop polling and listening."""
        self.timer.stop()
        self.bridge.close()
        super().closeEvent(event)
