"""`QtDuringTask`: keep Qt (napari) responsive while ``RE(...)`` blocks the main thread.

``RE(plan)`` and ``RE.resume()`` block their caller in ``during_task.block(event)`` while the
plan runs on the RunEngine's own thread. bluesky's default only spins Qt when matplotlib
uses a Qt backend, so a napari session would freeze. This one runs a nested `QEventLoop`
until the RunEngine sets the event (checked every ``poll_ms``); the check runs Python, so
Ctrl-C (bluesky's SIGINT handler) still gets through and pauses the run.
"""

from __future__ import annotations

import threading

from bluesky.utils import DuringTask
from qtpy.QtCore import QCoreApplication, QEventLoop, QThread, QTimer

__all__ = ["QtDuringTask"]


class QtDuringTask(DuringTask):
    """A bluesky ``during_task`` that processes Qt events while the RunEngine runs.

    Use it when the RunEngine is called on the GUI (main) thread::

        RE = RunEngine(during_task=QtDuringTask())

    Off the GUI thread, or without a Qt application, it simply waits.
    """

    def __init__(self, poll_ms: int = 20) -> None:
        super().__init__()
        self.poll_ms = poll_ms

    def block(self, blocking_event: threading.Event) -> None:
        """Run Qt events until ``blocking_event`` is set."""
        app = QCoreApplication.instance()
        if app is None or QThread.currentThread() is not app.thread():
            blocking_event.wait()
            return
        loop = QEventLoop()
        interrupted: list[BaseException] = []

        def check() -> None:
            try:
                if blocking_event.is_set():
                    loop.quit()
            except KeyboardInterrupt as exc:  # a signal handler raised here: hand it on
                interrupted.append(exc)
                loop.quit()

        timer = QTimer()
        timer.setInterval(self.poll_ms)
        timer.timeout.connect(check)
        timer.start()
        try:
            if not blocking_event.is_set():
                loop.exec()
        finally:
            timer.stop()
        if interrupted:
            raise interrupted[0]
