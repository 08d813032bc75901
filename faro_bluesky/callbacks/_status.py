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
``visit-scheduled`` (which already includes the shifts of earlier pauses).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from psygnal import Signal

from ._layout import RunLayout, layout_from_start
from ._snapshot import PhaseProgress, QueueDepth, RunStatus, parse_queue

__all__ = ["PhaseProgress", "QueueDepth", "RunStatus", "StatusCallback"]  # re-exported

logger = logging.getLogger(__name__)

_INLINE_LAYOUT_MAX = 20_000  # visits; bigger layouts are built on a helper thread


@dataclass
class _Run:
    """Mutable per-run counters, only touched under `StatusCallback._lock`."""

    uid: str
    plan_name: str
    start_time: float
    on_resume: str
    visits_total: int | None
    frames_total: int | None
    layout: RunLayout | None = None
    primary: set[str] = field(default_factory=set)
    masks: set[str] = field(default_factory=set)
    missed: set[str] = field(default_factory=set)
    visit_index: int = -1
    t: int | None = None
    p: int | None = None
    phase: str | None = None
    kind: str = ""
    frames_in_visit: int = 0
    frames: int = 0
    stim_frames: int = 0
    phase_begun: dict[str, int] = field(default_factory=dict)
    phase_of_visit: str | None = None
    origin: float | None = None
    """Epoch time of the experiment's schedule zero, from the first visit."""
    scheduled: float | None = None
    """``visit-scheduled`` of the current visit (epoch s)."""
    lag_anchor: float | None = None
    lag_ms: float | None = None
    paused_since: float | None = None
    paused_since_visit: float = 0.0
    waiting_after: int | None = None
    """The visit after which the microscope was last seen waiting (hysteresis)."""
    end_time: float | None = None
    exit_status: str | None = None


