"""`replay`: send a stored run's documents to callbacks, as fast as possible or as timed.

Sources: a catalog `Run` (its raw log when there is one, else tiled's documents put back
in live order), a raw document log path, a run client from tiled itself, or a databroker
run (anything with ``documents()``: a v1 ``Header``, a v2 ``BlueskyRun``; see
`databroker_run`). With ``timing="original"`` each document is sent at its original
offset from the first, divided by ``speed``: deadlines are absolute, so a slow callback
delays the documents after it but the replay does not drift.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ._doclog import read_document_log
from ._run import Run, TimedDocument

Callback = Callable[[str, dict[str, Any]], Any]
_SPIN_S = 0.003  # the last part of each timed wait is spun, not slept


def _callbacks(callbacks: Callback | Iterable[Callback]) -> list[Callback]:
    cbs = [callbacks] if callable(callbacks) else callbacks
    try:
        cbs = list(cbs)
    except TypeError:
        raise TypeError(
            f"callbacks={callbacks!r} must be a callable (name, doc) or a list of them"
        ) from None
    for cb in cbs:
        if not callable(cb):
            raise TypeError(f"callbacks: {cb!r} is not callable; pass f(name, doc) callables")
    return cbs


def timed_documents(source: Any) -> Iterator[TimedDocument]:
    """(name, doc, time) of every document of ``source`` (see the module docstring)."""
    if isinstance(source, Run):
        yield from source.timed_documents()
        return
    if isinstance(source, str | Path):
        for item in read_document_log(source):
            yield item.name, item.doc, item.received
        return
    if _is_tiled_run(source):
        yield from Run(source).timed_documents(source="tiled")
        return
    documents = getattr(source, "documents", None)
    if callable(documents):
        last: float | None = None
        for name, doc in _call_documents(documents):
            doc = dict(doc)
            last = doc.get("time", last)
            yield name, doc, last
        return
    raise TypeError(
        f"source={source!r} is not a run: pass a catalog Run, a raw document log path "
        "(<uid>.jsonl), or a databroker run (databroker_run(catalog, uid))"
    )


def _is_tiled_run(obj: Any) -> bool:
    try:
        from bluesky_tiled_plugins.clients.bluesky_run import BlueskyRunV3
    except ImportError:  # pragma: no cover - a dependency
        return False
    return isinstance(obj, BlueskyRunV3)


def _call_documents(documents: Callable[..., Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """Call ``documents(fill=False)`` (databroker), or ``documents()`` (tiled: no fill)."""
    try:
        return documents(fill=False)
    except TypeError:
        return documents()


def _wait_until(deadline: float) -> None:
    """Sleep until ``deadline`` (perf_counter s), spinning for the last `_SPIN_S`.

    A plain sleep wakes up late by up to a GIL switch interval (5 ms) when other threads
    are busy; measured here that made a 10 ms gap 12 % short. The short final spin
    keeps the error to tens of µs.
    """
    remaining = deadline - time.perf_counter()
    if remaining > _SPIN_S:
        time.sleep(remaining - _SPIN_S)
    while time.perf_counter() < deadline:
        pass


def replay(
    source: Any,
    callbacks: Callback | Iterable[Callback],
    *,
    timing: str = "fast",
    speed: float = 1.0,
) -> int:
    """Send the documents of ``source`` to ``callbacks`` in order; return how many.

    :param source: a `Run`, a raw document log path, a tiled run, or a databroker run.
    :param callbacks: an ``f(name, doc)`` callable (anything ``RE.subscribe`` takes) or
        a list of them; each document goes to each callback in list order.
    :param timing: ``"fast"`` (no waiting) or ``"original"`` (the recorded gaps between
        documents, divided by ``speed``).
    :param speed: how many times faster than recorded (``"original"`` timing only).
    """
    if timing not in ("fast", "original"):
        raise ValueError(f"timing={timing!r} must be 'fast' or 'original'")
    if not speed > 0:
        raise ValueError(f"speed={speed!r} must be > 0 (2 = twice as fast as recorded)")
    cbs = _callbacks(callbacks)
    count = 0
    origin: float | None = None
    t0 = 0.0
    for name, doc, received in timed_documents(source):
        if timing == "original" and received is not None:
            if origin is None:
                origin, t0 = received, time.perf_counter()
            _wait_until(t0 + (received - origin) / speed)
        for cb in cbs:
            cb(name, doc)
        count += 1
    return count


def databroker_run(catalog: str, uid: str) -> Any:
    """A run of a databroker catalog (v2 API), for `replay`; needs the optional databroker.

    ``catalog`` is a name in ``databroker.catalog`` (e.g. a Mongo-backed catalog from a
    databroker configuration); ``uid`` a start uid or scan id.
    """
    try:
        import databroker
    except ImportError:
        raise ImportError(
            "reading a databroker catalog needs the optional 'databroker' package, which "
            "is not installed: uv sync --extra databroker (databroker[complete]==2.0.2, deprecated "
            "upstream; catalogs written by faro-bluesky are tiled catalogs and need no "
            "databroker)"
        ) from None
    try:
        entry = databroker.catalog[catalog]
    except KeyError:
        raise ValueError(
            f"catalog={catalog!r} is not a databroker catalog here: "
            f"known are {list(databroker.catalog)}"
        ) from None
    return entry[uid]
