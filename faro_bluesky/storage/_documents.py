"""Put tiled's re-synthesised documents back into the order a RunEngine emits them.

tiled's ``run.documents()`` gives ``start, descriptors, events..., stream_resource,
stream_datum (one, merged), stop``, with internal arrays as nested lists (see
bluesky-stack.md 5.4). A consumer driven live (the analyzer) sees instead, per frame:
``stream_datum`` then its ``event``, the ``stream_resource`` before the first datum and
each descriptor before its first event (a declared one at its declaration). `live_order`
rebuilds that: events in time order, descriptors by their time, one stream_datum per event
split from the merged one (uid ``<resource uid>/<index>``, as ophyd-async makes them),
arrays back as numpy arrays of the descriptor's dtype. Event data and their order then
equal the live run's; only datum uids differ.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

Document = tuple[str, dict[str, Any]]


def _plain(obj: Any) -> Any:
    """Plain dicts and lists (tiled's document classes are dict subclasses)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _array_keys(descriptor: dict[str, Any]) -> dict[str, str]:
    """Internal array data keys of a descriptor and their numpy dtype."""
    out = {}
    for key, spec in descriptor.get("data_keys", {}).items():
        if spec.get("shape") and not spec.get("external"):
            out[key] = spec.get("dtype_numpy") or ""
    return out


def _arrays_back(event: dict[str, Any], arrays: dict[str, str]) -> dict[str, Any]:
    data = event.get("data", {})
    for key, dtype in arrays.items():
        if key in data and not isinstance(data[key], np.ndarray):
            data[key] = np.asarray(data[key], dtype=np.dtype(dtype) if dtype else None)
    return event


def live_order(documents: Iterable[Document]) -> Iterator[Document]:
    """The documents of one run from tiled, in RunEngine order (see the module docstring)."""
    start: dict[str, Any] | None = None
    stop: dict[str, Any] | None = None
    descriptors: dict[str, dict[str, Any]] = {}
    resources: dict[str, dict[str, Any]] = {}
    ranges: dict[str, list[dict[str, Any]]] = defaultdict(list)  # descriptor -> datums
    events: list[dict[str, Any]] = []
    other: list[Document] = []
    for name, doc in documents:
        doc = _plain(doc)
        if name == "start":
            start = doc
        elif name == "stop":
            stop = doc
        elif name == "descriptor":
            descriptors[doc["uid"]] = doc
        elif name == "event":
            events.append(doc)
        elif name == "event_page":
            events.extend(_unpack_page(doc))
        elif name == "stream_resource":
            resources[doc["uid"]] = doc
        elif name == "stream_datum":
            ranges[doc["descriptor"]].append(doc)
        else:
            other.append((name, doc))
    if start is None:
        raise ValueError("documents have no start document: not a whole run")
    yield "start", start
    yield from other
    arrays = {uid: _array_keys(d) for uid, d in descriptors.items()}
    emitted: set[str] = set()
    # a descriptor goes out before its stream's first event, or earlier: a stream the plan
    # declared at its start (`declare_stream`) was described before any event
    by_time = sorted(descriptors.values(), key=lambda d: d.get("time", math.inf))
    for event in sorted(events, key=lambda e: (e["time"], e["seq_num"])):
        desc = event["descriptor"]
        while by_time and by_time[0].get("time", math.inf) <= event["time"]:
            declared = by_time.pop(0)
            if declared["uid"] not in emitted:
                emitted.add(declared["uid"])
                yield "descriptor", declared
        if desc not in emitted and desc in descriptors:
            emitted.add(desc)
            yield "descriptor", descriptors[desc]
        for datum in ranges.get(desc, ()):
            seq = event["seq_num"]
            first, last = datum["seq_nums"]["start"], datum["seq_nums"]["stop"]
            if not first <= seq < last:
                continue
            sr = datum["stream_resource"]
            if sr not in emitted and sr in resources:
                emitted.add(sr)
                yield "stream_resource", resources[sr]
            index = datum["indices"]["start"] + (seq - first)
            yield (
                "stream_datum",
                {
                    "uid": f"{sr}/{index}",
                    "stream_resource": sr,
                    "descriptor": desc,
                    "indices": {"start": index, "stop": index + 1},
                    "seq_nums": {"start": seq, "stop": seq + 1},
                },
            )
        yield "event", _arrays_back(event, arrays.get(desc, {}))
    for uid, desc in descriptors.items():
        if uid not in emitted:
            yield "descriptor", desc
    for uid, sr in resources.items():
        if uid not in emitted:
            yield "stream_resource", sr
    if stop:  # a running run has none (tiled sends an empty one): its replay ends here
        yield "stop", stop


def _unpack_page(page: dict[str, Any]) -> list[dict[str, Any]]:
    from event_model import unpack_event_page

    return [dict(e) for e in unpack_event_page(page)]
