"""`Analyzer`: the closed-loop analysis as a bluesky callback that never blocks the RunEngine.

Documents in (live or replayed), visit stacks out to a worker pool (segment + measure), then,
on the analyzer's own thread and per FOV in acquisition order: tracking, the stimulation
mask (published on a `MaskBoard` the plan reads through a device facet), label images and
tracks tables to disk, and a per-visit summary. ARCHITECTURE decision 5: the RunEngine
thread only files documents; a component failing on a frame is recorded with its FOV and t
and later frames go on; when analysis falls behind, stacks wait as references (no pixels)
and are read back from memory or zarr when their turn comes: deferred, never dropped.

The latency path (docs/decisions/0030): for a frame whose mask is awaited, only what the
stimulator declares it needs (`Stimulator.needs`) is computed before the mask is published:
segmentation and positions, the tracker (`Need.TRACKS`), the feature columns
(`Need.FEATURES`), earlier frames (`Need.HISTORY`). Everything else (the features, the
cells' lit fractions, label images, tracks, the summary) comes after, the features in a
second job on the executor. Its segmentation starts as soon as the segmenter's plane is
taken, while the visit's other planes are still being exposed.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
import traceback
import uuid
import warnings
from collections import defaultdict, deque
from collections.abc import Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._board import MaskBoard
from ._documents import DocumentIndex, FrameReader, FrameRef, Stack, store_path
from ._jobs import (
    FrameResult,
    lit_fraction,
    measure,
    measure_features,
    measure_labels,
    segment,
    with_features,
)
from ._journal import TracksJournal
from ._outputs import LabelStore, read_tracks
from ._protocols import (
    FeatureExtractor,
    FrameInfo,
    Mask,
    Need,
    RefFeatureExtractor,
    Segmenter,
    Stimulator,
    Tracker,
)
from ._records import AnalysisError, Visit, VisitSummary

logger = logging.getLogger(__name__)


_MAX_SUMMARIES = 10_000
#: inbox items that carry results of work handed out earlier (never held for a later run)
_RESULTS = frozenset({"done", "segmented", "features"})
_AFTER_MASK_HOLD_S = 0.25  # longest a visit waits after its mask for its stimulation to go out


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
    executor : concurrent.futures.Executor
        Runs segmentation and measurements (thread pool by default; a process pool or a
        Dask ``client.get_executor()`` work too: components must then be picklable).
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
        executor: Executor | None = None,
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
        self._own_executor = executor is None
        workers = max(2, min(4, os.cpu_count() or 2))
        self.executor = executor or ThreadPoolExecutor(workers, thread_name_prefix="analysis")
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
        self.summaries: list[VisitSummary] = []
        """Every visit summary so far (all runs); the plan records them as events."""
        self._unread: deque[VisitSummary] = deque(maxlen=_MAX_SUMMARIES)
        self._index = DocumentIndex()
        self._reader = FrameReader()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._posted = 0
        self._handled = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._held: deque[tuple] = deque()
        self._last_doc: Mapping[str, Any] | None = None
        self._new_run_state()

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
        return self._root

    def queue_stats(self) -> dict[str, int | tuple[int, int]]:
        """Queue depths for status displays (read from any thread).

        ``inbox``: documents not yet filed; ``workers``: stacks on the executor (with its
        cap); ``deferred``: stacks waiting for a worker (as references); ``tracking``:
        analysed stacks waiting for an earlier frame of their FOV; ``mask_waits``: the
        plan waiting for a mask.
        """
        return {
            "inbox": self._inbox.qsize(),
            "workers": (self._inflight, self.max_inflight),
            "deferred": len(self._deferred),
            "tracking": sum(len(q) for q in list(self._order.values())),
            "mask_waits": self.board.waiting(),
        }

    @property
    def visits_done(self) -> int:
        """Visits analysed in the current run."""
        return self._visits_done

    # ---------------------------------------------------------- mask provider
    async def get_mask(self, fov: int, t: int) -> Mask:
        """The mask computed from frame (fov, t); waits for its analysis (`MaskProvider`)."""
        return await self.board.get(fov, t)

    def cancel_mask_waits(self) -> None:
        """Release the plan's mask waits at once (pause, stop, abort)."""
        self.board.cancel("the run was interrupted")

    # --------------------------------------------------------------- results
    def pop_summaries(self) -> list[VisitSummary]:
        """Summaries finished since the last call (the plan records them as events)."""
        out = []
        while self._unread:
            try:
                out.append(self._unread.popleft())
            except IndexError:  # pragma: no cover - raced with another reader
                break
        return out

    def pending_summaries(self) -> int:
        """How many summaries `pop_summaries` would return now."""
        return len(self._unread)

    def tracks(self, fov: int | None = None) -> pd.DataFrame:
        """The current run's tracks table so far (every visit analysed: each is on disk)."""
        self.wait_idle(timeout=None)
        if self._tracks is None or self._root is None:
            return pd.DataFrame()
        return read_tracks(self._root, fov)

    def wait_idle(self, timeout: float | None = 60.0) -> bool:
        """Block until every document given so far is fully analysed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._idle():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 1.0)
        return True

    def close(self) -> None:
        """Finish pending work, stop the analysis thread and the executor we own."""
        if self._closed:
            return
        self.wait_idle(timeout=30)
        self._closed = True
        if self._thread is not None:
            self._post(("close",))
            self._thread.join(timeout=30)
        if self._own_executor:
            self.executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------ bluesky callback
    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        """File one document (RunEngine thread): never blocks, never raises."""
        if self._closed:
            return  # closed: nothing is analysed any more (the plan refuses it too)
        if doc is self._last_doc:
            return  # subscribed twice (by the user and by the plan): once is enough
        self._last_doc = doc
        try:
            if self._thread is None:
                self._start_thread()
            if name == "start":
                self._post(("start", dict(doc)))
            stacks = self._index.feed(name, doc)
            while self._index.early:
                frame = self._index.early.pop(0)
                if self._stimulator is not None:  # only a mask is worth the extra message
                    self._post(("frame", frame))
            for stack in stacks:
                self._post(("stack", stack, time.monotonic()))
            while self._index.fired:
                self._post(("fired", *self._index.fired.pop(0)))
            if name == "stop":
                self._post(("stop", dict(doc)))
        except Exception as exc:
            self._record("documents", exc)

    # ------------------------------------------------------- analysis thread
    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="faro-analyzer", daemon=True)
        self._thread.start()

    def _post(self, item: tuple) -> None:
        with self._cond:
            self._posted += 1
        self._inbox.put(item)

    def _idle(self) -> bool:
        return (
            self._handled == self._posted
            and self._inflight == 0
            and not self._deferred
            and not self._held
            and not self._after_mask
        )

    def _new_run_state(self) -> None:
        self._start: dict[str, Any] = {}
        self._stim_mode = "current"
        self._root: Path | None = self.output
        self._labels: LabelStore | None = None
        self._tracks: TracksJournal | None = None
        self._order: dict[int, deque[int]] = defaultdict(deque)
        self._visits: dict[tuple[int, int], Visit] = {}
        self._early: dict[tuple[int, int], Future | None] = {}
        """Segmentations started before their stack was complete: None while running."""
        self._refs: dict[tuple[int, int], Stack] = {}
        self._waiting_ref: dict[tuple[int, int], tuple[pd.DataFrame, FrameResult]] = {}
        self._recent: dict[int, deque[pd.DataFrame]] = defaultdict(
            lambda: deque(maxlen=self.history)
        )
        self._deferred: deque[Stack] = deque()
        self._after_mask: dict[tuple[int, int], tuple[Visit, float]] = {}
        """Visits whose mask is out, held until their stimulation went out (or a moment)."""
        self._inflight = 0
        self._visits_done = 0
        self._n_frames = 0
        self._ended = False

    def _loop(self) -> None:
        while True:
            try:
                item = self._inbox.get(timeout=_AFTER_MASK_HOLD_S if self._after_mask else None)
            except queue.Empty:
                try:
                    self._release_after_mask(due_only=True)
                    self._finish_if_idle()
                except Exception as exc:
                    self._record("storage", exc)
                continue
            try:
                if item[0] == "close":
                    if self._tracks is not None:
                        self._tracks.close()
                    return
                self._handle(item)
            except Exception as exc:
                self._record("storage", exc)
            finally:
                with self._cond:
                    self._handled += 1
                    self._cond.notify_all()

    def _busy(self) -> bool:
        return bool(
            self._inflight or self._deferred or self._visits or self._early or self._after_mask
        )

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind not in _RESULTS and (self._held or (kind == "start" and self._busy())):
            # The previous run is still being analysed: its late results must not land in
            # the new run's state, so the new run waits (documents only; nothing is lost).
            self._ended = True
            self._held.append(item)
            return
        if kind == "start":
            self._finish_run()
            self._new_run_state()
            self._start = item[1]
            self._stim_mode = self._start.get("stim_mode", "current")
            self.board.reset()
            if hasattr(self.tracker, "reset"):
                self.tracker.reset()
        elif kind == "frame":
            self._segment_early(item[1])
        elif kind == "stack":
            self._accept(item[1], item[2])
        elif kind == "segmented":
            self._segmented(item[1], item[2])
        elif kind == "done":
            self._done(item[1], item[2])
        elif kind == "features":
            self._measured(item[1], item[2])
        elif kind == "fired":
            ref, mask = item[1], item[2]
            self._release_after_mask(ref.fov)
            self._ensure_outputs(ref.uri)
            self._n_frames = max(self._n_frames, ref.index + 1)
            self._labels.write("stim_mask", ref.index, np.asarray(mask) != 0)
        elif kind == "stop":
            self._ended = True
            self._release_after_mask()
            for key in [k for k, job in self._early.items() if job is not None]:
                if key not in self._visits:  # the run stopped before the rest of the visit
                    del self._early[key]
            self._finish_if_idle()

    def _ensure_outputs(self, uri: str) -> None:
        if self._labels is None:
            self._root = self.output or _fresh_root(store_path(uri))
            self._labels = LabelStore(self._root)
            self._tracks = TracksJournal(self._root)

    def _accept(self, stack: Stack, arrived: float) -> None:
        head = stack.head
        self._ensure_outputs(head.uri)
        self._n_frames = max(self._n_frames, *(f.index + 1 for f in stack.frames))
        key = (head.fov, head.t)
        if head.kind == "ref":
            if key in self._waiting_ref:
                self._apply_ref(key, stack)
            else:
                self._refs[key] = stack
            return
        if head.kind != "image":
            return
        needs_mask = self.stimulator is not None and (head.stim or self._stim_mode == "previous")
        self._order[head.fov].append(head.t)
        self._visits[key] = Visit(stack, arrived, needs_mask)
        if self._inflight < self.max_inflight:
            self._submit(stack)
        elif head.stim and self._stim_mode == "current":
            self._deferred.appendleft(stack)  # a mask is awaited: jump the queue
        else:
            self._deferred.append(stack)

    def _info(self, stack: Stack, shape: tuple[int, ...]) -> FrameInfo:
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

    def _needs(self) -> frozenset[Need]:
        stimulator = self.stimulator
        return frozenset() if stimulator is None else stimulator.needs

    def _with_features_now(self, visit: Visit) -> bool:
        """A frame whose mask is awaited gets only what the stimulator needs before it."""
        return not visit.needs_mask or Need.FEATURES in self._needs()

    def _submit(self, stack: Stack) -> None:
        visit = self._visits[(stack.head.fov, stack.head.t)]
        early = visit.key in self._early
        try:
            image = self._reader.read_stack(stack)
            info = self._info(stack, image.shape)
            if not early:
                now = self._with_features_now(visit)
                future = self.executor.submit(
                    measure, self.segmenter, self.features, image, info, with_features=now
                )
        except Exception as exc:
            self._early.pop(visit.key, None)  # its result (if it comes) is not wanted
            self._take(visit, exc, source="read")
            self._advance(visit.key[0])
            return
        visit.image, visit.info = image, info
        if early:  # its segmentation started with its first plane
            if self._early[visit.key] is not None:
                self._measure_segmented(visit)
            return
        self._inflight += 1
        future.add_done_callback(lambda f, key=visit.key: self._post(("done", key, f)))

    def _segment_early(self, frame: FrameRef) -> None:
        """Segment a visit's segmentation plane as soon as it is taken, if a mask is awaited.

        The visit's other planes are still being exposed: segmentation, the longest step
        before the mask, overlaps them instead of following the last one. Only with a free
        worker; otherwise the stack's own job segments it as usual.
        """
        awaited = self.stimulator is not None and (frame.stim or self._stim_mode == "previous")
        channel = self.segmenter.channel
        mine = channel == frame.c if isinstance(channel, int) else channel == frame.channel
        key = (frame.fov, frame.t)
        if not (awaited and mine and frame.kind == "image") or key in self._early:
            return
        if self._inflight >= self.max_inflight:
            return
        try:
            plane = self._reader.read(frame)
            future = self.executor.submit(segment, self.segmenter, plane)
        except Exception:
            return  # the stack's own job reads and segments again (and records a failure)
        self._early[key] = None
        self._inflight += 1
        future.add_done_callback(lambda f, key=key: self._post(("segmented", key, f)))

    def _segmented(self, key: tuple[int, int], future: Future) -> None:
        """An early segmentation finished: measure its visit if the stack is in."""
        self._inflight -= 1
        if key in self._early:  # else its stack could not be read: not wanted any more
            self._early[key] = future
            visit = self._visits.get(key)
            if visit is None and self._ended:
                del self._early[key]  # the run stopped before the rest of the visit
            elif visit is not None and visit.image is not None:
                self._measure_segmented(visit)
        self._refill()
        self._finish_if_idle()

    def _measure_segmented(self, visit: Visit) -> None:
        """Positions (or the declared features) of a visit segmented early; then as `_done`."""
        future = self._early.pop(visit.key)
        outcome: FrameResult | BaseException | None = future.exception()
        if outcome is None:
            labels = future.result()
            try:
                if self._with_features_now(visit):
                    job = self.executor.submit(
                        measure_labels, self.features, labels, visit.image, visit.info
                    )
                    self._inflight += 1
                    job.add_done_callback(lambda f, key=visit.key: self._post(("done", key, f)))
                    return
                # positions only (~0.5 ms): here, not one more hop through the executor
                outcome = measure_labels(
                    self.features, labels, visit.image, visit.info, with_features=False
                )
            except Exception as exc:
                outcome = exc
        self._take(visit, outcome)
        self._advance(visit.key[0])

    def _done(self, key: tuple[int, int], future: Future) -> None:
        self._inflight -= 1
        exc = future.exception()
        self._take(self._visits[key], exc if exc is not None else future.result())
        self._refill()
        self._advance(key[0])

    def _take(
        self, visit: Visit, outcome: FrameResult | BaseException, source: str = "segmentation"
    ) -> None:
        """A visit's segmentation result, or why there is none."""
        if isinstance(outcome, BaseException):
            visit.failed = True
            visit.errors.append(str(self._record(source, outcome, *visit.key)))
        else:
            visit.result = outcome
        self._mask_untracked(visit)

    def _refill(self) -> None:
        while self._deferred and self._inflight < self.max_inflight:
            self._submit(self._deferred.popleft())

    def _mask_untracked(self, visit: Visit) -> None:
        """Settle a mask that does not wait for the tracker: as soon as the frame is segmented."""
        if not visit.needs_mask or self._needs() & {Need.TRACKS, Need.HISTORY}:
            return
        if visit.failed:
            self._skip_mask(visit)
        elif visit.result is not None:
            self._stimulate(visit, visit.result.cells)

    def _advance(self, fov: int) -> None:
        """Track this FOV's segmented frames in acquisition order."""
        order = self._order[fov]
        while order and self._visits[(fov, order[0])].done:
            self._tracked(self._visits[(fov, order.popleft())])
        self._finish_if_idle()

    def _tracked(self, visit: Visit) -> None:
        """Track a segmented frame, settle its mask, then measure and store the rest."""
        fov, t = visit.key
        result = visit.result
        if result is None:  # segmentation failed
            self._skip_mask(visit)
            self._complete(visit)
            return
        try:
            visit.cells = self._track(fov, t, result.cells, visit.stack.head)
        except Exception as exc:
            visit.errors.append(str(self._record("tracking", exc, fov, t)))
            self._skip_mask(visit)
            self._complete(visit)
            return
        if visit.needs_mask and not visit.masked:
            if Need.HISTORY in self._needs():
                history = pd.concat(self._recent[fov], ignore_index=True)
            else:
                history = visit.cells
            self._stimulate(visit, history)
            if visit.mask is not None:
                # The plan is now projecting this mask and exposing: the rest of the visit
                # (features, labels, tracks) would compete with it for the interpreter, so
                # it waits until the stimulation went out (its frame arrives) or a moment.
                self._after_mask[visit.key] = (visit, time.monotonic() + _AFTER_MASK_HOLD_S)
                return
        self._finish_visit(visit)

    def _release_after_mask(self, fov: int | None = None, *, due_only: bool = False) -> None:
        """Finish the visits held after their mask: of ``fov`` (None: all), or those due."""
        now = time.monotonic()
        for key, (visit, due) in list(self._after_mask.items()):
            if (fov is None or key[0] == fov) and (not due_only or now >= due):
                del self._after_mask[key]
                self._finish_visit(visit)

    def _finish_visit(self, visit: Visit) -> None:
        """Measure the features the mask did not need (executor), then complete."""
        fov, t = visit.key
        result = visit.result
        if result.measured or self.features is None:
            self._complete(visit)
            return
        try:  # the features the mask did not need: after it, on the executor
            future = self.executor.submit(
                measure_features, self.features, result.labels, visit.image, visit.info
            )
        except Exception as exc:
            visit.errors.append(str(self._record("features", exc, fov, t)))
            self._complete(visit)
            return
        self._inflight += 1
        future.add_done_callback(lambda f, key=visit.key: self._post(("features", key, f)))

    def _measured(self, key: tuple[int, int], future: Future) -> None:
        """The features of a frame measured after its mask: join them and store."""
        self._inflight -= 1
        visit = self._visits[key]
        exc = future.exception()
        if exc is not None:
            visit.errors.append(str(self._record("features", exc, *key)))
        else:
            table, extra = future.result()
            visit.cells = with_features(visit.cells, table)
            visit.result.extra.update(extra)
        self._complete(visit)
        self._refill()
        self._finish_if_idle()

    def _track(self, fov: int, t: int, cells: pd.DataFrame, head: FrameRef) -> pd.DataFrame:
        if self.tracker is not None:
            cells = self.tracker.track(fov, t, cells)
        elif "particle" not in cells:
            cells = cells.assign(particle=cells["label"])
        # the visit's columns in one new frame (``assign`` inserts them one by one: ~3x
        # slower, and this is on the latency path of a tracked mask)
        columns: dict[str, Any] = {name: cells[name].array for name in cells.columns}
        columns.update(
            fov=fov,
            t=t,
            frame=head.frame,
            phase=head.phase,
            time=head.time,
            scheduled=head.scheduled,
            stim=head.stim,
        )
        cells = pd.DataFrame(columns, index=cells.index, copy=False)
        self._recent[fov].append(cells)
        return cells

    def _stimulate(self, visit: Visit, tracks: pd.DataFrame) -> None:
        """Compute the frame's mask and publish it (the end of the latency path)."""
        fov, t = visit.key
        labels = visit.result.labels
        try:
            mask = self.stimulator.mask(labels, tracks, visit.image, visit.info)
            if mask is None or mask is False:
                mask, fraction = False, 0.0
            elif mask is True:
                fraction = 1.0
            else:
                mask = np.asarray(mask) != 0
                if mask.shape != labels.shape:
                    raise ValueError(
                        f"mask shape {mask.shape} is not the frame's {labels.shape}: a "
                        "stimulator returns a mask in camera pixels (or True/False)"
                    )
                fraction = float(np.count_nonzero(mask)) / mask.size
        except Exception as exc:
            visit.errors.append(str(self._record("stimulator", exc, fov, t)))
            self._skip_mask(visit)
            return
        self.board.put(fov, t, mask)
        visit.masked, visit.mask, visit.mask_fraction = True, mask, fraction
        visit.mask_ms = (time.monotonic() - visit.arrived) * 1000.0

    def _skip_mask(self, visit: Visit) -> None:
        if visit.needs_mask and not visit.masked:
            self.board.skip(*visit.key)
            visit.masked = True

    def _complete(self, visit: Visit) -> None:
        """After the mask: lit fractions, label images, tracks, the summary.

        The tracks rows are on disk before the summary is published, so a run killed after
        its ``analysis`` event was logged still has that visit's rows.
        """
        fov, t = visit.key
        del self._visits[visit.key]
        head = visit.stack.head
        cells, result = visit.cells, visit.result
        if result is not None:
            if visit.mask is not None and len(cells):
                cells["lit"] = lit_fraction(result.labels, cells, visit.mask)
            self._store_labels(head, result, cells)
            if head.ref and self.ref_features is not None:
                self._waiting_ref[(fov, t)] = (cells, result)
                if (fov, t) in self._refs:
                    self._apply_ref((fov, t), self._refs.pop((fov, t)))
                else:  # on disk now; the record with the reference features replaces it
                    self._write_tracks(visit.key, cells, visit.errors, provisional=True)
            else:
                self._write_tracks(visit.key, cells, visit.errors)
        activity = cells["cnr"].mean() if "cnr" in cells and len(cells) else math.nan
        summary = VisitSummary(
            fov=fov,
            t=t,
            phase=head.phase,
            n_cells=len(cells),
            mean_activity=float(activity),
            mask_fraction=visit.mask_fraction,
            analysis_ms=(time.monotonic() - visit.arrived) * 1000.0,
            error="; ".join(visit.errors),
            mask_ms=visit.mask_ms,
        )
        self.summaries.append(summary)
        self._unread.append(summary)
        self._visits_done += 1

    def _store_labels(self, head: FrameRef, result: FrameResult, cells: pd.DataFrame) -> None:
        name = getattr(self.segmenter, "name", "labels")
        self._labels.write(name, head.index, result.labels)
        for extra, image in result.extra.items():
            self._labels.write(extra, head.index, image)
        if len(cells) and "particle" in cells:
            lut = np.zeros(int(result.labels.max()) + 1, dtype=np.uint32)
            lut[cells["label"].to_numpy(int)] = cells["particle"].to_numpy(int) + 1
            self._labels.write("particles", head.index, lut[result.labels])

    def _apply_ref(self, key: tuple[int, int], stack: Stack) -> None:
        cells, result = self._waiting_ref.pop(key)
        try:
            image = self._reader.read_stack(stack)
            info = self._info(stack, image.shape)
            cells = self.ref_features.extract(result.labels, image, cells, info)
        except Exception as exc:
            self._record("ref_features", exc, *key)
        self._write_tracks(key, cells)

    def _write_tracks(
        self,
        key: tuple[int, int],
        cells: pd.DataFrame,
        errors: list[str] | None = None,
        *,
        provisional: bool = False,
    ) -> None:
        """Journal a visit's rows; a disk failure is the visit's error, not the run's."""
        try:
            self._tracks.append(*key, cells, provisional=provisional)
        except Exception as exc:
            error = self._record("storage", exc, *key)
            if errors is not None:
                errors.append(str(error))

    def _finish_if_idle(self) -> None:
        if self._ended and not self._busy():
            self._finish_run()
            held, self._held = self._held, deque()
            for item in held:  # the next run, now that this one is done
                self._handle(item)

    def _finish_run(self) -> None:
        self._waiting_ref.clear()  # their rows are on disk already, as provisional records
        if self._tracks is not None:
            try:
                self._tracks.finish()
            except Exception as exc:  # the journals stay, readable: the run is not lost
                self._record("storage", exc)
        if self._labels is not None:
            self._labels.finish(self._n_frames)
        self._ended = False

    def _record(
        self, source: str, exc: BaseException, fov: int | None = None, t: int | None = None
    ) -> AnalysisError:
        error = AnalysisError(
            source=source,
            exc_type=type(exc).__name__,
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            fov=fov,
            t=t,
            time=time.time(),
        )
        self.errors.append(error)
        logger.warning("analysis error: %s", error)
        return error


def _fresh_root(store: Path) -> Path:
    """``store`` itself if it holds no analysis yet, else a new sibling store.

    A replay of a stored run (without ``output=``) must never overwrite the analysis
    recorded live: it goes to ``<store stem>.analysis-<id>.zarr`` beside it.
    """
    if not ((store / "labels").exists() or (store / "tracks").exists()):
        return store
    fresh = store.with_name(f"{store.stem}.analysis-{uuid.uuid4().hex[:8]}.zarr")
    logger.info("%s already holds an analysis: writing this one to %s", store, fresh)
    return fresh
