"""A failing catalog write never reaches the RunEngine; the raw log rebuilds the run."""

from __future__ import annotations

import shutil

import bluesky.plans as bp
import numpy as np
import pytest

from faro_bluesky.storage import Catalog, CatalogWriter
from faro_bluesky.storage._writer_process import CatalogWriterError, ProcessCatalogWriter


def test_catalog_failure_is_isolated_and_the_run_rebuilt_from_its_log(RE, scope, tmp_path):
    # The thread writer (a remote catalog's), on an embedded catalog so that the failure
    # can be injected into the TiledWriter it drives, in this process.
    catalog = Catalog.local(tmp_path / "catalog", readable_storage=[tmp_path / "data"])
    subscription = catalog.subscribe(RE, process=False)
    with pytest.raises(ValueError, match="already subscribed"):
        catalog.subscribe(RE)  # every run would be written twice
    writer = subscription.recorder.writer
    assert isinstance(writer, CatalogWriter)
    tiled_writer = writer._batches._writer
    seen = []

    def failing(name, doc):
        seen.append(name)
        if name == "event" and seen.count("event") == 2:
            raise RuntimeError("disk full (simulated)")
        tiled_writer(name, doc)

    writer._batches._writer = failing
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


def test_a_run_tiled_refuses_in_the_writer_process_is_isolated_and_rebuilt(RE, scope, tmp_path):
    # The default writer of an embedded catalog is a child process: the failure must come
    # from tiled there. Another client takes the run's key just before the run starts,
    # so tiled refuses the child's start document (409), as it would any conflicting write.
    catalog = Catalog.local(tmp_path / "catalog", readable_storage=[tmp_path / "data"])

    def occupy(name, doc):
        if name == "start":
            catalog.client.create_container(doc["uid"])

    token = RE.subscribe(occupy)  # before the catalog's: it runs first
    subscription = catalog.subscribe(RE)
    writer = subscription.recorder.writer
    assert isinstance(writer, ProcessCatalogWriter)
    result = RE(bp.count([scope.camera], num=4))
    assert result.exit_status == "success"  # the experiment never noticed
    uid = result.run_start_uids[0]
    RE.unsubscribe(token)
    assert isinstance(writer.errors[uid], CatalogWriterError)
    assert "409" in str(writer.errors[uid])  # tiled's answer, relayed with its text
    assert writer.written == 0  # nothing after the refused start went to tiled
    assert writer.alive  # one run failed, not the writer
    assert catalog[uid].stop is None

    assert catalog.recover() == [uid]
    run = catalog[uid]
    assert run.exit_status == "success"
    assert len(run.frames) == 4
    result = RE(bp.count([scope.camera], num=2))  # the next run is written as usual
    assert len(catalog[result.run_start_uids[0]].frames) == 2
    assert list(writer.errors) == [uid]
    subscription.unsubscribe()
    catalog.close()


def test_a_run_killed_while_tiled_made_an_internal_array_is_rebuilt(recorded, tmp_path):
    # Tiled creates an internal array's storage before committing its node: a writer
    # killed in between leaves the storage (here the mask stream's) and no node.
    source = recorded.catalog.directory.root / "tiled_data" / recorded.uid
    root = tmp_path / "catalog"
    (root / "documents").mkdir(parents=True)
    shutil.copy(recorded.catalog.log_dir / f"{recorded.uid}.jsonl", root / "documents")
    shutil.copytree(source / "mask", root / "tiled_data" / recorded.uid / "mask")
    catalog = Catalog.local(root, readable_storage=[recorded.catalog.data_dir])
    run = catalog[recorded.uid]  # rebuilt from the log despite the orphaned array
    assert run.exit_status == "success"
    live = np.stack([e["data"]["mask-mask"] for e in recorded.events("mask")])
    np.testing.assert_array_equal(run.tiled["mask"]["mask-mask"].read(), live)
    catalog.close()
