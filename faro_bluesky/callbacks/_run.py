"""`RunCounters`: what the status knows of the open run, and the snapshot made from it.

Kept apart from `StatusCallback` (which files documents and watches the RunEngine) so the
arithmetic of a snapshot (elapsed, remaining, the schedule's shift by pauses, the wait
countdown, the strip's cursor) reads as one function of the run's counters and the clock.
Only touched under `StatusCallback`'s lock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..schema import FrameKind, MaskFields, MissedField, Stream, VisitFields
from ._layout import RunLayout
from ._snapshot import PhaseProgress, RunStatus
from ._states import Activity, RunState, run_state


@dataclass(frozen=True)
class Seen:
    """What an event changed in the status."""

    changed: bool
    """Whether the snapshot changed (emit it)."""
    new_visit: bool = False
    """It began a visit (poll the queues)."""
    error: str | None = None
    """An error to show (a missed mask or visit)."""


@dataclass
class RunCounters:
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
    kind: Activity = Activity.NONE
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

    @classmethod
    def from_start(cls, doc: Mapping[str, Any]) -> RunCounters:
        """The counters of the run ``doc`` opens (its layout is set by the caller)."""
        num_visits = doc.get("num_visits")
        return cls(
            uid=str(doc["uid"]),
            plan_name=str(doc.get("plan_name", "")),
            start_time=float(doc.get("time", time.time())),
            on_resume=str(doc.get("on_resume", "shift")),
            visits_total=int(num_visits) if num_visits is not None else None,
            frames_total=int(doc["num_points"]) if doc.get("num_points") is not None else None,
        )

    def re_state(self, shown: RunState | None, now: float) -> None:
        """The RunEngine's state changed (``shown`` as the status shows it; `RE_STATES`).

        A pause (or suspension) begins when it is paused, and ends with any state but
        paused and pausing.
        """
        if shown is RunState.PAUSED and self.paused_since is None:
            self.paused_since = now
        elif shown not in (RunState.PAUSED, RunState.PAUSING):
            self.close_pause(now)

    def close_pause(self, now: float) -> None:
        """A pause ended at ``now``: add it to the pauses since the visit began."""
        if self.paused_since is not None:
            self.paused_since_visit += now - self.paused_since
            self.paused_since = None

    def descriptor(self, doc: Mapping[str, Any]) -> None:
        """Note which of this run's streams a descriptor opens (the ones the status reads)."""
        if doc.get("run_start") != self.uid:
            return
        name = doc.get("name")
        if name == Stream.PRIMARY:
            self.primary.add(doc["uid"])
        elif name == Stream.MASK:
            self.masks.add(doc["uid"])
        elif name == Stream.MISSED:
            self.missed.add(doc["uid"])

    def event(self, doc: Mapping[str, Any]) -> Seen:
        """Count a frame, or note a missed mask or visit (`SchemaError` on a bad event)."""
        data = doc.get("data", {})
        descriptor = doc.get("descriptor")
        if descriptor in self.masks:
            mask = MaskFields.from_event(data)
            if not mask.missed:
                return Seen(False)
            error = f"mask missed: FOV {mask.fov} t={mask.t} (waited {mask.wait_ms:.0f} ms)"
            return Seen(True, error=error)
        if descriptor in self.missed:
            visit = VisitFields.from_event(data)
            error = (
                f"visit missed: FOV {visit.p} t={visit.t}: "
                f"{data[MissedField.DEVICE]} failed: {data[MissedField.REASON]}"
            )
            return Seen(True, error=error)
        if descriptor not in self.primary:
            return Seen(False)
        visit = VisitFields.maybe_from_event(data)  # None: a stock plan's frame
        kind = visit.kind if visit is not None and visit.kind else FrameKind.IMAGE
        if kind == FrameKind.STIM:
            self.stim_frames += 1
        else:
            self.frames += 1
        self.kind = Activity(kind.value)
        new_visit = visit is not None and visit.index != self.visit_index
        if new_visit:
            self.begin_visit(doc, visit)  # type: ignore[arg-type]
        self.frames_in_visit += 1
        return Seen(True, new_visit=new_visit)

    def end(self, doc: Mapping[str, Any]) -> str | None:
        """The run's stop document: its end and exit status; the error to show, if any."""
        self.end_time = float(doc.get("time", time.time()))
        self.close_pause(self.end_time)
        self.exit_status = str(doc.get("exit_status", "success"))
        self.kind = Activity.NONE
        reason = doc.get("reason") or ""
        if self.exit_status != "success":
            return f"run {self.exit_status}" + (f": {reason}" if reason else "")
        if reason:  # a success that did not do everything it was asked (a warning)
            return f"run warning: {reason}"
        return None

    def begin_visit(self, doc: Mapping[str, Any], visit: VisitFields) -> None:
        """The first frame of a new visit (event ``doc``) arrived."""
        index = self.visit_index = visit.index
        self.t = visit.t
        self.p = visit.p
        self.phase = visit.phase or None
        self.frames_in_visit = 0
        if self.phase is not None:
            self.phase_begun[self.phase] = self.phase_begun.get(self.phase, 0) + 1
        self.scheduled = visit.scheduled
        layout = self.layout
        if self.origin is None:
            offset = float(layout.times[index]) if layout and index < layout.n_visits else 0.0
            self.origin = self.scheduled - offset
        self.paused_since_visit = 0.0  # visit-scheduled includes every earlier pause
        delay = float(doc.get("time", time.time())) - self.scheduled
        if self.lag_anchor is None:
            self.lag_anchor = delay
        self.lag_ms = (delay - self.lag_anchor) * 1000.0

    def status(
        self,
        now: float,
        *,
        re_state: str,
        pause_requested: bool,
        idle_threshold_s: float,
        **common: Any,
    ) -> RunStatus:
        """The snapshot at ``now`` (``common``: queues, errors, n_errors, time)."""
        layout = self.layout
        end = self.end_time if self.end_time is not None else now
        elapsed = max(0.0, end - self.start_time)
        n_visits = layout.n_visits if layout is not None else None
        i = self.visit_index
        known = layout is not None and 0 <= i < layout.n_visits
        complete = self.end_time is not None or (
            known and self.frames_in_visit >= int(layout.frames[i])  # type: ignore[union-attr]
        )
        # Schedule zero and the shift of the rest of the schedule by pauses so far.
        origin = self.origin if self.origin is not None else self.start_time
        shift = 0.0
        if self.scheduled is not None and known:
            shift = self.scheduled - origin - float(layout.times[i])  # type: ignore[union-attr]
        if self.on_resume == "shift":
            shift += self.paused_since_visit
            if self.paused_since is not None:
                shift += now - self.paused_since
        nxt = i + 1
        wait_remaining = None
        if layout is not None and nxt < layout.n_visits and (complete or i < 0):
            ahead = origin + float(layout.times[nxt]) + shift - now
            # Enter "waiting" only for a real gap; once in, stay until the visit begins.
            if ahead > idle_threshold_s or (self.waiting_after == i and ahead > 0):
                self.waiting_after = i
                wait_remaining = ahead
        state = run_state(
            self.exit_status,
            re_state,
            pause_requested=pause_requested,
            waiting=wait_remaining is not None,
        )
        if state != RunState.WAITING:
            wait_remaining = None
        if self.end_time is not None:
            remaining: float | None = 0.0
        elif layout is not None and layout.n_visits:
            late = max(0.0, (self.lag_ms or 0.0) / 1000.0)  # a lag tends to persist
            remaining = max(0.0, origin + layout.end + shift + late - now)
        elif self.frames_total and self.frames:
            remaining = elapsed / self.frames * max(0, self.frames_total - self.frames)
        else:
            remaining = None
        cell = -1
        if layout is not None and layout.n_visits:
            if known:
                cell = int(layout.visit_cell[i])
            if state == RunState.WAITING and nxt < layout.n_visits:
                ahead_cell = int(layout.visit_cell[nxt])
                if ahead_cell - 1 > cell:
                    cell = ahead_cell - 1  # the wait cell
        totals = layout.phase_totals() if layout is not None else {}
        names = list(totals) + [n for n in self.phase_begun if n not in totals]
        phases = tuple(
            PhaseProgress(
                n,
                self.phase_begun.get(n, 0) - (1 if n == self.phase and not complete else 0),
                totals.get(n),
            )
            for n in names
        )
        visits_total = self.visits_total if self.visits_total is not None else n_visits
        if visits_total is not None and i + 1 > visits_total:
            visits_total = i + 1
        return RunStatus(
            state=state,
            run_uid=self.uid,
            plan_name=self.plan_name,
            layout=layout,
            visit_index=i,
            t=self.t,
            p=self.p,
            phase=self.phase,
            kind=Activity.WAIT if state == RunState.WAITING else self.kind,
            visits_done=max(0, i + (1 if complete else 0)),
            visits_total=visits_total,
            frames_received=self.frames,
            frames_total=self.frames_total,
            stim_frames=self.stim_frames,
            phases=phases,
            elapsed_s=elapsed,
            scheduled_s=(self.scheduled - origin) if self.scheduled is not None else None,
            remaining_s=remaining,
            lag_ms=self.lag_ms,
            wait_remaining_s=wait_remaining,
            exit_status=self.exit_status,
            cell=cell,
            **common,
        )
