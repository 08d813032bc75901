"""The catalog writer: batches by time reach readers before the run ends, bounded queue."""

from __future__ import annotations

import time

import numpy as np
import pytest
from bluesky import RunEngine

from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog
from faro_bluesky.storage._writer import CatalogWriter


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    """The documents of a real 6-frame run (no catalog subscribed), and its data dir."""
    path = tmp_path_factory.mktemp("writer")
    catalog = Catalog.local(path / "catalog")
    RE = RunEngine(context_managers=[], call_returns_result=True)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    scope = sim_microscope(seed=3, data_dir=catalog.data_dir, image_shape=(64, 64))
    phase = Phase("a", interval=0.01, n_frames=6, channels=[Channel("miRFP", 2)])
    RE(optogenetic_plan([(0, 0)], [phase], microscope=scope, analyzer=None))
    scope.close()
    catalog.close()
    return path / "catalog", docs


def _until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)  # polling a condition with a deadline, not a fixed wait


def test_events_reach_the_catalog_by_time_before_the_run_stops(documents):
    path, docs = documents
    catalog = Catalog.local(path, recover=False)
    writer = CatalogWriter(catalog.client, batch_size=1000, max_delay=0.2)
    uid = docs[0][1]["uid"]
    for name, doc in docs:
        if name == "stop":
            break
        writer.put(name, doc, uid)
    # no stop, no explicit flush: the 0.2 s batch deadline alone writes the rows
    _until(lambda: uid in catalog and len(catalog[uid].frames) == 6)
    assert catalog[uid].stop is None
    frames = catalog[uid].frames
    assert list(frames["t"]) == list(range(6))
    stop = next(doc for name, doc in docs if name == "stop")
    writer.put("stop", stop, uid)
    assert writer.flush(30)
    assert catalog[uid].stop["exit_status"] == "success"
    assert writer.errors == {}
    np.testing.assert_array_equal(catalog[uid].raw(via="tiled").compute().shape, (6, 1, 64, 64))
    writer.close()
    catalog.close()


def test_a_full_queue_waits_and_drops_nothing(documents, tmp_path):
    _, docs = documents
    catalog = Catalog.local(tmp_path / "small", recover=False)
    writer = CatalogWriter(catalog.client, max_queued=2)
    uid = docs[0][1]["uid"]
    for name, doc in docs:
        writer.put(name, doc, uid)
    assert writer.flush(60)
    assert writer.written == len(docs)  # every document handed to tiled, in order
    assert writer.backpressure > 0  # the producer had to wait at least once
    assert len(catalog[uid].frames) == 6
    assert writer.queue_stats() == {"catalog": (0, 2)}
    writer.close()
    catalog.close()


def test_bad_arguments_are_refused(documents):
    path, _ = documents
    catalog = Catalog.local(path, recover=False)
    for kwargs, field in (
        ({"batch_size": 0}, "batch_size"),
        ({"max_delay": 0}, "max_delay"),
        ({"max_queued": 0}, "max_queued"),
    ):
        with pytest.raises(ValueError, match=field):
            CatalogWriter(catalog.client, **kwargs)
    catalog.close()
