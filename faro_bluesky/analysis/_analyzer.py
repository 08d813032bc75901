"""`Analyzer`: the closed-loop analysis as a bluesky callback that never blocks the RunEngine.

Documents in (live or replayed), visit stacks out to a worker pool (segment + measure), then,
on the analyzer's own thread and per FOV in acquisition order: tracking, the stimulation
mask (published on a `MaskBoard` the plan reads through a device facet), label images and
tracks tables to disk, and a per-visit summary. ARCHITECTURE decision 5: the RunEngine
thread only files documents; a component failing on a frame is recorded with its FOV and t
and later frames go on; when analysis falls behind, stacks wait as references (no pixels)
and are read back from memory or zarr when their turn comes: deferred, never dropped.

`Analyzer` is the public face and the intake (documents to messages, on the RunEngine's
thread); the work is done by its parts (docs/decisions/0050-analyzer-split.md):
`Dispatcher` (the analysis thread, its typed messages and the hand-over between runs),
`VisitPipeline` (per FOV: executor jobs and back-pressure, ordering, tracking, the mask
and the hold after it; the latency path of docs/decisions/0030), `Completion` (after the
mask: labels, tracks, reference features, summaries) and `AnalysisRun` (one run's state).
It plays every role of the analyzer contract (`faro_bluesky.schema.ClosedLoopAnalyzer`),
and `MaskTiming`: each mask's times go into the plan's ``mask`` events.
"""

from __future__ import annotations

import os
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..devices import EXPOSURES, Frame, on_readout
from ..schema import MaskTimes
from ._board import MaskBoard
from ._cluster import executor_for
from ._completion import Completion
from ._dispatch import Dispatcher
from ._documents import DocumentIndex, FrameReader
from ._messages import Exposed, Exposing, Fired, FrameIn, MaskOut, StackIn, Start, Stop
from ._outputs import read_tracks
from ._pipeline import VisitPipeline
from ._protocols import (
    FeatureExtractor,
    Mask,
    RefFeatureExtractor,
    Segmenter,
    Stimulator,
    Tracker,
)
from ._records import AnalysisError, ErrorLog, VisitSummary

if TYPE_CHECKING:
    from distributed import Client


