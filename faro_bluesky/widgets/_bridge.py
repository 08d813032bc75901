"""From the status' threads to the GUI thread: a coalescing, queued Qt signal.

`StatusCallback.changed` fires on the RunEngine's thread (and the status ticker's). The
bridge keeps only the latest snapshot and posts at most one queued Qt signal at a time,
so a camera at 100 frames/s costs the GUI one update per event-loop turn, not a backlog,
and no widget is ever touched outside the GUI thread.
"""

from __future__ import annotations

import threading

from qtpy.QtCore import QObject, Qt, Signal

from ..callbacks import RunStatus, StatusCallback

__all__ = ["StatusBridge"]


class StatusBridge(QObject):
    """Re-emits a status' snapshots as ``updated(RunStatus)`` in this object's thread."""

    updated = Signal(object)
    _poke = Signal()

    def __init__(self, status: StatusCallback, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._status = status
        self._lock = threading.Lock()
        self._pending: RunStatus | None = None
        # Queued even when emitted from this thread: delivery always goes through the
        # event loop, so a listener never runs inside the status' lock-holding emit.
        self._poke.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        status.changed.connect(self._on_changed)
        self.destroyed.connect(self._disconnect)

    def _on_changed(self, snap: RunStatus) -> None:
        """Any thread: keep the latest, post one delivery if none is on its way."""
        with self._lock:
            posted = self._pending is not None
            self._pending = snap
        if not posted:
            try:
                self._poke.emit()
            except RuntimeError:  # the Qt object is gone (widget closed)
                self._disconnect()

    def _deliver(self) -> None:
        with self._lock:
            snap, self._pending = self._pending, None
        if snap is not None:
            self.updated.emit(snap)

    def _disconnect(self, *_: object) -> None:
        self._status.changed.disconnect(self._on_changed, missing_ok=True)

    def close(self) -> None:
        """Stop listening to the status."""
        self._disconnect()
