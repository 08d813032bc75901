"""Every event of a stream lists its data keys alike, so tiled appends them to one table."""

from __future__ import annotations

import pytest

from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.storage import Catalog


@pytest.mark.parametrize("process", [False, True], ids=["thread-writer", "process-writer"])
def test_a_stimulating_run_is_stored_whole_in_small_batches(
    RE, docs, calibrated_scope, tmp_path, process
):
    # whole-field stimulation: the last imaging frame's event is read in two parts (OpenEvent)
    catalog = Catalog.local(tmp_path / "catalog", readable_storage=[tmp_path / "data"])
    subscription = catalog.subscribe(RE, batch_size=1, process=process)  # one append per event
    phase = Phase(
        "stim",
        interval=0.05,
        n_frames=3,
        channels=[Channel("miRFP", 5), Channel("ERKKTR", 5)],
        stim_channels=[Channel("Cyan", 5, 10)],
        stim_frames=range(3),
    )
    result = RE(optogenetic_plan([(0, 0)], [phase], microscope=calibrated_scope, analyzer=None))
    subscription.unsubscribe()
    assert result.exit_status == "success"
    uid = result.run_start_uids[0]
    primary = {d["uid"] for d in docs.of("descriptor") if d["name"] == "primary"}
    events = [e for e in docs.of("event") if e["descriptor"] in primary]
    assert len(events) == 9  # 3 x (2 imaging + 1 stim)
    assert {tuple(e["data"]) for e in events} == {tuple(events[0]["data"])}
    writer = subscription.recorder.writer
    assert not writer.errors, writer.errors
    run = catalog[uid]
    assert run.stop is not None
    assert len(run.frames) == 9
    catalog.close()
