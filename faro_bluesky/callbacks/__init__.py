"""Bluesky callbacks: the run status (`StatusCallback`) and terminal progress."""

from ._layout import KINDS, RunLayout
from ._progress import ProgressDisplay
from ._status import PhaseProgress, QueueDepth, RunStatus, StatusCallback

__all__ = [
    "KINDS",
    "PhaseProgress",
    "ProgressDisplay",
    "QueueDepth",
    "RunLayout",
    "RunStatus",
    "StatusCallback",
]
