"""Publisher → bluesky's 0MQ proxy → followers: the documents, the status, the CLI view."""

from __future__ import annotations

import logging
import threading

import bluesky.plans as bp
import numpy as np
import pytest
from conftest import START_TIMEOUT, warm_up
from event_model import sanitize_doc

from faro_bluesky.callbacks import StatusCallback
from faro_bluesky.network import follow, pack, publish, unpack, unpublish
from faro_bluesky.plans import Channel, Phase, optogenetic_plan


def short_run(scope):
    """2 FOVs x 2 frames, the second stimulating whole-field: frames and mask arrays."""
    phase = Phase(
        "p",
        interval=0.25,
        n_frames=2,
        channels=[Channel("miRFP", 10)],
        stim_channels=[Channel("Cyan", 20, power=10)],
        stim_frames=(1,),
    )
    return optogenetic_plan([(0, 0), (300, 0)], [phase], microscope=scope)


class RunCollector:
    """Documents by run uid, with a wait for a run's stop document."""

    def __init__(self) -> None:
        self.runs: dict[str, list[tuple[str, dict]]] = {}
        self._current: str | None = None
        self._cond = threading.Condition()

    def __call__(self, name: str, doc: dict) -> None:
        with self._cond:
            if name == "start":
                self._current = doc["uid"]
                self.runs[self._current] = []
            if self._current is not None:
                self.runs[self._current].append((name, doc))
            self._cond.notify_all()

    def wait(self, uid: str, *, stopped: bool, timeout: float) -> bool:
        def ok() -> bool:
            docs = self.runs.get(uid)
            return docs is not None and (not stopped or docs[-1][0] == "stop")

        with self._cond:
            return self._cond.wait_for(ok, timeout)


def test_documents_survive_the_wire_and_pickle_is_never_needed():
    doc = {
        "data": {"mask-mask": np.eye(3, dtype=np.uint8), "x": np.float64(1.5), "n": np.int32(2)},
        "shape": (1, 2),
        "tags": {"a"},
    }
    back = unpack(pack(doc))
    np.testing.assert_array_equal(back["data"]["mask-mask"], np.eye(3, dtype=np.uint8))
    assert back["data"]["mask-mask"].dtype == np.uint8 and back["data"]["mask-mask"].flags.writeable
    assert back["data"]["x"] == 1.5 and back["data"]["n"] == 2
    assert back["shape"] == [1, 2] and back["tags"] == ["a"]
    # an object array goes as a list: the receiver never unpickles anything
    assert unpack(pack({"o": np.array([1, "b"], dtype=object)})) == {"o": [1, "b"]}
    with pytest.raises(TypeError, match="cannot send a object"):
        pack({"x": object()})


def test_a_document_that_cannot_be_sent_never_stops_the_run(RE):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("faro_bluesky.network")
    logger.addHandler(handler)
    token = publish(RE, "tcp://127.0.0.1:9")  # no proxy there: PUB drops, never blocks
    try:
        result = RE(bp.count([], num=2), note=object())  # the start document cannot be packed
    finally:
        unpublish(RE, token)
        logger.removeHandler(handler)
    assert result.exit_status == "success"
    assert [r.getMessage() for r in records] == ["could not publish a start document (1 so far)"]


def test_remote_status_sees_every_document_of_the_local_run(RE, docs, scope, network):
    remote = RunCollector()
    status = StatusCallback(tick_s=None)
    follower = follow(network.proxy.out_address, remote, status)
    token = publish(RE, network.proxy.in_address)
    try:
        warm_up(RE, lambda uid: remote.wait(uid, stopped=False, timeout=0.5))
        (uid,) = RE(short_run(scope)).run_start_uids
        assert remote.wait(uid, stopped=True, timeout=30)
    finally:
        unpublish(RE, token)
        follower.stop()
    local = run_docs(docs.docs, uid)
    received = remote.runs[uid]
    assert [n for n, _ in received] == [n for n, _ in local]  # all of them, in order
    assert sanitize_doc(received) == sanitize_doc(local)  # mask arrays included
    primary = {d["uid"] for n, d in local if n == "descriptor" and d["name"] == "primary"}
    frames = [d for n, d in local if n == "event" and d["descriptor"] in primary]
    snap = status.snapshot
    assert snap.run_uid == uid and snap.state == "done"
    assert snap.frames_received + snap.stim_frames == len(frames) == 6
    assert (snap.visits_done, snap.visits_total, snap.stim_frames) == (4, 4, 2)


def run_docs(all_docs, uid):
    """The documents of run ``uid``: from its start to its stop."""
    start = next(i for i, (n, d) in enumerate(all_docs) if n == "start" and d["uid"] == uid)
    stop = next(i for i, (n, d) in enumerate(all_docs) if n == "stop" and d["run_start"] == uid)
    return all_docs[start : stop + 1]


def test_status_follow_prints_the_run_of_another_process(RE, docs, scope, network):
    cli = network.status
    assert cli.wait_for(r"^following tcp://", START_TIMEOUT), cli.output
    token = publish(RE, network.proxy.in_address)
    try:
        warm_up(RE, lambda uid: cli.wait_for(rf"run {uid[:8]} started", 0.5) is not None)
        (uid,) = RE(short_run(scope)).run_start_uids
    finally:
        unpublish(RE, token)
    line = cli.wait_for(rf"run {uid[:8]} (done|failed): (.*)$", 30)
    assert line is not None, cli.output
    assert line[1] == "done"
    assert line[2] == "optogenetic_plan, 4/4 visits, 4 frames, 2 stim frames, 0 error(s)"
    assert cli.interrupt() == 0, cli.output  # Ctrl-C ends it cleanly
