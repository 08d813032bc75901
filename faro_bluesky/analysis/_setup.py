"""What the analyzer's parts read of it: its components and settings (`Setup`).

The pipeline and the completion read the components through the analyzer each time rather
than copying them, because users and the analysis service change them on a live
analyzer (``analyzer.stimulator = ...``, the service's relaying ``analyzer.board``).
`Setup` names exactly what they read, so the parts depend on that and not on `Analyzer`.
"""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol

from ._board import MaskBoard
from ._documents import Stack
from ._protocols import (
    FeatureExtractor,
    FrameInfo,
    RefFeatureExtractor,
    Segmenter,
    Stimulator,
    Tracker,
)


class Setup(Protocol):
    """The analyzer's components and settings, as its parts read them (analysis thread)."""

    segmenter: Segmenter
    tracker: Tracker | None
    features: FeatureExtractor | None
    ref_features: RefFeatureExtractor | None
    executor: Executor
    max_inflight: int
    history: int
    output: Path | None
    board: MaskBoard

    @property
    def stimulator(self) -> Stimulator | None: ...


def frame_info(stack: Stack, shape: tuple[int, ...]) -> FrameInfo:
    """What a component is told about ``stack`` (its pixels have ``shape``)."""
    head = stack.head
    return FrameInfo(
        fov=head.fov,
        t=head.t,
        frame=head.frame,
        phase=head.phase,
        channels=tuple(f.channel for f in stack.frames),
        time=head.time,
        scheduled=head.scheduled,
        stim=head.stim,
        metadata=dict(head.metadata),
        shape=(int(shape[-2]), int(shape[-1])),
    )
