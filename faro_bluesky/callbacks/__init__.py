"""Bluesky callbacks: the run status (`StatusCallback`) and terminal progress."""

from ._layout import KINDS, WAIT_KIND, Cell, RunLayout
from ._progress import ProgressDisplay, format_duration
from ._states import TRANSITIONS, Activity, RunState
from ._status import PhaseProgress, QueueDepth, RunStatus, StatusCallback

__all__ = [
    "KINDS",
    "TRANSITIONS",
    "WAIT_KIND",
    "Activity",
    "Cell",
    "PhaseProgress",
    "ProgressDisplay",
    "QueueDepth",
    "RunLayout",
    "RunState",
    "RunStatus",
    "StatusCallback",
    "format_duration",
]
