"""The status' states as data: `RunState`, its transitions table, and `Activity`.

Modelled on bluesky's ``RunEngineStateMachine`` (a ``States`` enum and a from → to table)
and pymmcore-plus's ``RunState`` (a ``str`` enum). They were plain strings compared in
several places; here each state is named once, with what it means, and the edges a
status may take are one table that tests walk. Both are `StrEnum`: a snapshot's ``state``
and ``kind`` still equal the strings users and widgets compare them with
(``snap.state == "paused"``).

A status' state is derived when a snapshot is taken (from the run's documents, the
RunEngine's state and the clock, `run_state`), not stored: so the table lists the edges
between two consecutive snapshots, which may skip a state in between (a pause that
completed between two snapshots shows as running → paused). `StatusCallback` logs an edge
the table does not have: a derivation gone wrong, never a reason to raise into the
RunEngine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Final

from ..schema import FrameKind
from ._layout import WAIT_KIND

__all__ = [
    "RE_STATES",
    "TRANSITIONS",
    "Activity",
    "RunState",
    "StateHook",
    "can_follow",
    "idle_state",
    "run_state",
]


class RunState(StrEnum):
    """What the microscope's run is doing (`RunStatus.state`)."""

    IDLE = "idle"
    """No run yet (since the status was made)."""
    RUNNING = "running"
    """A run is open and acquiring (or about to)."""
    PAUSING = "pausing"
    """A pause was requested; the run pauses at its next checkpoint (between visits)."""
    PAUSED = "paused"
    """Paused (or suspended): ``RE.resume()``, ``RE.stop()``, ``RE.abort()``."""
    WAITING = "waiting"
    """The current visit is complete and the next one is due later: the microscope
    rests (a wait, or the gap before an interval's next visit)."""
    STOPPING = "stopping"
    """The RunEngine is stopping, aborting or halting the run."""
    DONE = "done"
    """The last run closed with exit status ``success``."""
    FAILED = "failed"
    """The last run failed or was aborted, or the RunEngine panicked."""

    @property
    def active(self) -> bool:
        """Whether a run is open (not idle, done or failed)."""
        return self not in _ENDED


_ENDED = frozenset({RunState.IDLE, RunState.DONE, RunState.FAILED})
_OPEN = frozenset(RunState) - _ENDED
_RUN_STARTS = frozenset({RunState.RUNNING, RunState.WAITING, RunState.PAUSING, RunState.FAILED})
"""States a new run's first snapshot may show (failed: the RunEngine panicked)."""

TRANSITIONS: Final[Mapping[RunState, frozenset[RunState]]] = {
    RunState.IDLE: _RUN_STARTS,
    RunState.RUNNING: _OPEN - {RunState.RUNNING} | {RunState.DONE, RunState.FAILED},
    RunState.WAITING: _OPEN - {RunState.WAITING} | {RunState.DONE, RunState.FAILED},
    RunState.PAUSING: _OPEN - {RunState.PAUSING} | {RunState.DONE, RunState.FAILED},
    RunState.PAUSED: _OPEN - {RunState.PAUSED} | {RunState.DONE, RunState.FAILED},
    RunState.STOPPING: frozenset({RunState.DONE, RunState.FAILED}),
    RunState.DONE: _RUN_STARTS,
    RunState.FAILED: _RUN_STARTS - {RunState.FAILED},
}
"""From a state, the states the next snapshot may show (besides the same one).

Once a run has been seen, `IDLE` never comes back (the last run stays shown as done or
failed); a stopping run only ends; a run never opens paused or stopping."""


def can_follow(old: RunState, new: RunState) -> bool:
    """Whether a snapshot in ``new`` may follow one in ``old``."""
    return new == old or new in TRANSITIONS[old]


RE_STATES: Final[Mapping[str, RunState | None]] = {
    "idle": None,
    "running": None,
    "pausing": RunState.PAUSING,
    "paused": RunState.PAUSED,
    "suspending": RunState.PAUSED,
    "halting": RunState.STOPPING,
    "stopping": RunState.STOPPING,
    "aborting": RunState.STOPPING,
    "panicked": RunState.FAILED,
}
"""Each of bluesky's ``RunEngineStateMachine.States`` (by value) as it shows in an open
run's status; None: the run's own progress decides (running or waiting)."""


def run_state(
    exit_status: str | None, re_state: str, *, pause_requested: bool, waiting: bool
) -> RunState:
    """The state of a run: closed (``exit_status``), else the RunEngine's, else its own.

    ``pause_requested``: a deferred pause waits for the next checkpoint (pausing);
    ``waiting``: the current visit is complete and the next is due later.
    """
    if exit_status is not None:
        return RunState.DONE if exit_status == "success" else RunState.FAILED
    shown = RE_STATES.get(re_state)
    if shown is not None:
        return shown
    if pause_requested:
        return RunState.PAUSING
    return RunState.WAITING if waiting else RunState.RUNNING


def idle_state(last: RunState | None, re_state: str) -> RunState:
    """The state with no run open: the last run's (idle before any), failed on panic."""
    if re_state == "panicked":
        return RunState.FAILED
    return last if last is not None else RunState.IDLE


class Activity(StrEnum):
    """What the microscope does within a run now (`RunStatus.kind`)."""

    NONE = ""
    """Not running (no run, or it ended)."""
    IMAGE = FrameKind.IMAGE.value
    """Taking an imaging frame."""
    STIM = FrameKind.STIM.value
    """Stimulating (the DMD shows the mask)."""
    REF = FrameKind.REF.value
    """Taking a reference frame."""
    WAIT = WAIT_KIND
    """Resting until the next visit is due (`RunState.WAITING`)."""


class StateHook:
    """Follows a RunEngine's state through ``RE.state_hook``, chained, not clobbered.

    A pause produces no document: the RunEngine's state is the only way to see one. The
    hook already installed keeps being called first; `unbind` restores it if ours is still
    the installed one (else a later hook chains to ours, which keeps forwarding).
    ``on_change`` gets each new state (a ``RunEngineStateMachine.States`` value) on the
    RunEngine's thread and must not raise.
    """

    def __init__(self, on_change: Callable[[str], None]) -> None:
        self._on_change = on_change
        self.RE: Any = None
        """The bound RunEngine, or None."""
        self._prev: Callable[[Any, Any], Any] | None = None

    @property
    def pause_requested(self) -> bool:
        """Whether the bound RunEngine holds a deferred pause (taken at the next checkpoint)."""
        return self.RE is not None and bool(getattr(self.RE, "deferred_pause_requested", False))

    def bind(self, RE: Any) -> None:
        """Install the hook on ``RE`` (after unbinding from any other)."""
        self.unbind()
        self.RE = RE
        self._prev = RE.state_hook
        RE.state_hook = self._hook

    def unbind(self) -> None:
        """Restore the RunEngine's previous state hook (if ours is still installed)."""
        RE = self.RE
        if RE is None:
            return
        if RE.state_hook == self._hook:
            RE.state_hook = self._prev
            self._prev = None
        self.RE = None

    def _hook(self, new: Any, old: Any) -> None:
        if self._prev is not None:
            self._prev(new, old)
        if self.RE is not None:
            self._on_change(str(new))
