"""`AnalysisRun`: everything the analysis holds for one run, made anew at each start.

The analyzer used to keep these as 18 attributes of its own, reset together in one method;
a field added without its reset leaked from one run into the next. As one object, a new
run is a new `AnalysisRun`: nothing of the previous run can survive in it, and what a run
holds is listed in one place. Only the analysis thread changes it; other threads
(`Analyzer.queue_stats`, `wait_idle`) read a few counters without a lock, as before.
"""

from __future__ import annotations

from collections import defaultdict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from numpy.typing import NDArray

from ._documents import FrameRef, Stack
from ._jobs import FrameResult
from ._journal import TracksJournal
from ._messages import Key
from ._outputs import LabelStore
from ._records import Visit


@dataclass(eq=False)
class Speculation:
    """A frame's segmentation started at its readout (analysis thread only)."""

    future: Future[Any]
    plane: NDArray
    read_at: float
    """When its pixels were in hand (``time.time``)."""
    key: Key | None = None
    """The visit its event named, once it came while the job ran."""
    done: bool = False
    """The job finished before its frame's event came."""


def _fov_queues() -> defaultdict[int, deque[int]]:
    return defaultdict(deque)


@dataclass(eq=False)
class AnalysisRun:
    """One run's analysis state (analysis thread only)."""

    history: int
    """Frames per FOV kept in `recent` (for stimulators that need `Need.HISTORY`)."""
    root: Path | None = None
    """Where labels and tracks go: the analyzer's ``output``, else found with the first
    frame (the run's zarr store, or a fresh sibling of it)."""
    start: dict[str, Any] = field(default_factory=dict)
    """The run's start document."""
    stim_mode: str = "current"
    """``"previous"``: every visit's mask is awaited (it fires at the FOV's next visit)."""
    labels: LabelStore | None = None
    tracks: TracksJournal | None = None
    order: defaultdict[int, deque[int]] = field(default_factory=_fov_queues)
    """Per FOV, the timepoints accepted and not yet tracked, in acquisition order."""
    visits: dict[Key, Visit] = field(default_factory=dict)
    """Visits accepted and not yet complete."""
    early: dict[Key, Future[Any] | None] = field(default_factory=dict)
    """Segmentations started before their stack was complete: None while running."""
    planes: dict[Key, tuple[FrameRef, NDArray, float]] = field(default_factory=dict)
    """The plane each early segmentation started from: its frame, pixels, and when the
    pixels were in hand (``time.time``)."""
    uris: set[str] = field(default_factory=set)
    """The camera arrays this run's frames are in (from its events): only their readouts
    are segmented speculatively (not another plan's, another analyzer's run's)."""
    speculative: dict[tuple[str, int], Speculation] = field(default_factory=dict)
    """Frames segmented at their readout, by ``(uri, index)``, until their event names
    their visit (`JobFeed.speculate`)."""
    premasked: dict[Key, Visit] = field(default_factory=dict)
    """Visits whose mask went out from the segmenter's plane, before their stack was
    complete (`VisitPipeline.mask_early`); their stack joins them when it comes."""
    refs: dict[Key, Stack] = field(default_factory=dict)
    """Reference stacks that came before their visit was complete."""
    waiting_ref: dict[Key, tuple[pd.DataFrame, FrameResult]] = field(default_factory=dict)
    """Complete visits (cells, result) waiting for their reference stack."""
    recent: defaultdict[int, deque[pd.DataFrame]] = field(init=False)
    """Per FOV, the last `history` frames' tracked rows."""
    deferred: deque[Stack] = field(default_factory=deque)
    """Stacks waiting for a worker (as references: no pixels held)."""
    after_mask: dict[Key, tuple[Visit, float]] = field(default_factory=dict)
    """Visits whose mask is out, held until their stimulation went out or a moment passed
    (``(visit, monotonic deadline)``)."""
    inflight: int = 0
    """Jobs on the executor."""
    visits_done: int = 0
    n_frames: int = 0
    """Raw frames seen (label arrays are trimmed to it when the run finishes)."""
    recorded: int | None = None
    """Frame events the stop document counts (stream ``primary``), once it came."""
    ended: bool = False
    """Its stop came (or a next run is waiting): finish once nothing is busy."""

    def __post_init__(self) -> None:
        history = self.history
        self.recent = defaultdict(lambda: deque(maxlen=history))

    def busy(self) -> bool:
        """Work of this run is still under way (the next run waits for it)."""
        return bool(
            self.inflight
            or self.deferred
            or self.visits
            or self.early
            or self.after_mask
            or self.premasked
        )

    def idle(self) -> bool:
        """Nothing on the executor, deferred, or held after its mask (`Analyzer.wait_idle`)."""
        return self.inflight == 0 and not self.deferred and not self.after_mask
