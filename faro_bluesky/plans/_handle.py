"""Background runs: `start_background(RE, plan)` returns a `RunHandle` at once.

``RE(plan)`` blocks its caller until the plan pauses or ends, which freezes a notebook (and
the napari viewer in it) for the whole experiment. Here a worker thread makes the blocking
calls (``RE(plan)``, ``RE.resume()``, ``RE.stop()`` on a paused run) while the caller keeps
the prompt; the RunEngine, its loop, its callbacks and its documents are unchanged, so a
subscribed `StatusCallback`, the catalog writer and the analyzer follow the run as usual.

Ending a *running* run goes through a pause: ``stop()`` asks for a pause and the worker
stops the run once it is paused. A direct ``RE.stop()`` racing a pause that is landing on
the RunEngine's loop can leave the run half-stopped with nobody to finish it; pause then
stop uses only transitions bluesky makes atomic, and the pause blanks the DMD first.
docs/decisions/0040-background-runs.md gives the rest (Ctrl-C, during_task, extending).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from bluesky.run_engine import RunEngineResult
from bluesky.utils import RunEngineInterrupted, TransitionError
from psygnal import Signal

from ._lease import EngineLease, on_loop
from ._runstate import Outbox, RunState, outcome

__all__ = ["RunHandle", "RunState", "start_background"]

logger = logging.getLogger(__name__)


class RunHandle:
    """A plan running on a RunEngine in the background; built by `start_background`.

    Every method may be called from any thread (the notebook, a Qt slot, a callback).
    `statusChanged` is emitted with the new `RunState` from whichever thread changed it
    (often the RunEngine's): in a Qt application connect with ``thread="main"`` or hand
    it to a queued signal, never touch a widget from there.
    """

    statusChanged = Signal(RunState)

    def __init__(self, RE: Any, plan: Any) -> None:
        self.RE = RE
        self.plan = plan
        """The plan as given (an `OptogeneticPlan` can be extended while it runs)."""
        self._lock = threading.RLock()
        self._outbox = Outbox(self.statusChanged.emit)
        self._last = RunState.RUNNING
        self._final: RunState | None = None
        self._pending: str | None = None  # resume/stop/abort/halt due when the RE pauses
        self._ending = False  # an end command was asked for
        self._in_call = False  # our worker is inside a blocking RunEngine call
        self._begun = threading.Event()  # the RE ran, or the call failed before it did
        self._done = threading.Event()
        self._result: RunEngineResult | None = None
        self._exception: BaseException | None = None
        self._ran = False  # the RunEngine went to "running"
        self._lease: EngineLease | None = None

    # ------------------------------------------------------------------ public
    def status(self) -> RunState:
        """The run's state now."""
        with self._lock:
            return self._state_locked()

    @property
    def uids(self) -> tuple[str, ...]:
        """RunStart uids of the run(s) opened so far."""
        return tuple(self._lease.starts) if self._lease is not None else ()

    def wait(self, timeout: float | None = None) -> RunEngineResult:
        """Block until the run ends; return its result or raise the plan's exception.

        Raises `TimeoutError` if it is still going after ``timeout`` seconds (a paused run
        waits for `resume`, `stop` or `abort`).
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"the run is still {self.status()} after {timeout} s")
        if self._exception is not None:
            raise self._exception
        assert self._result is not None
        if self._result.exit_status == "fail":
            raise RuntimeError(f"the run failed: {self._result.reason}")
        return self._result

    def pause(self, defer: bool = True) -> None:
        """Pause at the next checkpoint (``defer=True``, between visits) or at once."""
        self._refuse_if_finished("pause")
        self._request_pause(defer)
        self._update()

    def resume(self) -> None:
        """Continue a paused run (or one whose pause has not landed yet)."""
        with self._lock:
            self._refuse_if_finished("resume")
            if self._ending:
                raise RuntimeError("the run is stopping; it cannot be resumed")
            state = str(self.RE.state)
            if state == "paused" and not self._in_call:
                self._launch(self.RE.resume)
            elif state in ("paused", "pausing") or self.RE.deferred_pause_requested:
                self._pending = "resume"  # taken when the pause lands
            else:
                raise RuntimeError(f"the run is not paused (RunEngine {state})")
        self._update()

    def stop(self, defer: bool = False) -> None:
        """End the run keeping what was acquired (exit status "success").

        ``defer=False`` interrupts the current message; ``defer=True`` lets the current
        visit finish. Nothing happens if the run has already ended.
        """
        self._end("stop", defer)

    def abort(self, defer: bool = False) -> None:
        """End the run marking it aborted (exit status "abort"); cleanup still runs."""
        self._end("abort", defer)

    def halt(self) -> None:
        """End the run at once without the plan's cleanup (exit status "abort")."""
        self._end("halt", False)

    def cancel(self) -> None:
        """Finish the current visit, then stop: faro's cancel, ``stop(defer=True)``."""
        self._end("stop", True)

    def extend(self, *elements: Any) -> None:
        """Append phases/waits/decisions to a running `optogenetic_plan`.

        Validated at once (an invalid addition raises, the run goes on unchanged); the
        new visits follow the scheduled ones. Too late once the last visit has run.
        """
        self._editor("extend")(*elements)

    def replace_pending(self, elements: Sequence[Any]) -> None:
        """Replace the elements of a running `optogenetic_plan` not yet begun."""
        self._editor("replace_pending")(elements)

    def __repr__(self) -> str:
        return f"<RunHandle {self.status()} uids={list(self.uids)}>"

    # ---------------------------------------------------------------- commands
    def _refuse_if_finished(self, what: str) -> None:
        if self._final is not None:
            raise RuntimeError(f"cannot {what}: the run has ended ({self._final})")

    def _editor(self, name: str) -> Callable[..., None]:
        edit = getattr(self.plan, name, None)
        if not callable(edit):
            raise TypeError(
                f"{type(self.plan).__name__} has no {name}(): only an optogenetic_plan "
                "passed to start_background as it is can be edited while it runs"
            )
        self._refuse_if_finished(name)
        return edit

    def _end(self, command: str, defer: bool) -> None:
        with self._lock:
            if self._final is not None:
                return
            self._ending = True
            self._pending = command
            now = str(self.RE.state) == "paused" and not self._in_call
            if now:
                self._take_pending_locked()
        if not now:  # pause first; the worker (or the state hook) ends it once paused
            self._request_pause(defer)
        self._update()

    def _request_pause(self, defer: bool) -> None:
        call = partial(self.RE.request_pause, defer=defer)
        if on_loop(self.RE):  # request_pause waits for the loop: never on the loop itself
            threading.Thread(target=_quietly, args=(call,), daemon=True).start()
            return
        with contextlib.suppress(TransitionError):  # already pausing, paused or ending:
            call()  # the pending command still applies

    def _take_pending_locked(self) -> None:
        """Run the pending command on a new worker (the RunEngine is paused)."""
        command, self._pending = self._pending, None
        if command is not None:
            self._launch(getattr(self.RE, command))

    def _launch(self, call: Callable[[], Any]) -> None:
        self._in_call = True
        threading.Thread(
            target=self._drive, args=(call,), name="faro-background-run", daemon=True
        ).start()

    def _drive(self, call: Callable[[], Any]) -> None:
        """Make blocking RunEngine calls until the run pauses (idle) or ends."""
        while True:
            try:
                out = call()
            except RunEngineInterrupted:
                with self._lock:
                    state = str(self.RE.state)
                    if state == "paused" and self._pending is not None:
                        command, self._pending = self._pending, None
                        call = getattr(self.RE, command)
                        continue
                    if state != "idle":  # paused (or ended by another thread): follow it
                        self._in_call = False
                        break
                self._finish(None, None, True)  # stopped by someone else's RE.stop()
                return
            except TransitionError:  # another thread resumed or ended it first
                with self._lock:
                    self._in_call = False
                    if str(self.RE.state) != "idle":
                        break
                self._finish(None, None, True)
                return
            except BaseException as exc:
                self._finish(None, exc)
                return
            else:
                self._finish(out, None)
                return
        self._begun.set()
        self._update()

    # ------------------------------------------------------------------ state
    def _state_locked(self) -> RunState:
        if self._final is not None:
            return self._final
        state = str(self.RE.state)
        if self._ending or state in ("stopping", "aborting", "halting"):
            return RunState.STOPPING
        if state == "paused":
            return RunState.PAUSED
        if state == "pausing" or (state == "running" and self.RE.deferred_pause_requested):
            return RunState.PAUSING
        if state == "idle":  # between calls: nothing new to say
            return self._last
        return RunState.RUNNING

    def _update(self) -> None:
        with self._lock:
            new = self._state_locked()
            if new == self._last:
                return
            self._last = new
            self._outbox.put(new)  # queued under the lock: emitted in this order
        self._outbox.drain()

    def _on_state(self, state: str) -> None:
        """Chained into ``RE.state_hook``: runs on the RunEngine's loop, never blocks."""
        try:
            if state == "running":
                self._ran = True
                self._begun.set()
            with self._lock:
                if state in ("stopping", "aborting", "halting"):
                    self._ending = True  # ended early, maybe by another thread's RE.stop()
                if state == "paused" and not self._in_call:
                    self._take_pending_locked()  # a pause landed with a command waiting
                ended = state == "idle" and not self._in_call
            if ended:  # another thread (a widget's Resume) drove the run to its end
                self._finish(None, None)
            else:
                self._update()
        except Exception:
            logger.exception("RunHandle: state hook failed (ignored)")

    # --------------------------------------------------------------- lifetime
    def _start(self, subs: Any, md: dict[str, Any]) -> None:
        self._lease = EngineLease(self.RE, self._on_state, self)  # refuses a busy RE
        self._launch(partial(self.RE, self.plan, subs, **md))
        self._begun.wait()  # the RE is running (or refused the plan): status() is true

    def _finish(self, out: Any, exc: BaseException | None, interrupted: bool = False) -> None:
        with self._lock:
            if self._final is not None:
                return
            self._in_call = False
            self._pending = None
            self._exception = exc
            lease = self._lease
            self._result, self._final = outcome(
                out,
                exc,
                interrupted=interrupted or self._ending,
                stop=lease.stop if lease is not None else None,
                starts=self.uids,
            )
            if lease is not None:
                lease.release()
        self._done.set()
        self._begun.set()
        self._update()


def start_background(RE: Any, plan: Any, subs: Any = None, /, **md: Any) -> RunHandle:
    """Run ``plan`` on ``RE`` in a worker thread; return its `RunHandle` at once.

    The arguments are ``RE(plan, subs, **md)``'s. When this returns, the RunEngine is
    running the plan (a plan refused before it starts, e.g. a busy RunEngine, raises
    here). Control the run through the handle: ``pause()``, ``resume()``, ``stop()``,
    ``abort()``, ``cancel()``, ``wait()``; Ctrl-C does not pause a background run.
    """
    if on_loop(RE):
        raise RuntimeError("start_background cannot be called from the RunEngine's thread")
    handle = RunHandle(RE, plan)
    handle._start(subs, md)
    if handle._exception is not None and not handle._ran:
        raise handle._exception  # refused before it ran (not a plan, busy, panicked)
    return handle


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except TransitionError:
        pass
    except Exception:
        logger.exception("RunHandle: %r failed", call)
