"""Replay gives the live document sequence, from the raw log and from the catalog; timing."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

import faro_bluesky.storage._replay as _replay_module
from faro_bluesky.storage import (
    DocumentLog,
    read_document_log,
    replay,
    writer_alive,
)


def same(a, b) -> bool:
    """Deep equality that treats arrays by value and dtype, lists and tuples alike."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        nan_ok = a.dtype.kind in "fc"  # an uncalibrated DMD's calibration is all NaN
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, nan_ok)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True  # a mask whose source gives no times (`MaskTimes`): NaN both ways
    return a == b


def collect(source, **kw):
    got = []
    n = replay(source, lambda name, doc: got.append((name, doc)), **kw)
    assert n == len(got)
    return got


def test_replay_from_raw_log_is_exactly_the_live_sequence(recorded):
    run = recorded.catalog[recorded.uid]
    assert run.log_path is not None
    for source in (run, run.log_path, str(run.log_path)):
        got = collect(source)
        assert [n for n, _ in got] == [n for n, _ in recorded.live]
        for (_, doc), (_, live_doc) in zip(got, recorded.live, strict=True):
            assert same(doc, live_doc)
    # masks come back as arrays of the recorded dtype
    masks = [d["data"]["mask-mask"] for n, d in got if n == "event" and "mask-mask" in d["data"]]
    assert len(masks) == 4 and all(isinstance(m, np.ndarray) and m.all() for m in masks)


def test_replay_from_tiled_documents_matches_live_names_and_event_data(recorded):
    run = recorded.catalog[recorded.uid]
    got = collect(run.tiled)  # tiled's re-synthesised documents, put back in live order
    live = recorded.live
    assert [n for n, _ in got] == [n for n, _ in live]
    resource = None
    for (name, doc), (_, live_doc) in zip(got, live, strict=True):
        if name == "event":
            assert doc["seq_num"] == live_doc["seq_num"]
            assert doc["descriptor"] == live_doc["descriptor"]
            assert same(doc["data"], live_doc["data"])
        elif name == "stream_resource":  # tiled gives resources (and datums) new uids
            for key in ("uri", "data_key", "mimetype", "run_start"):
                assert doc[key] == live_doc[key]
            resource = doc["uid"]
        elif name == "stream_datum":
            assert doc["indices"] == live_doc["indices"]
            assert doc["seq_nums"] == live_doc["seq_nums"]
            assert doc["descriptor"] == live_doc["descriptor"]
            assert doc["stream_resource"] == resource
        elif name in ("start", "descriptor", "stop"):
            assert doc["uid"] == live_doc["uid"]
    assert [n for n, _ in run.documents(source="tiled")] == [n for n, _ in live]


def _synthetic_log(tmp_path, gaps):
    log = DocumentLog(tmp_path)
    start = {"uid": "u-1", "time": 0.0}
    desc = {"uid": "d-1", "run_start": "u-1", "name": "primary", "data_keys": {}}
    t = 1000.0
    log.write("start", start, "u-1", t)
    log.write("descriptor", desc, "u-1", t)
    for i, gap in enumerate(gaps):
        t += gap
        event = {"uid": f"e{i}", "descriptor": "d-1", "seq_num": i + 1, "data": {}, "time": t}
        log.write("event", event, "u-1", t)
    log.write("stop", {"uid": "s-1", "run_start": "u-1"}, "u-1", t)
    log.close_run("u-1")
    return log.path("u-1")


def _arrival_gaps(path, **kw):
    stamps = []
    replay(path, lambda name, doc: stamps.append(time.perf_counter()), **kw)
    return np.diff(stamps)


