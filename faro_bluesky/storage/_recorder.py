"""What `Catalog.subscribe` puts in a RunEngine: the raw log and the catalog writer, in order.

Before a run's stop it also records the run's analysis streams (``labels``, ``tracks``),
composed from what the analyzer wrote into the run's store (`_analysis`), so tiled serves
them like the frames.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..devices import frames_on_disk, path_from_uri
from ._analysis import AnalysisFollower
from ._doclog import DocumentLog, RunIndex
from ._fov_follow import FovViewBuilder
from ._writer import CatalogWriter
from ._writer_process import ProcessCatalogWriter

logger = logging.getLogger(__name__)


@dataclass
class Subscription:
    """What `Catalog.subscribe` wired into a RunEngine; `unsubscribe` undoes it."""

    RE: Any
    tokens: tuple[int, ...]
    recorder: Recorder
    active: bool = True

    def unsubscribe(self) -> None:
        """Stop recording (waits for queued documents to be written)."""
        if not self.active:
            return
        self.active = False
        for token in self.tokens:
            self.RE.unsubscribe(token)
        self.recorder.close()


@dataclass(eq=False)  # hashable: the RunEngine's callback registry hashes callbacks
class Recorder:
    """The RunEngine callback of a catalog: raw log first, then the catalog writer.

    The log line is written and flushed before the document is queued for tiled, so the
    log is never behind the catalog. At each stop it waits (up to ``drain_timeout`` s) for
    the run to be written, then closes the run's log. Before it records a stop it waits
    for the camera's frames to be on disk, so a stored stop never announces queued frames,
    and records the run's analysis streams.
    """

    writer: CatalogWriter | ProcessCatalogWriter
    log: DocumentLog | None
    readable: list[Path] | None
    drain_timeout: float = 120.0
    _index: RunIndex = field(default_factory=RunIndex)
    _analysis: AnalysisFollower = field(default_factory=AnalysisFollower)
    _views: FovViewBuilder = field(default_factory=FovViewBuilder)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Record one document (called by the RunEngine)."""
        if name == "stop":
            if not frames_on_disk(self.drain_timeout):
                logger.warning("frames were still being written when the run stopped")
            for derived in self._analysis_documents(doc):
                self._record(*derived)
        else:
            try:
                self._analysis.feed(name, doc)
            except Exception:  # a malformed document: tiled's writer will say so
                logger.debug("could not follow a %r document", name, exc_info=True)
        self._record(name, doc)
        self._views(name, doc)  # per-FOV OME-Zarr views, built after the stop (0057)

    def _analysis_documents(self, stop: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The run's ``labels`` and ``tracks`` streams; none if they cannot be made."""
        try:
            return self._analysis.before_stop(stop)
        except Exception:  # never into the RunEngine: the store keeps them, readable locally
            logger.exception(
                "run %s: its labels and tracks could not be added to the catalog",
                stop.get("run_start"),
            )
            return []

    def _record(self, name: str, doc: dict[str, Any]) -> None:
        received = time.time()
        uid = self._index.run_of(name, doc)
        if self.log is not None:
            try:
                self.log.write(name, doc, uid, received)
            except OSError:
                logger.exception("could not write the raw document log of run %s", uid)
        if name == "stream_resource":
            self._check_readable(doc)
        self.writer.put(name, doc, uid)
        if name == "stop":
            if not self.writer.flush(self.drain_timeout) and self.writer.alive:
                logger.warning(  # (a dead writer said so itself, with the runs it lost)
                    "run %s: the catalog is still writing after %.0f s; it goes on in the "
                    "background",
                    uid,
                    self.drain_timeout,
                )
            if self.log is not None and uid is not None:
                try:
                    self.log.close_run(uid)
                except OSError:
                    logger.exception("could not close the raw document log of run %s", uid)
            self._index.forget(uid or "")

    def _check_readable(self, doc: dict[str, Any]) -> None:
        if self.readable is None:
            return
        try:
            path = path_from_uri(doc["uri"])
        except ValueError:
            return
        if not any(path.is_relative_to(root) for root in self.readable):
            logger.error(
                "stream resource %s is outside the catalog's readable storage %s: tiled "
                "will refuse to serve it. Create the microscope with "
                "data_dir=catalog.data_dir, or open the catalog with readable_storage=[...]",
                doc["uri"],
                [str(p) for p in self.readable],
            )

    def close(self) -> None:
        """Write what is queued, close open logs."""
        self._views.close(self.drain_timeout)
        self.writer.close(self.drain_timeout)
        if self.log is not None:
            self.log.close()