class Analyzer:
    """Closed-loop analysis: ``RE.subscribe(analyzer)``; pass it to `optogenetic_plan`.

    Parameters
    ----------
    segmenter : Segmenter
        Default: Otsu segmentation of plane 0.
    tracker : Tracker
        Default: nearest-neighbour linking with gap closing.
    features : FeatureExtractor
        Per-cell measurements; default: position and area only.
    stimulator : Stimulator
        Computes each frame's mask. Without one, the plan stimulates whole-field or with
        its fixed ``stim_mask``. Only what it declares in ``needs`` is computed before its
        mask is published; the features it does not need are measured after.
    ref_features : RefFeatureExtractor
        Features of reference-channel stacks, added to the visit's tracks rows.
    executor : concurrent.futures.Executor, distributed.Client or str
        Runs segmentation and measurements (thread pool by default; a process pool works
        too). A ``distributed.Client`` or a scheduler address (``"tcp://gpu-box:8786"``)
        runs them on that cluster's worker processes (`ClusterExecutor`; an address's
        client is closed with the analyzer). Beyond threads, components must be picklable.
    mask_timeout : float
        Seconds the plan waits for a mask before firing a blank one (recorded as missed).
    output : path
        Where label images and tracks go; default: inside the run's zarr store.
    max_inflight : int
        Stacks handed to the executor at once; more wait as references (deferred).
    flush_every : int
        Deprecated and ignored: every visit's tracks rows are on disk before its summary
        is published (`_journal`).

    """

    def __init__(
        self,
        segmenter: Segmenter | None = None,
        tracker: Tracker | None = None,
        features: FeatureExtractor | None = None,
        stimulator: Stimulator | None = None,
        ref_features: RefFeatureExtractor | None = None,
        executor: Executor | Client | str | None = None,
        mask_timeout: float = 80.0,
        *,
        output: str | Path | None = None,
        max_inflight: int | None = None,
        history: int = 50,
        flush_every: int | None = None,
    ) -> None:
        if mask_timeout <= 0:
            raise ValueError(f"mask_timeout must be > 0 s, got {mask_timeout}")
        if segmenter is None or tracker is None:
            from .components import NearestNeighbourTracker, OtsuSegmenter

            segmenter = segmenter if segmenter is not None else OtsuSegmenter()
            tracker = tracker if tracker is not None else NearestNeighbourTracker()
        self.segmenter = segmenter
        self.tracker = tracker
        self.features = features
        self._stimulator: Stimulator | None = None
        self.stimulator = stimulator
        self.ref_features = ref_features
        self._own_executor = not isinstance(executor, Executor)  # made here: shut down here
        workers = max(2, min(4, os.cpu_count() or 2))
        self.executor = executor_for(executor) or ThreadPoolExecutor(
            workers, thread_name_prefix="analysis"
        )
        self.mask_timeout = float(mask_timeout)
        self.output = Path(output) if output is not None else None
        self.max_inflight = max_inflight or 2 * workers
        self.history = history
        if flush_every is not None:
            warnings.warn(
                "Analyzer(flush_every=...) is ignored: tracks are written per visit",
                DeprecationWarning,
                stacklevel=2,
            )
        self.board = MaskBoard()
        self.errors: list[AnalysisError] = []
        """Every failure recorded so far (all runs), instead of raised."""
        self.summaries: list[VisitSummary] = []
        """Every visit summary so far (all runs); the plan records them as events."""
        self._closed = False
        self._last_doc: Mapping[str, Any] | None = None
        self._index = DocumentIndex()
        reader = FrameReader()
        self._errors = ErrorLog(self.errors)
        self._dispatcher = Dispatcher(self._errors)
        self._completion = Completion(self, reader, self._errors, self.summaries)
        self._pipeline = VisitPipeline(
            self, reader, self._errors, self._completion, self._dispatcher.post
        )
        self._dispatcher.route_to(self._pipeline)
        self._stop_readout = _listen(on_readout, weakref.WeakMethod(self._readout))
        self._stop_exposing = _listen(EXPOSURES.subscribe, weakref.WeakMethod(self._exposing))

    # ------------------------------------------------------------ public facts
    @property
    def stimulator(self) -> Stimulator | None:
        """Computes each frame's mask (None: the plan's own mask or whole field)."""
        return self._stimulator

    @stimulator.setter
    def stimulator(self, value: Stimulator | None) -> None:
        if value is not None and not isinstance(value, Stimulator):
            raise TypeError(
                f"stimulator {value!r} is not a Stimulator: it needs a mask() method and the "
                "class attributes required_metadata (frozenset of phase metadata keys) and "
                "needs (frozenset of faro_bluesky.analysis.Need)"
            )
        self._stimulator = value

    @property
    def provides_masks(self) -> bool:
        """Whether the plan should take stimulation masks from this analyzer."""
        return self.stimulator is not None

    @property
    def closed(self) -> bool:
        """True after `close`: it analyses nothing more."""
        return self._closed

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def required_metadata(self) -> frozenset[str]:
        """Phase metadata every phase needs (segmenter, features, tracker)."""
        keys: set[str] = set()
        for part in (self.segmenter, self.tracker, self.features, self.ref_features):
            keys |= set(getattr(part, "required_metadata", ()) or ())
        return frozenset(keys)

    @property
    def required_channels(self) -> frozenset[str]:
        """Channel presets (by name) the segmenter and features read in every phase."""
        names = {getattr(part, "channel", None) for part in (self.segmenter, self.features)}
        return frozenset(n for n in names if isinstance(n, str))

    @property
    def required_ref_channels(self) -> frozenset[str]:
        """Channel presets (by name) the reference features read in ref frames."""
        name = getattr(self.ref_features, "channel", None)
        return frozenset({name} if isinstance(name, str) else ())

    @property
    def required_stim_metadata(self) -> frozenset[str]:
        """Phase metadata stimulating phases need (the stimulator's)."""
        stimulator = self.stimulator
        return frozenset() if stimulator is None else frozenset(stimulator.required_metadata)

    @property
    def root(self) -> Path | None:
        """Where this run's labels and tracks are written (known after the first frame)."""
        return self._pipeline.run.root

    def queue_stats(self) -> dict[str, int | tuple[int, int]]:
        """Queue depths for status displays (read from any thread).

        ``inbox``: documents not yet filed; ``workers``: stacks on the executor (with its
        cap); ``deferred``: stacks waiting for a worker (as references); ``tracking``:
        analysed stacks waiting for an earlier frame of their FOV; ``mask_waits``: the
        plan waiting for a mask.
        """
        run = self._pipeline.run
        return {
            "inbox": self._dispatcher.queued(),
            "workers": (run.inflight, self.max_inflight),
            "deferred": len(run.deferred),
            "tracking": sum(len(q) for q in list(run.order.values())),
            "mask_waits": self.board.waiting(),
        }

    @property
    def visits_done(self) -> int:
        """Visits analysed in the current run."""
        return self._pipeline.run.visits_done

    # ---------------------------------------------------------- mask source
    async def get_mask(self, fov: int, t: int) -> Mask:
        """The mask computed from frame (fov, t); waits for its analysis (`MaskSource`)."""
        return await self.board.get(fov, t)

    def mask_ready(self, fov: int, t: int) -> bool:
        """Whether the mask of frame (fov, t) is out already (`ReadyMasks`).

        The plan then saves that frame's event during the stimulation, not before it.
        """
        return self.board.decided(fov, t)

    def mask_times(self, fov: int, t: int) -> MaskTimes | None:
        """When the mask of (fov, t) had its pixels and labels, and its components' compute.

        `MaskTiming`: the plan records them with the mask, in stream ``mask``.
        """
        return self.board.times(fov, t)

    # --------------------------------------------------------------- results
    def pop_summaries(self) -> list[VisitSummary]:
        """Summaries finished since the last call (the plan records them as events)."""
        return self._completion.pop_summaries()

    def pending_summaries(self) -> int:
        """How many summaries `pop_summaries` would return now."""
        return self._completion.pending_summaries()

    def tracks(self, fov: int | None = None) -> pd.DataFrame:
        """The current run's tracks table so far (every visit analysed: each is on disk)."""
        self.wait_idle(timeout=None)
        run = self._pipeline.run
        if run.tracks is None or run.root is None:
            return pd.DataFrame()
        return read_tracks(run.root, fov)

    def wait_idle(self, timeout: float | None = 60.0) -> bool:
        """Block until every document given so far is fully analysed; False on timeout."""
        return self._dispatcher.wait_idle(timeout)

    def close(self) -> None:
        """Finish pending work, stop the analysis thread and the executor we own."""
        if self._closed:
            return
        self.wait_idle(timeout=30)
        self._closed = True
        self._stop_readout()
        self._stop_exposing()
        self._dispatcher.close(timeout=30)
        if self._own_executor:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def _readout(self, frame: Frame) -> None:
        """A camera of this process read a frame out (on its thread).

        Segmented now if it is of the segmenter's channel (`JobFeed.speculate`); never
        blocks, never raises.
        """
        if self._closed or self._stimulator is None or not self._dispatcher.started:
            return
        channel = getattr(self.segmenter, "channel", None)
        if isinstance(channel, str) and frame.metadata.get("channel") == channel:
            EXPOSURES.mask_started()  # the next exposure is the mask's (writes wait)
            self._dispatcher.post(Exposed(frame, EXPOSURES.generation))

    def _exposing(self) -> None:
        """A camera of this process starts exposing (its thread): store fired masks now."""
        if self._pipeline.unstored and not self._closed:
            self._dispatcher.post(Exposing())

    # ------------------------------------------------------ bluesky callback
    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        """File one document (RunEngine thread): never blocks, never raises."""
        if self._closed:
            return  # closed: nothing is analysed any more (the plan refuses it too)
        if doc is self._last_doc:
            return  # subscribed twice (by the user and by the plan): once is enough
        self._last_doc = doc
        post = self._dispatcher.post
        try:
            if not self._dispatcher.started:
                self._dispatcher.start()
            if name == "start":
                post(Start(dict(doc)))
            index = self._index
            stacks = index.feed(name, doc)
            while index.early:
                frame = index.early.pop(0)
                if self._stimulator is not None:  # only a mask is worth the extra message
                    post(FrameIn(frame))
            for stack in stacks:
                post(StackIn(stack, time.monotonic()))
            while index.projected:
                post(MaskOut(index.projected.pop(0)))
            while index.fired:
                post(Fired(*index.fired.pop(0)))
            if name == "stop":
                post(Stop(dict(doc)))
        except Exception as exc:
            self._errors.record("documents", exc)


def _listen(
    subscribe: Callable[[Callable[..., None]], Callable[[], None]], method: weakref.WeakMethod
) -> Callable[[], None]:
    """Subscribe ``method`` (with ``subscribe``: `on_readout`, `EXPOSURES.subscribe`) weakly.

    So an analyzer never closed is still collected; its listener then removes itself.
    """

    def listener(*args: Any) -> None:
        bound = method()
        if bound is None:
            remove()
        else:
            bound(*args)

    remove = subscribe(listener)
    return remove
