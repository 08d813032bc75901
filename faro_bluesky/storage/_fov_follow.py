"""When per-FOV views are built: after each recorded run's stop, and on demand.

`FovViewBuilder` sits in every catalog `Recorder`: it keeps the few fields of each frame
event the views need (the frames table, from the documents as they pass) and, after the
run's stop is recorded, builds the run's views on a worker thread (one per process), so
the RunEngine returns without waiting for thousands of links (one per frame). `FovStores`
gives `Run` ``fov_store()``, which builds them if they are missing or stale (a run rebuilt
from its raw log, or recorded before this existed) and, in the recording process, waits
for a build under way (one lock per store), so what it returns is complete.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import zarr
from event_model import unpack_event_page

from ..devices import FOVS, store_lock
from ..schema import FrameField, Stream
from ._fov_views import build_fov_views, views_current
from ._frames import frames_table
from ._store import RunStore

if TYPE_CHECKING:
    from ._run import Run

logger = logging.getLogger(__name__)

_KEPT = (FrameField.CHANNEL, FrameField.STAGE_X, FrameField.STAGE_Y)
"""Event fields the frames table needs besides the ``visit-*`` ones."""


class _RunFrames:
    """The frame events of one run seen so far."""

    def __init__(self, start: dict[str, Any]) -> None:
        self.start = start
        self.image_uri: str | None = None
        self.rows: list[dict[str, Any]] = []

    def descriptor(self, doc: Mapping[str, Any]) -> bool:
        """Whether ``doc`` describes the frames (the primary stream's external image)."""
        if doc.get("name") != Stream.PRIMARY:
            return False
        for spec in doc.get("data_keys", {}).values():
            if str(spec.get("external", "")).startswith("STREAM") and len(spec["shape"]) == 3:
                self.image_uri = self.image_uri or spec.get("source")
                return True
        return False

    def event(self, doc: Mapping[str, Any]) -> None:
        data = doc["data"]
        row = {k: v for k, v in data.items() if k.startswith("visit-") or k in _KEPT}
        row["seq_num"], row["time"] = doc["seq_num"], doc["time"]
        self.rows.append(row)


class FovViewBuilder:
    """Follows a RunEngine's documents; after each run's stop, builds its per-FOV views.

    Never raises into the RunEngine: a run whose views fail keeps its raw array (logged;
    ``run.fov_store()`` tries again). `wait` and `close` wait for builds under way.
    """

    def __init__(self) -> None:
        self._runs: dict[str, _RunFrames] = {}
        self._frames_of: dict[str, str] = {}  # primary descriptor uid -> run uid
        self._builds: list[Future[None]] = []

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        """Take one document (after the recorder recorded it)."""
        try:
            self._follow(name, doc)
        except Exception:  # a malformed document: the catalog's writer says so
            logger.exception("per-FOV views: could not follow a %r document", name)

    def _follow(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            self._runs[doc["uid"]] = _RunFrames(dict(doc))
        elif name == "descriptor":
            run = self._runs.get(doc["run_start"])
            if run is not None and run.descriptor(doc):
                self._frames_of[doc["uid"]] = doc["run_start"]
        elif name in ("event", "event_page"):
            run = self._runs.get(self._frames_of.get(doc["descriptor"], ""))
            if run is not None:
                for event in unpack_event_page(doc) if name == "event_page" else [doc]:
                    run.event(event)
        elif name == "stop":
            uid = doc["run_start"]
            run = self._runs.pop(uid, None)
            self._frames_of = {k: v for k, v in self._frames_of.items() if v != uid}
            if run is not None and run.image_uri and run.rows:
                self._builds = [f for f in self._builds if not f.done()]
                self._builds.append(_pool().submit(_build, run))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the builds under way; False if some were still running at ``timeout``."""
        _, running = wait(list(self._builds), timeout)
        return not running

    def close(self, timeout: float | None = None) -> None:
        """Wait (up to ``timeout`` s) for the builds under way."""
        if not self.wait(timeout):
            logger.warning("per-FOV views were still being built after %s s", timeout)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One thread builds every recorder's views, in stop order (started at the first)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(1, thread_name_prefix="fov-views")
        return _POOL


def _build(run: _RunFrames) -> None:
    try:
        store = RunStore.from_uri(str(run.image_uri))
        if not store.exists():
            return  # another machine's store (a remote catalog's writer)
        frames = frames_table(pd.DataFrame(run.rows))
        counts = build_fov_views(store.path, frames, run.start, array_name=store.array_name)
        logger.info("run %s: per-FOV views in %s (%s)", run.start["uid"][:8], store.path, counts)
    except Exception:  # never lose the run over its views: the raw array is intact
        logger.exception("run %s: per-FOV OME-Zarr views could not be built", run.start["uid"])


class FovStores:
    """Mixed into `Run`: the run's images as standard OME-Zarr, one image per FOV."""

    def fov_store(self: Run, fov: int | None = None, *, rebuild: bool = False) -> Path:
        """``<store>/fovs/<fov>``: FOV ``fov``'s ``(t, c, y, x)`` OME-Zarr image.

        With ``fov=None`` the collection ``<store>/fovs`` (all FOVs, a bioformats2raw
        collection). Built from the run's frames if missing or older than the raw array
        (``rebuild=True`` forces it); open it with napari-ome-zarr or ``ome_zarr``. The views
        are files beside the raw frames: only the machine holding the store has them.
        """
        store = self.store
        if not store.exists():
            raise ValueError(
                f"run {self.uid[:8]}: no raw frames at {store.path / store.array_name} on this "
                "machine; the per-FOV views are files beside them (open them where they are)"
            )
        with store_lock(store.path):
            if rebuild or not views_current(store):
                build_fov_views(store.path, self.frames, self.start, array_name=store.array_name)
        root = store.path / FOVS
        if not (root / "OME" / "zarr.json").is_file():
            raise ValueError(f"run {self.uid[:8]} has no frame events: no per-FOV views")
        if fov is None:
            return root
        series = [str(s) for s in zarr.open_group(root / "OME", mode="r").attrs["ome"]["series"]]
        if str(fov) not in series:
            raise ValueError(f"fov={fov} has no frames in run {self.uid[:8]}: one of {series}")
        return root / str(fov)
