"""Replay from a databroker (v1 Broker on mongomock, read through its v2 API)."""

from __future__ import annotations

import bluesky.plans as bp
import databroker
import pytest
from bluesky import RunEngine
from ophyd.sim import det, motor

from faro_bluesky.storage import databroker_run, replay


def test_replay_from_a_databroker_run_gives_the_recorded_events():
    db = databroker.temp()
    RE = RunEngine(context_managers=[], call_returns_result=True)
    live: list[tuple[str, dict]] = []
    RE.subscribe(db.insert)
    RE.subscribe(lambda name, doc: live.append((name, doc)))
    (uid,) = RE(bp.scan([det], motor, -1, 1, 5)).run_start_uids
    got: list[tuple[str, dict]] = []
    n = replay(db.v2[uid], lambda name, doc: got.append((name, doc)))
    assert n == len(got)
    assert got[0][1]["uid"] == uid and got[-1][0] == "stop"
    (page,) = [d for name, d in got if name == "event_page"]
    live_events = [d for name, d in live if name == "event"]
    assert page["data"]["det"] == [e["data"]["det"] for e in live_events]
    assert page["seq_num"] == [e["seq_num"] for e in live_events]


def test_unknown_databroker_catalog_names_the_known_ones():
    with pytest.raises(ValueError, match="not a databroker catalog here"):
        databroker_run("no-such-catalog", "abc")
