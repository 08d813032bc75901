"""`Analyzer`: the closed-loop analysis as a bluesky callback that never blocks the RunEngine.

Documents in (live or replayed), visit stacks out to a worker pool (segment + measure), then,
on the analyzer's own thread and per FOV in acquisition order: tracking, the stimulation
mask (published on a `MaskBoard` the plan reads through a device facet), label images and
tracks tables to disk, and a per-visit summary. ARCHITECTURE decision 5: the RunEngine
thread only files documents; a component failing on a frame is recorded with its FOV and t
and later frames go on; when analysis falls behind, stacks wait as references (no pixels)
and are read back from memory or zarr when their turn comes: deferred, never dropped.
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
from collections import defaultdict, deque
from collections.abc import Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._board import MaskBoard
from ._documents import DocumentIndex, FrameReader, FrameRef, Stack, store_path
from ._jobs import FrameResult, measure
from ._outputs import LabelStore, TracksStore, read_tracks
from ._protocols import (
    FeatureExtractor,
    FrameInfo,
    Mask,
    RefFeatureExtractor,
    Segmenter,
    Stimulator,
    Tracker,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisError:
    """A failure the analyzer recorded instead of raising into the RunEngine."""

    source: str
    """Which step: documents, read, segmentation, tracking, stimulator, ref_features, storage."""
    exc_type: str
    message: str
    traceback: str
    fov: int | None = None
    t: int | None = None
    time: float = 0.0

    def __str__(self) -> str:
        where = f" FOV {self.fov} t={self.t}" if self.fov is not None else ""
        return f"{self.source}{where}: {self.exc_type}: {self.message}"


@dataclass(frozen=True)
class VisitSummary:
    """What the analysis of one visit found (one event of the ``analysis`` stream)."""

    fov: int
    t: int
    phase: str
    n_cells: int
    mean_activity: float
    """Mean ``cnr`` (ERK-KTR cytoplasm/nucleus ratio) of the cells, NaN without it."""
    mask_fraction: float
    """Fraction of the image the computed mask lights (1.0 whole field, NaN if none)."""
    analysis_ms: float
    """From the visit's stack being complete to its results being stored."""
    error: str = ""