class StatusCallback:
    """A bluesky callback building `RunStatus` snapshots; ``RE.subscribe(status)``.

    Parameters
    ----------
    RE : RunEngine, optional
        Bind to it (see `bind`): pausing, paused and stopping come from the RunEngine's
        state, which documents don't carry.
    analyzer : object, optional
        Anything with a ``queue_stats()`` method returning ``{name: depth}`` (a depth may
        also be ``(depth, capacity)`` or ``{"depth": ..., "capacity": ...}``). Polled at
        every visit and tick, never required.
    sources : sequence of objects, optional
        More objects with ``queue_stats()`` (the camera's zarr writer, the catalog
        writer), shown with the analyzer's queues.
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
        analyzer: Any = None,
        sources: Sequence[Any] = (),
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
        self._run: _Run | None = None
        self._final: RunStatus | None = None
        self._errors: list[str] = []
        self._n_errors = 0
        self._queues: tuple[QueueDepth, ...] = ()
        self._queue_error_logged = False
        self._last: RunStatus | None = None
        self._ticker: threading.Thread | None = None
        self._tick_stop = threading.Event()
        self._RE: Any = None
        self._re_state = "idle"
        self._prev_hook: Callable[[str, str], Any] | None = None
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
        return self._RE

    def bind(self, RE: Any) -> None:
        """Watch ``RE.state`` through ``RE.state_hook``, calling any hook already there."""
        self.unbind()
        self._RE = RE
        self._re_state = str(RE.state)
        self._prev_hook = RE.state_hook
        RE.state_hook = self._on_re_state

    def unbind(self) -> None:
        """Restore the RunEngine's previous state hook (if ours is still installed)."""
        RE = self._RE
        if RE is None:
            return
        if RE.state_hook == self._on_re_state:
            RE.state_hook = self._prev_hook
            self._prev_hook = None
        # else a later hook chains to ours: ours keeps forwarding to the one before it.
        self._RE = None

    def _on_re_state(self, new: Any, old: Any) -> None:
        if self._prev_hook is not None:
            self._prev_hook(new, old)
        if self._RE is None:
            return
        try:
            now = time.time()
            with self._lock:
                self._re_state = str(new)
                run = self._run
                if run is not None:
                    if self._re_state in ("paused", "suspending") and run.paused_since is None:
                        run.paused_since = now
                    elif self._re_state not in ("paused", "suspending", "pausing"):
                        self._close_pause(run, now)
                if self._re_state == "panicked":
                    self._add_error_locked("RunEngine panicked: restart Python")
            self._emit()
        except Exception:
            logger.exception("StatusCallback: state hook failed (ignored)")

    @staticmethod
    def _close_pause(run: _Run, now: float) -> None:
        if run.paused_since is not None:
            run.paused_since_visit += now - run.paused_since
            run.paused_since = None

    # ------------------------------------------------------------------ documents
    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        """Take one document (never raises into the RunEngine)."""
        try:
            handler = self._handlers.get(name)
            if handler is not None and handler(doc):
                self._emit()
        except Exception:
            logger.exception("StatusCallback: %s document failed (ignored)", name)

    def _start(self, doc: Mapping[str, Any]) -> bool:
        num_visits = doc.get("num_visits")
        run = _Run(
            uid=str(doc["uid"]),
            plan_name=str(doc.get("plan_name", "")),
            start_time=float(doc.get("time", time.time())),
            on_resume=str(doc.get("on_resume", "shift")),
            visits_total=int(num_visits) if num_visits is not None else None,
            frames_total=int(doc["num_points"]) if doc.get("num_points") is not None else None,
        )
        inline = "schedule" in doc or (num_visits or 0) <= _INLINE_LAYOUT_MAX
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
            run = self._run
            if run is not None and doc.get("run_start") == run.uid:
                if doc.get("name") == "primary":
                    run.primary.add(doc["uid"])
                elif doc.get("name") == "mask":
                    run.masks.add(doc["uid"])
                elif doc.get("name") == "missed":
                    run.missed.add(doc["uid"])
        return False

    def _event(self, doc: Mapping[str, Any]) -> bool:
        new_visit = False
        with self._lock:
            run = self._run
            if run is None:
                return False
            data = doc.get("data", {})
            if doc.get("descriptor") in run.masks:
                if data.get("mask-missed"):
                    self._add_error_locked(
                        f"mask missed: FOV {data.get('mask-fov')} t={data.get('mask-t')} "
                        f"(waited {float(data.get('mask-wait_ms', 0.0)):.0f} ms)"
                    )
                    return True
                return False
            if doc.get("descriptor") in run.missed:
                self._add_error_locked(
                    f"visit missed: FOV {data.get('visit-p')} t={data.get('visit-t')}: "
                    f"{data.get('missed-device')} failed: {data.get('missed-reason')}"
                )
                return True
            if doc.get("descriptor") not in run.primary:
                return False
            kind = str(data.get("visit-kind", "image"))
            if kind == "stim":
                run.stim_frames += 1
            else:
                run.frames += 1
            run.kind = kind
            index = data.get("visit-index")
            if index is not None and int(index) != run.visit_index:
                new_visit = True
                self._begin_visit(run, doc, data, int(index))
            run.frames_in_visit += 1
        if new_visit:
            self._poll_queues()
        return True

    def _begin_visit(
        self, run: _Run, doc: Mapping[str, Any], data: Mapping[str, Any], index: int
    ) -> None:
        run.visit_index = index
        run.t = _int_or_none(data.get("visit-t"))
        run.p = _int_or_none(data.get("visit-p"))
        run.phase = str(data.get("visit-phase", "")) or None
        run.frames_in_visit = 0
        if run.phase is not None:
            run.phase_begun[run.phase] = run.phase_begun.get(run.phase, 0) + 1
        scheduled = data.get("visit-scheduled")
        if scheduled is None:
            return
        run.scheduled = float(scheduled)
        layout = run.layout
        if run.origin is None:
            offset = float(layout.times[index]) if layout and index < layout.n_visits else 0.0
            run.origin = run.scheduled - offset
        run.paused_since_visit = 0.0  # visit-scheduled includes every earlier pause
        delay = float(doc.get("time", time.time())) - run.scheduled
        if run.lag_anchor is None:
            run.lag_anchor = delay
        run.lag_ms = (delay - run.lag_anchor) * 1000.0

    def _stop(self, doc: Mapping[str, Any]) -> bool:
        with self._lock:
            run = self._run
            if run is None or doc.get("run_start") != run.uid:
                return False
            run.end_time = float(doc.get("time", time.time()))
            self._close_pause(run, run.end_time)
            run.exit_status = str(doc.get("exit_status", "success"))
            reason = doc.get("reason") or ""
            if run.exit_status != "success":
                self._add_error_locked(f"run {run.exit_status}" + (f": {reason}" if reason else ""))
            elif reason:  # a success that did not do everything it was asked (a warning)
                self._add_error_locked(f"run warning: {reason}")
            run.kind = ""
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
        fns = [getattr(s, "queue_stats", None) for s in (self.analyzer, *self.sources)]
        fns = [fn for fn in fns if fn is not None]
        if not fns:
            return
        try:
            queues = tuple(
                parse_queue(name, value) for fn in fns for name, value in dict(fn()).items()
            )
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
            self._last = snap
            self.changed.emit(snap)
            return snap

    def _build(self, now: float) -> RunStatus:
        run = self._run
        common = {
            "queues": self._queues,
            "errors": tuple(self._errors),
            "n_errors": self._n_errors,
            "time": now,
        }
        if run is None:
            if self._final is not None:
                state = "failed" if self._re_state == "panicked" else self._final.state
                return _replace(self._final, state=state, **common)
            return RunStatus(state="failed" if self._re_state == "panicked" else "idle", **common)
        layout = run.layout
        end = run.end_time if run.end_time is not None else now
        elapsed = max(0.0, end - run.start_time)
        n_visits = layout.n_visits if layout is not None else None
        i = run.visit_index
        known = layout is not None and 0 <= i < layout.n_visits
        complete = run.end_time is not None or (
            known and run.frames_in_visit >= int(layout.frames[i])  # type: ignore[union-attr]
        )
        # Schedule zero and the shift of the rest of the schedule by pauses so far.
        origin = run.origin if run.origin is not None else run.start_time
        shift = 0.0
        if run.scheduled is not None and known:
            shift = run.scheduled - origin - float(layout.times[i])  # type: ignore[union-attr]
        if run.on_resume == "shift":
            shift += run.paused_since_visit
            if run.paused_since is not None:
                shift += now - run.paused_since
        nxt = i + 1
        wait_remaining = None
        if layout is not None and nxt < layout.n_visits and (complete or i < 0):
            ahead = origin + float(layout.times[nxt]) + shift - now
            # Enter "waiting" only for a real gap; once in, stay until the visit begins.
            if ahead > self.idle_threshold_s or (run.waiting_after == i and ahead > 0):
                run.waiting_after = i
                wait_remaining = ahead
        state = self._state(run, wait_remaining is not None)
        if state != "waiting":
            wait_remaining = None
        if run.end_time is not None:
            remaining: float | None = 0.0
        elif layout is not None and layout.n_visits:
            late = max(0.0, (run.lag_ms or 0.0) / 1000.0)  # a lag tends to persist
            remaining = max(0.0, origin + layout.end + shift + late - now)
        elif run.frames_total and run.frames:
            remaining = elapsed / run.frames * max(0, run.frames_total - run.frames)
        else:
            remaining = None
        cell = -1
        if layout is not None and layout.n_visits:
            if known:
                cell = int(layout.visit_cell[i])
            if state == "waiting" and nxt < layout.n_visits:
                ahead_cell = int(layout.visit_cell[nxt])
                if ahead_cell - 1 > cell:
                    cell = ahead_cell - 1  # the wait cell
        totals = layout.phase_totals() if layout is not None else {}
        names = list(totals) + [n for n in run.phase_begun if n not in totals]
        phases = tuple(
            PhaseProgress(
                n,
                run.phase_begun.get(n, 0) - (1 if n == run.phase and not complete else 0),
                totals.get(n),
            )
            for n in names
        )
        visits_total = run.visits_total if run.visits_total is not None else n_visits
        if visits_total is not None and i + 1 > visits_total:
            visits_total = i + 1
        return RunStatus(
            state=state,
            run_uid=run.uid,
            plan_name=run.plan_name,
            layout=layout,
            visit_index=i,
            t=run.t,
            p=run.p,
            phase=run.phase,
            kind="wait" if state == "waiting" else run.kind,
            visits_done=max(0, i + (1 if complete else 0)),
            visits_total=visits_total,
            frames_received=run.frames,
            frames_total=run.frames_total,
            stim_frames=run.stim_frames,
            phases=phases,
            elapsed_s=elapsed,
            scheduled_s=(run.scheduled - origin) if run.scheduled is not None else None,
            remaining_s=remaining,
            lag_ms=run.lag_ms,
            wait_remaining_s=wait_remaining,
            exit_status=run.exit_status,
            cell=cell,
            **common,
        )

    def _state(self, run: _Run, waiting: bool) -> str:
        if run.exit_status is not None:
            return "done" if run.exit_status == "success" else "failed"
        re_state = self._re_state
        if re_state == "panicked":
            return "failed"
        if re_state in ("stopping", "aborting", "halting"):
            return "stopping"
        if re_state in ("paused", "suspending"):
            return "paused"
        if re_state == "pausing" or (
            self._RE is not None and getattr(self._RE, "deferred_pause_requested", False)
        ):
            return "pausing"
        return "waiting" if waiting else "running"

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


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _replace(status: RunStatus, **changes: Any) -> RunStatus:
    from dataclasses import replace

    return replace(status, **changes)


def _same(a: RunStatus, b: RunStatus) -> bool:
    """Equal apart from the snapshot time (so refreshes of a finished run stay silent)."""
    return _replace(a, time=0.0) == _replace(b, time=0.0)
