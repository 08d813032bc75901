"""The status snapshot types: frozen, so they can be handed across threads as they are."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..schema import QueueReporter
from ._layout import RunLayout
from ._states import Activity, RunState

__all__ = ["STATES", "PhaseProgress", "QueueDepth", "RunStatus", "parse_queue", "poll_queues"]

STATES = tuple(state.value for state in RunState)
"""Every `RunStatus.state` (the values of `RunState`)."""


@dataclass(frozen=True)
class PhaseProgress:
    """Visits done in one phase (by name) out of its scheduled total."""

    name: str
    done: int
    total: int | None


@dataclass(frozen=True)
class QueueDepth:
    """One queue reported by the analyzer's ``queue_stats()``."""

    name: str
    depth: int
    capacity: int | None = None

    @property
    def fraction(self) -> float | None:
        """Fill fraction, when the capacity is known."""
        return self.depth / self.capacity if self.capacity else None


@dataclass(frozen=True)
class RunStatus:
    """A snapshot of the current (or last) run; immutable, safe to hand across threads."""

    state: RunState = RunState.IDLE
    """One of idle, running, pausing, paused, waiting, stopping, done, failed (a
    `RunState`, equal to those strings)."""
    run_uid: str | None = None
    plan_name: str = ""
    layout: RunLayout | None = None
    """Static shape of an `optogenetic_plan` run (None for other plans, or while a very
    large schedule is still being rebuilt)."""
    visit_index: int = -1
    """``visit-index`` of the current (last begun) visit; -1 before the first frame."""
    t: int | None = None
    p: int | None = None
    phase: str | None = None
    kind: Activity = Activity.NONE
    """What the microscope does now: image, stim, ref, wait, or "" when not running (an
    `Activity`, equal to those strings)."""
    visits_done: int = 0
    """Visits finished (all their frames received, or a later visit begun)."""
    visits_total: int | None = None
    frames_received: int = 0
    """Imaging and reference frames in stream ``primary`` (what ``num_points`` counts)."""
    frames_total: int | None = None
    stim_frames: int = 0
    """Stimulation exposures recorded (not in ``num_points``)."""
    phases: tuple[PhaseProgress, ...] = ()
    elapsed_s: float = 0.0
    """Wall time since the run started (frozen at its end)."""
    scheduled_s: float | None = None
    """Scheduled start of the current visit, s from the experiment start (with shifts)."""
    remaining_s: float | None = None
    """Until the last visit's scheduled start (a rate estimate for plans without one)."""
    lag_ms: float | None = None
    """How late the current visit began versus its schedule, relative to the first visit."""
    wait_remaining_s: float | None = None
    """Seconds until the next scheduled visit while ``state == "waiting"``."""
    queues: tuple[QueueDepth, ...] = ()
    errors: tuple[str, ...] = ()
    """Short descriptions of the most recent errors (mask misses, failed exit status, ...)."""
    n_errors: int = 0
    """All errors of the run (``errors`` keeps only the last ones)."""
    exit_status: str | None = None
    cell: int = -1
    """Strip cell of the cursor (`RunLayout.cells`): the current visit, or a wait cell."""
    time: float = 0.0
    """Wall clock (epoch s) when this snapshot was taken."""

    @property
    def active(self) -> bool:
        """Whether a run is open (not idle, done or failed)."""
        return RunState(self.state).active


def parse_queue(name: Any, value: Any) -> QueueDepth:
    """One ``queue_stats()`` entry: a depth, ``(depth, capacity)`` or a mapping."""
    if isinstance(value, Mapping):
        depth = value.get("depth", value.get("size", value.get("qsize", 0)))
        cap = value.get("capacity", value.get("maxsize", value.get("max")))
    elif isinstance(value, tuple | list):
        depth, cap = (value[0], value[1]) if len(value) > 1 else (value[0], None)
    else:
        depth, cap = value, None
    return QueueDepth(str(name), int(depth), int(cap) if cap else None)


def poll_queues(reporters: Iterable[QueueReporter]) -> tuple[QueueDepth, ...]:
    """Every queue the ``reporters`` report now, in order (raises what they raise)."""
    return tuple(
        parse_queue(name, value)
        for reporter in reporters
        for name, value in dict(reporter.queue_stats()).items()
    )
