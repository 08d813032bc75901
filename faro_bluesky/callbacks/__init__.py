"""Bluesky callbacks: terminal progress (status callback and document log to come)."""

from ._progress import ProgressDisplay

__all__ = ["ProgressDisplay"]
