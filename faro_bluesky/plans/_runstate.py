"""`RunState` of a background run, how it is announced, and the result it ends with.

A background run can end through its own worker's call (``RE(plan)``, ``RE.resume()``,
``RE.stop()``), or through another thread's (a widget's Resume), in which case only the
documents say how it ended. `outcome` turns either into the same `RunEngineResult` and
final `RunState`, whatever the RunEngine's ``call_returns_result`` is.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from bluesky.run_engine import RunEngineResult

__all__ = ["Outbox", "RunState", "outcome"]

logger = logging.getLogger(__name__)


class RunState(StrEnum):
    """Where a background run is; the last four are final."""

    RUNNING = "running"
    PAUSING = "pausing"
    """A pause was asked for and has not landed (deferred: at the next checkpoint)."""
    PAUSED = "paused"
    STOPPING = "stopping"
    """``stop``/``abort``/``halt`` asked for; cleanup may still be running."""
    DONE = "done"
    """The plan ran to its end."""
    STOPPED = "stopped"
    """Ended early by ``stop``/``cancel``; exit status "success", data kept."""
    ABORTED = "aborted"
    """Ended by ``abort``/``halt``; exit status "abort"."""
    FAILED = "failed"
    """The plan raised (``wait`` re-raises it)."""

    @property
    def finished(self) -> bool:
        """True for the final states."""
        return self in (RunState.DONE, RunState.STOPPED, RunState.ABORTED, RunState.FAILED)


def outcome(
    out: Any,
    exc: BaseException | None,
    *,
    interrupted: bool,
    stop: dict[str, Any] | None,
    starts: tuple[str, ...],
) -> tuple[RunEngineResult, RunState]:
    """The result and final state of a run.

    ``out``: what the last blocking call returned (a `RunEngineResult`, a tuple of uids,
    or None when another thread ended the run); ``exc``: what it raised; ``stop``: the
    last RunStop document (its exit status is what was recorded, so it wins).
    """
    stop = stop or {}
    known = isinstance(out, RunEngineResult)
    status = stop.get("exit_status") or (out.exit_status if known else None)
    status = status or ("fail" if exc is not None else "success")
    interrupted = (out.interrupted if known else False) or interrupted
    result = RunEngineResult(
        run_start_uids=tuple(out.run_start_uids) if known else starts,
        plan_result=out.plan_result if known else None,
        exit_status=status,
        interrupted=interrupted,
        reason=stop.get("reason") or (out.reason if known else "") or "",
        exception=exc if isinstance(exc, Exception) else None,
    )
    if exc is not None or status == "fail":
        return result, RunState.FAILED
    if status == "abort":
        return result, RunState.ABORTED
    return result, RunState.STOPPED if interrupted else RunState.DONE


class Outbox:
    """States to announce, emitted in the order queued, by whichever thread is free.

    Nobody waits for the emitter: a thread finding another one emitting leaves its state
    to it. So a listener may call back into the handle (even a blocking ``pause()``)
    while the RunEngine's thread queues a state meanwhile, without a deadlock.
    """

    def __init__(self, emit: Callable[[RunState], Any]) -> None:
        self._emit = emit
        self._queue: queue.SimpleQueue[RunState] = queue.SimpleQueue()
        self._emitting = threading.Lock()

    def put(self, state: RunState) -> None:
        """Queue ``state`` (callers order their puts under their own lock)."""
        self._queue.put(state)

    def drain(self) -> None:
        """Emit everything queued, unless another thread is already at it."""
        while not self._queue.empty():
            if not self._emitting.acquire(blocking=False):
                return
            try:
                while not self._queue.empty():
                    state = self._queue.get()
                    try:
                        self._emit(state)
                    except Exception:
                        logger.exception("RunHandle: a statusChanged listener failed")
            finally:
                self._emitting.release()