_MAX_SUMMARIES = 10_000


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
        its fixed ``stim_mask``.
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
        flush_every: int = 20,
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
        self.stimulator = stimulator
        self.ref_features = ref_features
        self._own_executor = executor is None
        workers = max(2, min(4, os.cpu_count() or 2))
        self.executor = executor or ThreadPoolExecutor(workers, thread_name_prefix="analysis")
        self.mask_timeout = float(mask_timeout)
        self.output = Path(output) if output is not None else None
        self.max_inflight = max_inflight or 2 * workers
        self.history = history
        self.flush_every = flush_every
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
        return frozenset(getattr(self.stimulator, "required_metadata", ()) or ())

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
        """The current run's tracks table so far (flushes pending rows first)."""
        self.wait_idle(timeout=None)
        if self._tracks is None or self._root is None:
            return pd.DataFrame()
        self._tracks.flush()
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
        )

    def _new_run_state(self) -> None:
        self._start: dict[str, Any] = {}
        self._stim_mode = "current"
        self._root: Path | None = self.output
        self._labels: LabelStore | None = None
        self._tracks: TracksStore | None = None
        self._order: dict[int, deque[int]] = defaultdict(deque)
        self._stacks: dict[tuple[int, int], tuple[Stack, float]] = {}
        self._images: dict[tuple[int, int], tuple[np.ndarray, FrameInfo]] = {}
        self._results: dict[tuple[int, int], FrameResult | BaseException] = {}
        self._refs: dict[tuple[int, int], Stack] = {}
        self._waiting_ref: dict[tuple[int, int], tuple[pd.DataFrame, FrameResult]] = {}
        self._recent: dict[int, deque[pd.DataFrame]] = defaultdict(
            lambda: deque(maxlen=self.history)
        )
        self._deferred: deque[Stack] = deque()
        self._inflight = 0
        self._visits_done = 0
        self._n_frames = 0
        self._ended = False

    def _loop(self) -> None:
        while True:
            item = self._inbox.get()
            try:
                if item[0] == "close":
                    return
                self._handle(item)
            except Exception as exc:
                self._record("storage", exc)
            finally:
                with self._cond:
                    self._handled += 1
                    self._cond.notify_all()

    def _busy(self) -> bool:
        return bool(self._inflight or self._deferred or any(list(self._order.values())))

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind != "done" and (self._held or (kind == "start" and self._busy())):
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
        elif kind == "stack":
            self._accept(item[1], item[2])
        elif kind == "done":
            self._done(item[1], item[2])
        elif kind == "fired":
            ref, mask = item[1], item[2]
            self._ensure_outputs(ref.uri)
            self._n_frames = max(self._n_frames, ref.index + 1)
            self._labels.write("stim_mask", ref.index, np.asarray(mask) != 0)
        elif kind == "stop":
            self._ended = True
            self._finish_if_idle()

    def _ensure_outputs(self, uri: str) -> None:
        if self._labels is None:
            self._root = self.output or _fresh_root(store_path(uri))
            self._labels = LabelStore(self._root)
            self._tracks = TracksStore(self._root, flush_every=self.flush_every)

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
        self._order[head.fov].append(head.t)
        self._stacks[key] = (stack, arrived)
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

    def _submit(self, stack: Stack) -> None:
        key = (stack.head.fov, stack.head.t)
        try:
            image = self._reader.read_stack(stack)
            info = self._info(stack, image.shape)
            future = self.executor.submit(measure, self.segmenter, self.features, image, info)
        except Exception as exc:
            self._results[key] = exc
            self._record("read", exc, *key)
            self._advance(key[0])
            return
        self._images[key] = (image, info)
        self._inflight += 1
        future.add_done_callback(lambda f, key=key: self._post(("done", key, f)))

    def _done(self, key: tuple[int, int], future: Future) -> None:
        self._inflight -= 1
        exc = future.exception()
        self._results[key] = exc if exc is not None else future.result()
        while self._deferred and self._inflight < self.max_inflight:
            self._submit(self._deferred.popleft())
        self._advance(key[0])

    def _advance(self, fov: int) -> None:
        """Track this FOV's finished frames in acquisition order."""
        order = self._order[fov]
        while order and (fov, order[0]) in self._results:
            t = order.popleft()
            self._tracked(fov, t, self._results.pop((fov, t)))
        self._finish_if_idle()

    def _tracked(self, fov: int, t: int, result: FrameResult | BaseException) -> None:
        stack, arrived = self._stacks.pop((fov, t))
        kept = self._images.pop((fov, t), None)  # None when the frames could not be read
        image, info = kept if kept is not None else (None, self._info(stack, (0, 0)))
        head = stack.head
        needs_mask = self.stimulator is not None and (head.stim or self._stim_mode == "previous")
        error = ""
        cells = pd.DataFrame()
        mask_fraction = math.nan
        if isinstance(result, BaseException):
            error = str(self._record("segmentation", result, fov, t))
        else:
            try:
                cells = self._track(fov, t, result.cells, head)
            except Exception as exc:
                error = str(self._record("tracking", exc, fov, t))
        if needs_mask:
            if error:
                self.board.skip(fov, t)
            else:
                mask_fraction, error = self._stimulate(fov, t, result, cells, image, info)
        if not isinstance(result, BaseException):
            self._store_labels(head, result, cells)
            if head.ref and self.ref_features is not None:
                self._waiting_ref[(fov, t)] = (cells, result)
                if (fov, t) in self._refs:
                    self._apply_ref((fov, t), self._refs.pop((fov, t)))
            else:
                self._tracks.append(fov, cells)
        activity = cells["cnr"].mean() if "cnr" in cells and len(cells) else math.nan
        summary = VisitSummary(
            fov=fov,
            t=t,
            phase=head.phase,
            n_cells=len(cells),
            mean_activity=float(activity),
            mask_fraction=mask_fraction,
            analysis_ms=(time.monotonic() - arrived) * 1000.0,
            error=error,
        )
        self.summaries.append(summary)
        self._unread.append(summary)
        self._visits_done += 1

    def _track(self, fov: int, t: int, cells: pd.DataFrame, head: FrameRef) -> pd.DataFrame:
        if self.tracker is not None:
            cells = self.tracker.track(fov, t, cells)
        elif "particle" not in cells:
            cells = cells.assign(particle=cells["label"])
        cells = cells.assign(
            fov=fov,
            t=t,
            frame=head.frame,
            phase=head.phase,
            time=head.time,
            scheduled=head.scheduled,
            stim=head.stim,
        )
        self._recent[fov].append(cells)
        return cells

    def _stimulate(
        self,
        fov: int,
        t: int,
        result: FrameResult,
        cells: pd.DataFrame,
        image: np.ndarray | None,
        info: FrameInfo,
    ) -> tuple[float, str]:
        try:
            history = pd.concat(self._recent[fov], ignore_index=True)
            mask = self.stimulator.mask(result.labels, history, image, info)
            if mask is None or mask is False:
                mask, fraction = False, 0.0
            elif mask is True:
                fraction = 1.0
            else:
                mask = np.asarray(mask) != 0
                fraction = float(mask.mean())
            cells["lit"] = _lit_fraction(result.labels, cells, mask)
        except Exception as exc:
            self.board.skip(fov, t)
            return math.nan, str(self._record("stimulator", exc, fov, t))
        self.board.put(fov, t, mask)
        return fraction, ""

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
        self._tracks.append(key[0], cells)

    def _finish_if_idle(self) -> None:
        if self._ended and not self._busy():
            self._finish_run()
            held, self._held = self._held, deque()
            for item in held:  # the next run, now that this one is done
                self._handle(item)

    def _finish_run(self) -> None:
        for (fov, _), (cells, _) in list(self._waiting_ref.items()):
            self._tracks.append(fov, cells)
        self._waiting_ref.clear()
        if self._tracks is not None:
            self._tracks.flush()
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


def _lit_fraction(labels: np.ndarray, cells: pd.DataFrame, mask: Mask) -> np.ndarray:
    """Fraction of each cell's label pixels the mask lights (1 for the whole field)."""
    if mask is True or mask is False:
        return np.full(len(cells), float(mask))
    n = int(labels.max()) + 1
    lit = np.bincount(labels.ravel(), weights=np.asarray(mask, float).ravel(), minlength=n)
    area = np.bincount(labels.ravel(), minlength=n)
    ids = cells["label"].to_numpy(int)
    return lit[ids] / np.maximum(area[ids], 1)


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
