"""`Completion`: what happens to a visit after its mask, and to a run at its end.

Off the latency path by construction: a visit reaches `Completion.complete` once its mask
is published (or was never awaited). It then gets its cells' lit fractions, its label
images, its tracks rows (journalled before its summary is published, so a run killed
after its ``analysis`` event was logged still has that visit's rows), the reference
features joined when the visit's reference stack comes, and its `VisitSummary`. Where a
run's labels and tracks go is decided here, with the run's first frame.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ._documents import FrameReader, FrameRef, Stack, store_path
from ._jobs import FrameResult, lit_fraction
from ._journal import TracksJournal
from ._messages import Key
from ._outputs import LabelStore
from ._records import ErrorLog, Visit, VisitSummary
from ._run import AnalysisRun
from ._setup import Setup, frame_info

logger = logging.getLogger(__name__)

_MAX_SUMMARIES = 10_000  # unread summaries kept (the plan reads them between visits)


class Completion:
    """Stores each visit's results and summary; finishes a run's outputs (analysis thread)."""

    def __init__(
        self, setup: Setup, reader: FrameReader, errors: ErrorLog, summaries: list[VisitSummary]
    ) -> None:
        self._setup = setup
        self._reader = reader
        self._errors = errors
        self.summaries = summaries
        """Every summary so far (all runs): the analyzer's ``summaries``."""
        self._unread: deque[VisitSummary] = deque(maxlen=_MAX_SUMMARIES)

    # ------------------------------------------------------------ summaries
    def pop_summaries(self) -> list[VisitSummary]:
        """Summaries finished since the last call (any thread)."""
        out = []
        while self._unread:
            try:
                out.append(self._unread.popleft())
            except IndexError:  # pragma: no cover - raced with another reader
                break
        return out

    def pending_summaries(self) -> int:
        """How many `pop_summaries` would return now."""
        return len(self._unread)

    # -------------------------------------------------------------- outputs
    def ensure_outputs(self, run: AnalysisRun, uri: str) -> None:
        """Open the run's label store and tracks journal, beside its frames at ``uri``."""
        if run.labels is None:
            run.root = self._setup.output or _fresh_root(store_path(uri))
            run.labels = LabelStore(run.root)
            run.tracks = TracksJournal(run.root)

    def fired(self, run: AnalysisRun, ref: FrameRef, mask: NDArray) -> None:
        """Store a mask that went out, at the index of the stim frame it lit."""
        self.ensure_outputs(run, ref.uri)
        run.n_frames = max(run.n_frames, ref.index + 1)
        run.labels.write("stim_mask", ref.index, np.asarray(mask) != 0)

    def ref_in(self, run: AnalysisRun, key: Key, stack: Stack) -> None:
        """A reference stack: joined now if its visit is complete, else when it is."""
        if key in run.waiting_ref:
            self._apply_ref(run, key, stack)
        else:
            run.refs[key] = stack

    def complete(self, run: AnalysisRun, visit: Visit) -> None:
        """After the mask: lit fractions, label images, tracks, the summary."""
        fov, t = visit.key
        del run.visits[visit.key]
        head = visit.stack.head
        cells, result = visit.cells, visit.result
        if result is not None:
            if visit.mask is not None and len(cells):
                cells["lit"] = lit_fraction(result.labels, cells, visit.mask)
            self._store_labels(run, head, result, cells)
            if head.ref and self._setup.ref_features is not None:
                run.waiting_ref[(fov, t)] = (cells, result)
                if (fov, t) in run.refs:
                    self._apply_ref(run, (fov, t), run.refs.pop((fov, t)))
                else:  # on disk now; the record with the reference features replaces it
                    self._write_tracks(run, visit.key, cells, visit.errors, provisional=True)
            else:
                self._write_tracks(run, visit.key, cells, visit.errors)
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
        run.visits_done += 1

    def finish(self, run: AnalysisRun) -> None:
        """Consolidate the run's tracks and trim its label arrays to the raw array's length."""
        run.waiting_ref.clear()  # their rows are on disk already, as provisional records
        if run.tracks is not None:
            try:
                run.tracks.finish()
            except Exception as exc:  # the journals stay, readable: the run is not lost
                self._errors.record("storage", exc)
        if run.labels is not None:
            run.labels.finish(run.n_frames, recorded=run.recorded)
        run.ended = False

    # ------------------------------------------------------------- helpers
    def _store_labels(
        self, run: AnalysisRun, head: FrameRef, result: FrameResult, cells: pd.DataFrame
    ) -> None:
        labels = run.labels  # opened when the visit's stack was accepted
        labels.write(getattr(self._setup.segmenter, "name", "labels"), head.index, result.labels)
        for extra, image in result.extra.items():
            labels.write(extra, head.index, image)
        if len(cells) and "particle" in cells:
            lut = np.zeros(int(result.labels.max()) + 1, dtype=np.uint32)
            lut[cells["label"].to_numpy(int)] = cells["particle"].to_numpy(int) + 1
            labels.write("particles", head.index, lut[result.labels])

    def _apply_ref(self, run: AnalysisRun, key: Key, stack: Stack) -> None:
        cells, result = run.waiting_ref.pop(key)
        try:
            image = self._reader.read_stack(stack)
            info = frame_info(stack, image.shape)
            cells = self._setup.ref_features.extract(result.labels, image, cells, info)
        except Exception as exc:
            self._errors.record("ref_features", exc, *key)
        self._write_tracks(run, key, cells)

    def _write_tracks(
        self,
        run: AnalysisRun,
        key: Key,
        cells: pd.DataFrame,
        errors: list[str] | None = None,
        *,
        provisional: bool = False,
    ) -> None:
        """Journal a visit's rows; a disk failure is the visit's error, not the run's."""
        try:
            run.tracks.append(*key, cells, provisional=provisional)
        except Exception as exc:
            error = self._errors.record("storage", exc, *key)
            if errors is not None:
                errors.append(str(error))


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
