"""The analyzer's labels and tracks as two more streams of the run, so tiled serves them.

The analyzer writes label images and tracks into the run's zarr store (decision 0016), which
only a process that can open that directory reads. To serve them to any tiled client, the
run gets two streams made of ordinary documents, composed by storage from the store when the
run stops (after the plan has let the analysis finish: nothing is added to the closed loop's
path, decision 0030) and written, like the RunEngine's, to the raw log and the catalog:

- ``labels``: one event per camera frame (``labels-frame``: its index) and, per label image,
  an external data key ``labels-<name>`` whose StreamResource points at the store's
  ``labels/<name>/0`` array (``application/x-zarr``, indexed like ``camera``): tiled serves
  the array where it lies, no pixel is copied.
- ``tracks``: one event per row of the tracks table, keys ``tracks-<column>`` (each column's
  numpy dtype in its data key, so a reader gets the table's dtypes back).

A reanalysis run (`reanalyze`) composes the same two streams from its own store; a run
rebuilt from its raw log gets them there if its log lacks them (docs/decisions/
0053-analysis-outputs-in-tiled.md).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from event_model import compose_descriptor, compose_stream_resource

from ..devices import path_from_uri
from ..schema import Stream
from ._store import LABELS, TRACKS, RunStore

logger = logging.getLogger(__name__)

LABEL_PREFIX = "labels-"
TRACK_PREFIX = "tracks-"
FRAME_KEY = f"{LABEL_PREFIX}frame"
"""The ``labels`` stream's own column: the camera frame index of each row."""
_PAGE_ROWS = 5000  # rows per event page: a raw-log line stays a few MB at most
Document = tuple[str, dict[str, Any]]


def analysis_root(image_uri: str | None, start: Mapping[str, Any]) -> Path | None:
    """Where a run's analysis wrote, if it wrote anything there.

    A reanalysis run names its store in the start document; a live run's analysis writes
    into the run's own store (the camera array's parent), unless it was given ``output=``.
    """
    candidates = []
    if start.get("analysis_store"):
        candidates.append(Path(start["analysis_store"]))
    if image_uri:
        with contextlib.suppress(ValueError):  # not a file: nothing of it on this machine
            candidates.append(path_from_uri(image_uri).parent)
    for root in candidates:
        if (root / LABELS).is_dir() or (root / TRACKS).is_dir():
            return root
    return None


def analysis_documents(
    start: Mapping[str, Any], root: Path, n_frames: int, *, now: float | None = None
) -> list[Document]:
    """The ``labels`` and ``tracks`` streams of run ``start`` from the store at ``root``.

    :param n_frames: the run's camera frames; the labels stream has that many rows at most
        (fewer if the label arrays are shorter: rows past them hold no label).
    """
    now = time.time() if now is None else now
    store = RunStore(root)
    return _label_documents(start, store, n_frames, now) + _track_documents(
        start, store.tracks(), now
    )


def _label_documents(
    start: Mapping[str, Any], store: RunStore, n_frames: int, now: float
) -> list[Document]:
    arrays: dict[str, zarr.Array] = {}
    for name in store.label_names():
        try:
            arrays[name] = zarr.open_array(store.path / LABELS / name / "0", mode="r")
        except Exception as exc:  # listed but not created yet (analysis still starting)
            logger.warning("label image %r of %s is not readable: %s", name, store.path, exc)
    # Every label array grows with the others (`LabelStore`): any label written so far lies
    # in the first n frames of each, and tiled can serve n rows of each.
    n = min([n_frames, *(a.shape[0] for a in arrays.values())])
    if not arrays or n <= 0:
        return []
    data_keys: dict[str, Any] = {
        FRAME_KEY: {"source": "faro:labels", "dtype": "integer", "dtype_numpy": "<i8", "shape": []}
    }
    uris = {}
    for name, array in arrays.items():
        h, w = array.shape[-2:]
        uris[name] = (store.path / LABELS / name / "0").absolute().as_uri()
        data_keys[LABEL_PREFIX + name] = {
            "source": uris[name],
            "dtype": "array",
            "dtype_numpy": array.dtype.str,
            "shape": [1, h, w],
            "external": "STREAM:",
        }
    desc = compose_descriptor(
        start=start,
        streams={},
        event_counters={},
        name=Stream.LABELS,
        data_keys=data_keys,
        time=now,
    )
    docs: list[Document] = [("descriptor", dict(desc.descriptor_doc))]
    for name, array in arrays.items():
        resource = compose_stream_resource(
            mimetype="application/x-zarr",
            uri=uris[name],
            data_key=LABEL_PREFIX + name,
            parameters={"chunk_shape": [1, 1, *array.shape[-2:]]},
            start=start,
        )
        datum = resource.compose_stream_datum(
            indices={"start": 0, "stop": n},
            seq_nums={"start": 1, "stop": n + 1},
            descriptor=desc.descriptor_doc,
        )
        docs += [("stream_resource", dict(resource.stream_resource_doc))]
        docs += [("stream_datum", dict(datum))]
    for first in range(0, n, _PAGE_ROWS):
        rows = range(first, min(n, first + _PAGE_ROWS))
        page = desc.compose_event_page(
            data={FRAME_KEY: list(rows)},
            timestamps={FRAME_KEY: [now] * len(rows)},
            seq_num=[i + 1 for i in rows],
            time=[now] * len(rows),
            filled={},
        )
        docs.append(("event_page", dict(page)))
    return docs


