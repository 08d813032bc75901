"""`StatusCallback`: what the microscope is doing, as a frozen `RunStatus` snapshot.

The RunEngine calls every subscribed callback inline on its own thread, so this one only
counts and records: no I/O, no waiting, and it never raises into the RunEngine (an error
is logged and the run goes on, ARCHITECTURE decision 5). Readers on other threads (a Qt
timer, a terminal renderer) take `StatusCallback.snapshot`, built under a lock; listeners
of the psygnal `StatusCallback.changed` signal get the same snapshots pushed from the
RunEngine thread (or the status' own ticker thread) and must hand them on (a queued Qt
signal), never touch a GUI from there.

A pause produces no document, so the callback also watches the RunEngine's state through
``RE.state_hook`` (chained, not clobbered) when it is bound with ``StatusCallback(RE=RE)``.
Time-dependent fields (elapsed, remaining, the wait countdown) are computed when a
snapshot is taken, from the schedule in the start document and each visit's
``visit-scheduled`` (which already includes the shifts of earlier pauses). Events are read
through `faro_bluesky.schema`: an event whose fields do not match it is shown as an error
in the snapshot (and logged), not skipped in silence.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from psygnal import Signal

from ..schema import QueueReporter, SchemaError
from ._layout import layout_from_start
from ._run import RunCounters
from ._snapshot import PhaseProgress, QueueDepth, RunStatus, poll_queues
from ._states import RE_STATES, RunState, StateHook, can_follow, idle_state

__all__ = ["PhaseProgress", "QueueDepth", "RunStatus", "StatusCallback"]  # re-exported

logger = logging.getLogger(__name__)

_INLINE_LAYOUT_MAX = 20_000  # visits; bigger layouts are built on a helper thread


class StatusCallback:
    """A bluesky callback building `RunStatus` snapshots; ``RE.subscribe(status)``.

    Parameters
    ----------
    RE : RunEngine, optional
        Bind to it (see `bind`): pausing, paused and stopping come from the RunEngine's
        state, which documents don't carry.
    analyzer : object, optional
        Polled at every visit and tick if it is a `QueueReporter` (a ``queue_stats()``
        method returning ``{name: depth}``; a depth may also be ``(depth, capacity)`` or
        ``{"depth": ..., "capacity": ...}``); anything else is not polled.
    sources : sequence of objects, optional
        More `QueueReporter` objects (the camera's zarr writer, the catalog writer),
        shown with the analyzer's queues.
    tick_s : float or None
        While a run is open a daemon thread refreshes the time-dependent fields and emits
        `changed` this often (so "waiting" and the countdown reach listeners without
        documents). None: no thread; call `refresh` yourself.
    idle_threshold_s : float
        The microscope is "waiting" when the current visit is complete and the next one
        is scheduled more than this far ahead.
    max_errors : int
        How many error strings snapshots keep (the count is kept in full).

    """

    changed = Signal(RunStatus)
    """Emitted with the new snapshot whenever it changes (from the RunEngine's or the
    ticker's thread: listeners must not touch Qt widgets directly)."""

    def __init__(
        self,
        RE: Any = None,
        *,
        analyzer: object = None,
        sources: Sequence[object] = (),
        tick_s: float | None = 0.5,
        idle_threshold_s: float = 0.5,
        max_errors: int = 50,
    ) -> None:
        self.analyzer = analyzer
        self.sources = list(sources)
        self.tick_s = tick_s
        self.idle_threshold_s = idle_threshold_s
        self.max_errors = max_errors
        self._lock = threading.RLock()
        self._emit_lock = threading.RLock()  # a listener may call refresh()
        self._run: RunCounters | None = None
        self._final: RunStatus | None = None
        self._errors: list[str] = []
        self._n_errors = 0
        self._queues: tuple[QueueDepth, ...] = ()
        self._queue_error_logged = False
        self._last: RunStatus | None = None
        self._ticker: threading.Thread | None = None
        self._tick_stop = threading.Event()
        self._hook = StateHook(self._on_re_state)
        self._re_state = "idle"
        """The bound RunEngine's state (a bluesky ``RunEngineStateMachine.States`` value)."""
        self._odd_edges: set[tuple[RunState, RunState]] = set()
        self._handlers: dict[str, Callable[[Mapping[str, Any]], bool]] = {
            "start": self._start,
            "descriptor": self._descriptor,
            "event": self._event,
            "stop": self._stop,
        }
        if RE is not None:
            self.bind(RE)

    # ------------------------------------------------------------ RunEngine binding
    @property
    def RE(self) -> Any:
        """The bound RunEngine, or None."""
        return self._hook.RE

    def bind(self, RE: Any) -> None:
        """Watch ``RE.state`` through ``RE.state_hook``, calling any hook already there."""
        self._hook.bind(RE)
        self._re_state = str(RE.state)

    def unbind(self) -> None:
        """Restore the RunEngine's previous state hook (if ours is still installed)."""
        self._hook.unbind()

    def _on_re_state(self, new: str) -> None:
        try:
            now = time.time()
            with self._lock:
                self._re_state = new
                shown = RE_STATES.get(new)
                if self._run is not None:
                    self._run.re_state(shown, now)
                if shown is RunState.FAILED:  # panicked
                    self._add_error_locked("RunEngine panicked: restart Python")
            self._emit()
        except Exception:
            logger.exception("StatusCallback: state hook failed (ignored)")

    # ------------------------------------------------------------------ documents
    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        """Take one document (never raises into the RunEngine)."""
        try:
            handler = self._handlers.get(name)
            if handler is not None and handler(doc):
                self._emit()
        except SchemaError as exc:  # a producer out of step with the schema: show it
            logger.error("StatusCallback: %s document does not match the schema: %s", name, exc)
            self.add_error(f"document schema: {exc}")
        except Exception:
            logger.exception("StatusCallback: %s document failed (ignored)", name)

    def _start(self, doc: Mapping[str, Any]) -> bool:
        run = RunCounters.from_start(doc)
        inline = "schedule" in doc or (doc.get("num_visits") or 0) <= _INLINE_LAYOUT_MAX
        if inline:
            run.layout = layout_from_start(doc)
        with self._lock:
            self._run = run
            self._final = None
            self._errors = []
            self._n_errors = 0
        if not inline:  # rebuilding 100 000 visits takes ~0.5 s: not on the RunEngine thread
            threading.Thread(
                target=self._build_layout, args=(dict(doc),), name="faro-status-layout", daemon=True
            ).start()
        self._start_ticker()
        self._poll_queues()
        return True

    def _build_layout(self, doc: dict[str, Any]) -> None:
        try:
            layout = layout_from_start(doc)
        except Exception:
            logger.exception("StatusCallback: could not rebuild the schedule of a large run")
            return
        with self._lock:
            if self._run is not None and self._run.uid == doc["uid"]:
                self._run.layout = layout
        self._emit()

    def _descriptor(self, doc: Mapping[str, Any]) -> bool:
        with self._lock:
            if self._run is not None:
                self._run.descriptor(doc)
        return False

    def _event(self, doc: Mapping[str, Any]) -> bool:
        with self._lock:
            if self._run is None:
                return False
            seen = self._run.event(doc)
            if seen.error is not None:
                self._add_error_locked(seen.error)
        if seen.new_visit:
            self._poll_queues()
        return seen.changed

    def _stop(self, doc: Mapping[str, Any]) -> bool:
        with self._lock:
            run = self._run
            if run is None or doc.get("run_start") != run.uid:
                return False
            error = run.end(doc)
            if error is not None:
                self._add_error_locked(error)
        self._poll_queues()
        with self._lock:
            self._final = self._build(time.time())
            self._run = None
        self._tick_stop.set()
        return True

    # -------------------------------------------------------------------- errors
    def add_error(self, text: str) -> None:
        """Record an error from elsewhere (an analyzer, a storage writer...)."""
        with self._lock:
            self._add_error_locked(str(text))
        self._emit()

    def _add_error_locked(self, text: str) -> None:
        self._n_errors += 1
        self._errors.append(text)
        del self._errors[: -self.max_errors]

    # -------------------------------------------------------------------- queues
    def _poll_queues(self) -> None:
        reporters = [s for s in (self.analyzer, *self.sources) if isinstance(s, QueueReporter)]
        if not reporters:
            return
        try:
            queues = poll_queues(reporters)
        except Exception:
            if not self._queue_error_logged:
                logger.exception("StatusCallback: analyzer.queue_stats() failed (ignored)")
                self._queue_error_logged = True
            return
        with self._lock:
            self._queues = queues

    # ------------------------------------------------------------------ snapshots
    @property
    def snapshot(self) -> RunStatus:
        """The status now (any thread)."""
        with self._lock:
            return self._build(time.time())

    def refresh(self) -> RunStatus:
        """Poll the analyzer and the clock; emit `changed` if anything moved."""
        self._poll_queues()
        return self._emit()

    def _emit(self) -> RunStatus:
        with self._emit_lock:  # snapshots reach listeners in the order they were built
            with self._lock:
                snap = self._build(time.time())
            last = self._last
            if last is not None and _same(last, snap):
                return snap
            if last is not None:
                self._check_edge(RunState(last.state), RunState(snap.state))
            self._last = snap
            self.changed.emit(snap)
            return snap

    def _check_edge(self, old: RunState, new: RunState) -> None:
        """Log (once per edge) a state change the transitions table does not have."""
        if not can_follow(old, new) and (old, new) not in self._odd_edges:
            self._odd_edges.add((old, new))
            logger.warning("StatusCallback: unexpected state change %s -> %s", old, new)

    def _build(self, now: float) -> RunStatus:
        run = self._run
        common = {
            "queues": self._queues,
            "errors": tuple(self._errors),
            "n_errors": self._n_errors,
            "time": now,
        }
        if run is None:
            final = self._final
            state = idle_state(RunState(final.state) if final is not None else None, self._re_state)
            if final is not None:
                return replace(final, state=state, **common)
            return RunStatus(state=state, **common)
        return run.status(
            now,
            re_state=self._re_state,
            pause_requested=self._hook.pause_requested,
            idle_threshold_s=self.idle_threshold_s,
            **common,
        )

    # --------------------------------------------------------------------- ticker
    def _start_ticker(self) -> None:
        if self.tick_s is None:
            return
        self._tick_stop.set()
        stop = self._tick_stop = threading.Event()

        def tick() -> None:
            while not stop.wait(self.tick_s):
                try:
                    self.refresh()
                except Exception:
                    logger.exception("StatusCallback: refresh failed (ignored)")

        self._ticker = threading.Thread(target=tick, name="faro-status-tick", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        """Stop the ticker thread and unbind from the RunEngine."""
        self._tick_stop.set()
        self.unbind()


def _same(a: RunStatus, b: RunStatus) -> bool:
    """Equal apart from the snapshot time (so refreshes of a finished run stay silent)."""
    return replace(a, time=0.0) == replace(b, time=0.0)