def test_original_timing_reproduces_the_recorded_gaps(tmp_path, recorded, monkeypatch):
    # What the replay asks for is exact and machine-independent: every document is due at
    # the start plus its recorded offset / speed (an absolute schedule, so lateness never
    # accumulates). How late the OS then wakes us up depends on the machine's load and is
    # measured by hand, not here (docs/benchmarks.md: ~0.05 ms quiet).
    gaps = [0.08, 0.05, 0.15, 0.05, 0.06, 0.12]
    path = _synthetic_log(tmp_path, gaps)
    offsets = np.cumsum([0.0, 0.0, *gaps, 0.0])  # start, descriptor, events, stop
    asked: list[float] = []
    real_wait = _replay_module._wait_until
    monkeypatch.setattr(_replay_module, "_wait_until", asked.append)
    clock = iter(np.arange(100.0, 200.0, 0.5))  # time moves on between documents
    fake_time = SimpleNamespace(perf_counter=lambda: next(clock))  # this module's clock only
    monkeypatch.setattr(_replay_module, "time", fake_time)
    for speed in (1.0, 2.0, 0.5):
        asked.clear()
        replay(path, lambda name, doc: None, timing="original", speed=speed)
        t0 = asked[0]
        np.testing.assert_allclose(np.array(asked) - t0, offsets / speed, atol=1e-9)
    monkeypatch.undo()
    assert _replay_module._wait_until is real_wait

    # Real waits: never early (a document is never delivered before it is due), for the
    # synthetic log and for a real run's log.
    real_log = recorded.catalog[recorded.uid].log_path
    received = np.array([i.received for i in read_document_log(real_log)])
    for log_path, want in ((path, offsets), (real_log, received - received[0])):
        arrived = np.concatenate([[0.0], np.cumsum(_arrival_gaps(log_path, timing="original"))])
        assert np.all(arrived >= want - 0.001), (arrived, want)

    # fast: no waiting at all
    monkeypatch.setattr(_replay_module, "_wait_until", _never)
    assert len(_arrival_gaps(path, timing="fast")) == len(offsets) - 1


def _never(deadline: float) -> None:
    raise AssertionError("timing='fast' waited")


def test_wait_until_never_returns_early():
    for delay in (0.0, 0.001, 0.004, 0.012):
        deadline = time.perf_counter() + delay
        _replay_module._wait_until(deadline)
        assert time.perf_counter() >= deadline


def test_replay_rejects_bad_input_with_the_fix(recorded, tmp_path):
    run = recorded.catalog[recorded.uid]
    with pytest.raises(ValueError, match="timing="):
        replay(run, print, timing="slow")
    with pytest.raises(ValueError, match="speed="):
        replay(run, print, timing="original", speed=0)
    with pytest.raises(TypeError, match="not callable"):
        replay(run, [print, 3])
    with pytest.raises(TypeError, match="source="):
        replay(42, print)
    with pytest.raises(ValueError, match="does not exist"):
        replay(tmp_path / "missing.jsonl", print)


def test_documents_of_any_run_like_object_are_replayed():
    class LegacyHeader:  # what a databroker v1 Header or v2 run offers
        def documents(self, fill=False):
            assert fill is False
            yield "start", {"uid": "a", "time": 1.0}
            yield "stop", {"uid": "b", "run_start": "a", "time": 1.02}

    got = collect(LegacyHeader(), timing="original")
    assert [n for n, _ in got] == ["start", "stop"]


def test_document_log_round_trip_lock_and_truncated_tail(tmp_path):
    log = DocumentLog(tmp_path)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 5:9] = 1
    start = {"uid": "r", "time": 1.0, "hints": {"dimensions": [(["t"], "primary")]}}
    event = {
        "uid": "e",
        "descriptor": "d",
        "seq_num": np.int64(1),
        "data": {"mask": mask, "flag": np.bool_(True), "x": np.float32(0.5)},
    }
    log.write("start", start, "r", 10.0)
    assert writer_alive(log.path("r"))  # the run is open: its lock is held
    log.write("event", event, "r", 10.5)
    log.close_run("r")
    assert not writer_alive(log.path("r"))
    assert not log.path("r").with_suffix(".lock").exists()

    with open(log.path("r"), "a") as f:
        f.write('{"name": "event", "received": 11.0, "doc": {"uid": "cut')  # killed mid-line
    items = list(read_document_log(log.path("r")))
    assert [(i.name, i.received) for i in items] == [("start", 10.0), ("event", 10.5)]
    back = items[1].doc["data"]
    assert back["mask"].dtype == np.uint8 and np.array_equal(back["mask"], mask)
    assert back["flag"] is True and back["x"] == 0.5
    assert items[0].doc["hints"] == {"dimensions": [[["t"], "primary"]]}