def _column(series: pd.Series) -> tuple[list[Any], dict[str, Any]]:
    """A tracks column as event values and its data key."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        values: list[Any] = [bool(v) for v in series]
        spec = {"dtype": "boolean", "dtype_numpy": "|b1"}
    elif pd.api.types.is_integer_dtype(dtype):
        values = [int(v) for v in series]
        spec = {"dtype": "integer", "dtype_numpy": np.dtype(dtype).str}
    elif pd.api.types.is_float_dtype(dtype):
        values = [float(v) for v in series]  # NaN stays: the row had no such measurement
        spec = {"dtype": "number", "dtype_numpy": np.dtype(dtype).str}
    else:  # text (phase), or anything else: as text, "" where missing
        values = ["" if _missing(v) else str(v) for v in series]
        spec = {"dtype": "string"}
    return values, {"source": "faro:tracks", "shape": [], **spec}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _track_documents(start: Mapping[str, Any], table: pd.DataFrame, now: float) -> list[Document]:
    if not len(table):
        return []
    columns: dict[str, list[Any]] = {}
    data_keys: dict[str, Any] = {}
    for name in table.columns:
        key = TRACK_PREFIX + str(name).replace(".", "_").replace("/", "_")
        columns[key], data_keys[key] = _column(table[name])
    desc = compose_descriptor(
        start=start,
        streams={},
        event_counters={},
        name=Stream.TRACKS,
        data_keys=data_keys,
        time=now,
    )
    docs: list[Document] = [("descriptor", dict(desc.descriptor_doc))]
    for first in range(0, len(table), _PAGE_ROWS):
        rows = slice(first, min(len(table), first + _PAGE_ROWS))
        count = rows.stop - rows.start
        page = desc.compose_event_page(
            data={k: v[rows] for k, v in columns.items()},
            timestamps={k: [now] * count for k in columns},
            seq_num=list(range(rows.start + 1, rows.stop + 1)),
            time=[now] * count,
            filled={},
        )
        docs.append(("event_page", dict(page)))
    return docs


class AnalysisFollower:
    """Follows a RunEngine's documents; at a run's stop, its analysis streams.

    Nothing is composed for a run that already has the streams (a reanalysis run composes
    its own) or whose analysis wrote nothing where storage can find it.
    """

    def __init__(self) -> None:
        self._runs: dict[str, _RunFacts] = {}
        self._run_of: dict[str, str] = {}  # descriptor uid -> run uid

    def feed(self, name: str, doc: Mapping[str, Any]) -> None:
        """Take one document (before the stop)."""
        if name == "start":
            self._runs[doc["uid"]] = _RunFacts(dict(doc))
            return
        if name == "descriptor":
            facts = self._runs.get(doc["run_start"])
            if facts is not None:
                self._run_of[doc["uid"]] = doc["run_start"]
                facts.descriptor(doc)
        elif name == "stream_datum":
            facts = self._runs.get(self._run_of.get(doc["descriptor"], ""))
            if facts is not None and doc["descriptor"] in facts.primaries:
                facts.n_frames = max(facts.n_frames, int(doc["indices"]["stop"]))

    def before_stop(self, stop: Mapping[str, Any]) -> list[Document]:
        """The documents to record before ``stop`` (and forget the run)."""
        uid = stop["run_start"]
        facts = self._runs.pop(uid, None)
        self._run_of = {k: v for k, v in self._run_of.items() if v != uid}
        if facts is None or facts.streams & {Stream.LABELS, Stream.TRACKS}:
            return []
        root = analysis_root(facts.image_uri, facts.start)
        if root is None:
            return []
        return analysis_documents(facts.start, root, facts.n_frames)


class _RunFacts:
    """What a run's documents so far say that its analysis streams need."""

    def __init__(self, start: dict[str, Any]) -> None:
        self.start = start
        self.streams: set[str] = set()
        self.primaries: set[str] = set()
        """Descriptors of the frames' stream (a configuration change adds one)."""
        self.image_uri: str | None = None
        self.n_frames = 0

    def descriptor(self, doc: Mapping[str, Any]) -> None:
        self.streams.add(doc.get("name", ""))
        if doc.get("name") != Stream.PRIMARY:
            return
        for spec in doc.get("data_keys", {}).values():
            if spec.get("external", "").startswith("STREAM") and len(spec["shape"]) == 3:
                self.primaries.add(doc["uid"])
                self.image_uri = self.image_uri or spec.get("source")
                return
