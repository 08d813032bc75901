"""`QueueRunHandle`: one queue item, followed and controlled with `RunHandle`'s API.

Decision 0040 promised the background-run handle "with the same API on the queue server".
A queue item is addressed by its ``item_uid``; the RE Manager says where it is (waiting
in the queue, running with the RunEngine in some state, or in the history with an exit
status), so `status` asks it each time instead of keeping a copy that could go stale.
The control calls are the RE Manager's: it only stops, aborts or halts a *paused* plan,
so `stop`/`abort`/`halt` on a running one pause it first (as `RunHandle` does) and wait,
within ``timeout``, for the pause to land. ``wait`` waits on the manager's status with
the API's own wait helper (it polls the status, with a timeout), never a sleep.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Literal

from bluesky.run_engine import RunEngineResult
from psygnal import Signal

from ..plans import RunState

__all__ = ["QUEUED", "QueueRunHandle", "submit"]

QUEUED: Literal["queued"] = "queued"
"""`QueueRunHandle.status` of an item still waiting in the queue."""

# the RE Manager's exit statuses -> (bluesky exit status, RunState)
logger = logging.getLogger(__name__)

_EXITS = {
    "completed": ("success", RunState.DONE),
    "stopped": ("success", RunState.STOPPED),
    "aborted": ("abort", RunState.ABORTED),
    "halted": ("abort", RunState.ABORTED),
    "failed": ("fail", RunState.FAILED),
}
_ENDING = ("stopping", "aborting", "halting")


def submit(api: Any, name: str, *args: Any, start: bool = True, **kwargs: Any) -> QueueRunHandle:
    """Add plan ``name(*args, **kwargs)`` to the back of the queue; its handle.

    ``api`` is a `REManagerAPI` (0MQ or HTTP). With ``start`` the queue is started if the
    RE Manager is idle (a running queue reaches the item by itself).
    """
    from bluesky_queueserver_api import BPlan

    item = api.item_add(BPlan(name, *args, **kwargs))["item"]
    if start and api.status(reload=True)["manager_state"] == "idle":
        api.queue_start()
    return QueueRunHandle(api, item["item_uid"])


class QueueRunHandle:
    """A queue item on a RE Manager, through ``api`` (a `REManagerAPI`, 0MQ or HTTP).

    `status` is `QUEUED` while the item waits, then a `RunState`. ``statusChanged``
    emits each new state from a watcher thread (started by `watch`) until a final one.
    """

    statusChanged = Signal(object)

    def __init__(self, api: Any, item_uid: str) -> None:
        self.api = api
        self.item_uid = item_uid
        self._ending = False
        self._removed = False  # taken out of the queue before it ran
        self._watcher: threading.Thread | None = None
        self._stop_watching = threading.Event()

    # ------------------------------------------------------------------ state
    def status(self) -> RunState | Literal["queued"]:
        """Where the item is now: queued, running (and how), or how it ended."""
        status = self.api.status(reload=True)
        return self._state(status)

    def _state(self, status: dict[str, Any]) -> RunState | Literal["queued"]:
        if status.get("running_item_uid") == self.item_uid:
            re_state = status.get("re_state")
            if self._ending or re_state in _ENDING:
                return RunState.STOPPING
            if re_state == "paused":
                return RunState.PAUSED
            if re_state == "pausing" or status.get("pause_pending"):
                return RunState.PAUSING
            return RunState.RUNNING
        done = self.history_item()
        if done is not None:
            return _EXITS.get(done["result"]["exit_status"], ("fail", RunState.FAILED))[1]
        if self._removed:
            return RunState.STOPPED
        # waiting in the queue, or between the queue and the running slot
        return QUEUED

    def history_item(self) -> dict[str, Any] | None:
        """The item as the history records it (with ``result``), or None if not there."""
        for item in reversed(self.api.history_get(reload=True)["items"]):
            if item.get("item_uid") == self.item_uid:
                return item
        return None

    @property
    def uids(self) -> tuple[str, ...]:
        """RunStart uids of the runs the item opened (while running, and after)."""
        done = self.history_item()
        if done is not None:
            return tuple(done["result"].get("run_uids", ()))
        if self.api.status(reload=True).get("running_item_uid") != self.item_uid:
            return ()
        return tuple(run["uid"] for run in self.api.re_runs()["run_list"])

    def wait(self, timeout: float | None = None) -> RunEngineResult:
        """Block until the item has ended; its result (raises if the plan failed).

        Raises `TimeoutError` if it is still queued or running after ``timeout`` s.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while (done := self.history_item()) is None:
            seen = self.api.status(reload=True)["plan_history_uid"]
            left = 1e9 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"item {self.item_uid} is still {self.status()} after {timeout} s"
                )
            with contextlib.suppress(TimeoutError):  # the API's WaitTimeoutError: look again
                self.api.wait_for_condition(
                    lambda s, seen=seen: s["plan_history_uid"] != seen, timeout=left
                )
        result = done["result"]
        exit_status, _ = _EXITS.get(result["exit_status"], ("fail", RunState.FAILED))
        outcome = RunEngineResult(
            run_start_uids=tuple(result.get("run_uids", ())),
            plan_result=None,
            exit_status=exit_status,
            interrupted=result["exit_status"] in ("stopped", "aborted", "halted"),
            reason=result.get("msg", "") or "",
            exception=None,
        )
        if exit_status == "fail":
            raise RuntimeError(f"the plan failed: {result.get('msg', '')}")
        return outcome

    # --------------------------------------------------------------- commands
    def pause(self, defer: bool = True) -> None:
        """Pause at the next checkpoint (``defer=True``, between visits) or at once."""
        self._require_running("pause")
        self.api.re_pause(option="deferred" if defer else "immediate")

    def resume(self) -> None:
        """Continue the paused item."""
        self._require_running("resume")
        self.api.re_resume()

    def stop(self, defer: bool = False, timeout: float = 60.0) -> None:
        """End the item keeping what was acquired (exit status "success").

        A queued item is taken out of the queue instead (it never runs).
        """
        self._end("re_stop", defer, timeout)

    def abort(self, defer: bool = False, timeout: float = 60.0) -> None:
        """End the item marking it aborted; the RE Manager puts a copy back in the queue."""
        self._end("re_abort", defer, timeout)

    def halt(self, timeout: float = 60.0) -> None:
        """End the item at once without the plan's cleanup (exit status "abort")."""
        self._end("re_halt", False, timeout)

    def cancel(self, timeout: float = 600.0) -> None:
        """Finish the current visit, then stop: ``stop(defer=True)``."""
        self._end("re_stop", True, timeout)

    def extend(self, *elements: Any, timeout: float = 60.0) -> int:
        """Append phases/waits to the running experiment, as `RunHandle.extend` does.

        Runs ``extend_experiment`` in the RE Manager's worker (``function_execute``, in the
        background of the running plan); the edit is validated there first and a refusal
        comes back as a `RuntimeError` naming the problem. Returns the experiment's
        number of visits after the edit.
        """
        from bluesky_queueserver_api import BFunc

        from ..plans import experiment_to_json

        self._require_running("extend")
        reply = self.api.function_execute(
            BFunc("extend_experiment", experiment_to_json(list(elements))),
            run_in_background=True,
        )
        if not reply.get("success", False):
            raise RuntimeError(f"cannot extend: {reply.get('msg', '')}")
        task = reply["task_uid"]
        self.api.wait_for_completed_task(task, timeout=timeout)
        result = self.api.task_result(task)["result"]
        if not result.get("success", False):
            raise RuntimeError(f"cannot extend: {result.get('msg', '')}")
        return int(result["return_value"])

    def _require_running(self, what: str) -> None:
        if self.api.status(reload=True).get("running_item_uid") != self.item_uid:
            raise RuntimeError(f"cannot {what}: item {self.item_uid} is {self.status()}")

    def _end(self, command: str, defer: bool, timeout: float) -> None:
        status = self.api.status(reload=True)
        if status.get("running_item_uid") != self.item_uid:
            if self._state(status) == QUEUED:
                self.api.item_remove(uid=self.item_uid)
                self._removed = True
            return  # ended already: nothing to do, as RunHandle
        self._ending = True
        if status["re_state"] == "running":
            self.api.re_pause(option="deferred" if defer else "immediate")
        self.api.wait_for_idle_or_paused(timeout=timeout)
        if self.api.status(reload=True)["re_state"] == "paused":
            getattr(self.api, command)()

    # ---------------------------------------------------------------- watching
    def watch(self) -> QueueRunHandle:
        """Emit ``statusChanged`` on every change, from a thread, until a final state."""
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, name="faro-queue-handle", daemon=True
            )
            self._watcher.start()
        return self

    def close(self) -> None:
        """Stop the watcher thread (the item is not affected)."""
        self._stop_watching.set()

    def _watch(self) -> None:
        last: Any = None
        while not self._stop_watching.is_set():
            status = self.api.status(reload=True)
            state = self._state(status)
            if state != last:
                last = state
                try:
                    self.statusChanged.emit(state)
                except Exception:  # a listener's error must not end the watching
                    logger.exception("a statusChanged listener of %r failed", self)
            if isinstance(state, RunState) and state.finished:
                return
            uid = status["status_uid"]
            with contextlib.suppress(TimeoutError):  # until it changes, or 5 s: see close()
                self.api.wait_for_condition(lambda s, uid=uid: s["status_uid"] != uid, timeout=5)

    def __repr__(self) -> str:
        return f"<QueueRunHandle {self.item_uid}>"
