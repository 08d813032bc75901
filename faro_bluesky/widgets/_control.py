"""Pause, resume and stop a RunEngine from GUI buttons, without freezing the GUI.

``RE.request_pause(defer=True)`` and ``RE.stop()`` on a *running* plan only post a request
to the RunEngine's loop and return. ``RE.resume()`` (and ``stop()`` on a *paused* plan,
which runs the cleanup) block their caller until the plan pauses again or ends, so where
they are called matters:

* RunEngine created with ``context_managers=[]`` (the GUI-driven case; bluesky's SIGINT
  handler is the only default manager and needs the main thread): the blocking call runs
  on a worker thread ("thread"). The GUI never blocks; the plan continues on that thread.
* RunEngine with its default context managers, driven from IPython on the main thread
  (Ctrl-C pauses): the call runs on the GUI thread ("gui"), exactly like typing
  ``RE.resume()``; give the RunEngine ``during_task=QtDuringTask()`` so Qt keeps running
  while it blocks (the prompt comes back when the run pauses or ends).

``resume_on="auto"`` picks between the two; "gui" and "thread" force one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from bluesky.utils import RunEngineInterrupted

__all__ = ["RunControl"]

logger = logging.getLogger(__name__)


class RunControl:
    """Pause/resume/stop requests for a RunEngine, dispatched as described above."""

    def __init__(self, RE: Any, *, resume_on: str = "auto") -> None:
        if resume_on not in ("auto", "gui", "thread"):
            raise ValueError(f"resume_on={resume_on!r}: use 'auto', 'gui' or 'thread'")
        self.RE = RE
        self.resume_on = resume_on
        self.worker: threading.Thread | None = None
        """The thread running the last blocking call (None when run on the GUI thread)."""

    @property
    def mode(self) -> str:
        """Where blocking calls run: "gui" or "thread"."""
        if self.resume_on != "auto":
            return self.resume_on
        needs_main = bool(getattr(self.RE, "context_managers", ()))
        on_main = threading.current_thread() is threading.main_thread()
        return "gui" if needs_main and on_main else "thread"

    def pause(self) -> None:
        """Deferred pause: the plan pauses at its next checkpoint (between visits)."""
        self.RE.request_pause(defer=True)

    def resume(self) -> None:
        """Continue a paused plan."""
        self._dispatch(self.RE.resume, "resume")

    def stop(self) -> None:
        """End the run, keeping what was acquired (exit status "success")."""
        if self.RE.state == "paused":
            self._dispatch(self.RE.stop, "stop")
        else:
            self.RE.stop()

    def _dispatch(self, fn: Callable[[], Any], what: str) -> None:
        if self.mode == "gui":
            self.worker = None
            _call(fn, what)
        else:
            self.worker = threading.Thread(
                target=_call, args=(fn, what), name=f"faro-re-{what}", daemon=True
            )
            self.worker.start()


def _call(fn: Callable[[], Any], what: str) -> None:
    try:
        fn()
    except RunEngineInterrupted:
        logger.info("RunEngine paused again during %s", what)
    except Exception:
        logger.exception("RunEngine %s failed", what)
