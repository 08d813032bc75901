"""`Run`: one run of the catalog with faro's views (frames, per-FOV images, tracks, labels).

It wraps bluesky-tiled-plugins' ``BlueskyRunV3`` (kept as `Run.tiled` for anything else)
and adds what a microscopist asks for: the experiment as objects, a frames table, a
(T, C, Y, X) stack per FOV, the analyzer's tracks and labels, and the run's documents in
their live order (from the raw document log when there is one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd

from ..schema import FrameKind, Stream
from ._doclog import read_document_log
from ._documents import live_order
from ._fov_follow import FovStores
from ._frames import assemble, frame_grid, frames_table
from ._run_outputs import RunOutputs
from ._store import RunStore
from ._timing import RunTiming, run_timing

logger = logging.getLogger(__name__)

TimedDocument = tuple[str, dict[str, Any], float | None]


class Run(RunOutputs, FovStores):
    """One bluesky run in a `Catalog`.

    :param tiled_run: the tiled client of the run (``BlueskyRunV3``).
    :param log_dir: where raw document logs are (``<uid>.jsonl``), if anywhere.
    :param stream: the stream holding the frames.
    """

    def __init__(
        self, tiled_run: Any, *, log_dir: Path | None = None, stream: str = Stream.PRIMARY
    ) -> None:
        self.tiled = tiled_run
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.stream = stream

    def __repr__(self) -> str:
        start = self.start
        return (
            f"<Run {self.uid[:8]} plan={start.get('plan_name')!r} "
            f"phases={self.phases} exit={self.exit_status!r}>"
        )

    # ------------------------------------------------------------ metadata
    @property
    def uid(self) -> str:
        """The run's start uid."""
        return self.start["uid"]

    @property
    def start(self) -> dict[str, Any]:
        """The start document."""
        return dict(self.tiled.metadata["start"])

    @property
    def stop(self) -> dict[str, Any] | None:
        """The stop document; None while running or if the writer died unrecovered."""
        stop = self.tiled.metadata.get("stop")
        return dict(stop) if stop else None

    @property
    def exit_status(self) -> str | None:
        """``success``/``abort``/``fail`` from the stop document; None without one."""
        stop = self.stop
        return stop.get("exit_status") if stop else None

    @property
    def descriptors(self) -> list[dict[str, Any]]:
        """The event descriptors of every stream."""
        return [dict(d) for d in self.tiled.descriptors]

    @property
    def streams(self) -> list[str]:
        """Stream names."""
        return list(self.tiled)

    @property
    def experiment(self) -> list[Any] | None:
        """The experiment from the start document as `Phase`/`Wait`/`Parallel` objects.

        Elements that can't be rebuilt (decision callables, recorded only by name) stay
        as their JSON dicts. None for runs not made by ``optogenetic_plan``.
        """
        from ..plans import experiment_from_json

        items = self.start.get("experiment")
        if items is None:
            return None
        out: list[Any] = []
        for item in items:
            try:
                out.extend(experiment_from_json([item]))
            except (ValueError, TypeError) as exc:
                logger.debug("experiment item kept as JSON: %s", exc)
                out.append(item)
        return out

    # -------------------------------------------------------------- frames
    def _stream(self) -> Any:
        if self.stream not in self.tiled:
            raise ValueError(
                f"run {self.uid[:8]} has no stream {self.stream!r} (streams: {self.streams})"
            )
        return self.tiled[self.stream]

    @cached_property
    def image_key(self) -> str:
        """The data key of the frames (the stream's external array, e.g. ``camera``)."""
        for desc in self.descriptors:
            if desc.get("name") != self.stream:
                continue
            for key, spec in desc["data_keys"].items():
                if spec.get("external", "").startswith("STREAM") and len(spec["shape"]) == 3:
                    return key
        raise ValueError(f"stream {self.stream!r} of run {self.uid[:8]} records no images")

    @property
    def frames(self) -> pd.DataFrame:
        """One row per frame: index (in the raw array), t, p, kind, c, channel, phase, time.

        Read anew on every access, so it grows while the run is being written (in batches:
        a running run's first events, or even its stream, may not be in the catalog yet:
        then it is empty).
        """
        if self.stop is not None or self.stream in self.tiled:
            self._stream()  # a finished run without the stream: say so
        return frames_table(self._events(self.stream))

    def timing(self) -> RunTiming:
        """Schedule lag per visit and closed-loop latency per stimulation (ms).

        From the documents alone (exposure times, DMD and mask timestamps recorded in the
        events, and the analyzer's times in the mask events: the stages of
        `faro_bluesky.storage.LATENCY_STAGES`); ``run.timing().summary()`` gives
        p50/p95/p99/max.
        """
        return run_timing(self._events(self.stream), self._events(Stream.MASK))

    def _events(self, stream: str) -> pd.DataFrame:
        if stream not in self.tiled:
            return pd.DataFrame()
        node = self.tiled[stream].base
        return node["internal"].read() if "internal" in node else pd.DataFrame()

    @property
    def store_path(self) -> Path | None:
        """The run's zarr store (``<uuid>.zarr``) as recorded; None if no images."""
        uri = self._image_uri()
        return RunStore.from_uri(uri).path if uri else None

    def _image_uri(self) -> str | None:
        try:
            key = self.image_key
        except ValueError:
            return None
        for desc in self.descriptors:
            if desc.get("name") == self.stream and key in desc["data_keys"]:
                return desc["data_keys"][key].get("source")
        return None

    @property
    def store(self) -> RunStore:
        """Readers of the run's zarr store (raw, labels, tracks)."""
        uri = self._image_uri()
        if uri is None:
            if "analysis_store" in self.start:  # a `reanalyze` run: labels and tracks only
                return RunStore(self.start["analysis_store"])
            raise ValueError(f"run {self.uid[:8]} recorded no images: it has no zarr store")
        return RunStore.from_uri(uri)

    def raw(self, via: str = "auto") -> da.Array:
        """All frames (N, 1, H, W) in acquisition order, N = the frames with events.

        ``via="zarr"`` opens the store on disk, ``"tiled"`` reads through the catalog
        (e.g. from a remote server), ``"auto"`` the store if it is on this machine, else
        tiled.
        """
        return self._raw(via)[: len(self.frames)]

    def _raw(self, via: str) -> da.Array:
        """Every frame the source has (the store may hold frames without events yet)."""
        if via not in ("auto", "zarr", "tiled"):
            raise ValueError(f"via={via!r} must be 'auto', 'zarr' or 'tiled'")
        if via == "zarr" or (via == "auto" and self.store.exists()):
            return self.store.raw()
        array = self._stream()[self.image_key]
        shape = tuple(array.shape)
        return da.from_array(array, chunks=(1, *shape[1:]), name=False)

    def images(self, fov: int, kind: str = FrameKind.IMAGE, *, via: str = "auto") -> da.Array:
        """FOV ``fov``'s frames of ``kind`` (image/ref/stim) as (T, C, Y, X).

        T runs over the timepoints that have such a frame (`timepoints`), C over the
        channel positions of that kind; a missing frame is zeros.
        """
        _, grid = frame_grid(self.frames, fov, kind)
        return assemble(self._raw(via), grid)

    def timepoints(self, fov: int, kind: str = FrameKind.IMAGE) -> np.ndarray:
        """The ``t`` of each row of ``images(fov, kind)``."""
        ts, _ = frame_grid(self.frames, fov, kind)
        return ts

    # ------------------------------------------------------------ documents
    @property
    def log_path(self) -> Path | None:
        """The raw document log of this run, if there is one."""
        if self.log_dir is None:
            return None
        path = self.log_dir / f"{self.uid}.jsonl"
        return path if path.is_file() else None

    def documents(self, source: str = "auto") -> Iterator[tuple[str, dict[str, Any]]]:
        """The run's documents in live order: from the raw log, else from tiled.

        ``source`` is ``"auto"``, ``"log"`` (exact, as emitted) or ``"tiled"`` (tiled's
        re-synthesised documents put back in live order; datum uids differ).
        """
        for name, doc, _ in self.timed_documents(source):
            yield name, doc

    def timed_documents(self, source: str = "auto") -> Iterator[TimedDocument]:
        """Documents with the time each was received (log) or made (tiled: doc time)."""
        if source not in ("auto", "log", "tiled"):
            raise ValueError(f"source={source!r} must be 'auto', 'log' or 'tiled'")
        log = self.log_path
        if source == "log" and log is None:
            raise ValueError(f"run {self.uid[:8]} has no raw document log: use source='tiled'")
        if log is not None and source != "tiled":
            for item in read_document_log(log):
                yield item.name, item.doc, item.received
            return
        last: float | None = None
        for name, doc in live_order(self.tiled.documents()):
            last = doc.get("time", last)
            yield name, doc, last
