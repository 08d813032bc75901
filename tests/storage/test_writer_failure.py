"""A failing catalog write never reaches the RunEngine; the raw log rebuilds the run."""

from __future__ import annotations

import bluesky.plans as bp
import pytest

from faro_bluesky.storage import Catalog


def test_catalog_failure_is_isolated_and_the_run_rebuilt_from_its_log(RE, scope, tmp_path):
    catalog = Catalog.local(tmp_path / "catalog", readable_storage=[tmp_path / "data"])
    subscription = catalog.subscribe(RE)
    with pytest.raises(ValueError, match="already subscribed"):
        catalog.subscribe(RE)  # every run would be written twice
    writer = subscription.recorder.writer
    tiled_writer = writer._writer
    seen = []

    def failing(name, doc):
        seen.append(name)
        if name == "event" and seen.count("event") == 2:
            raise RuntimeError("disk full (simulated)")
        tiled_writer(name, doc)

    writer._writer = failing
    result = RE(bp.count([scope.camera], num=4))
    assert result.exit_status == "success"  # the experiment never noticed
    uid = result.run_start_uids[0]
    assert "disk full" in str(writer.errors[uid])
    assert seen.count("event") == 2 and "stop" not in seen  # nothing after the failure
    assert catalog[uid].stop is None  # half-written, and it says so

    assert catalog.recover() == [uid]
    run = catalog[uid]
    assert run.exit_status == "success"  # the log had the real stop
    assert len(run.frames) == 4
    assert run.raw(via="tiled").shape == (4, 1, 256, 256)
    subscription.unsubscribe()
    catalog.close()
