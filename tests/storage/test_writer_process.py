"""The catalog writer process: complete runs, live reads, flush, backpressure, its death."""

from __future__ import annotations

import os
import signal
import sqlite3
import textwrap
import threading
import time
from pathlib import Path

import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine

from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog, CatalogDirectory, CatalogWriter
from faro_bluesky.storage._writer_process import CatalogWriterError, ProcessCatalogWriter


def _until(predicate, timeout=60.0, what="condition"):
    """Poll a condition with a deadline (the writer lives in another process)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def burst(tmp_path_factory):
    """The documents of a real 150-frame burst (no catalog subscribed), and its catalog."""
    path = tmp_path_factory.mktemp("burst") / "catalog"
    catalog = Catalog.local(path)
    RE = RunEngine(context_managers=[], call_returns_result=True)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    scope = sim_microscope(seed=4, data_dir=catalog.data_dir, image_shape=(16, 16))
    phase = Phase("burst", interval=0, n_frames=150, channels=[Channel("miRFP", 1)])
    RE(optogenetic_plan([(0, 0)], [phase], microscope=scope, analyzer=None))
    scope.close()
    catalog.close()
    return path, docs


def _small_run(catalog):
    """A 3-frame run's documents (no catalog subscribed), camera writing into ``catalog``."""
    RE = RunEngine(context_managers=[], call_returns_result=True)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    scope = sim_microscope(seed=5, data_dir=catalog.data_dir, image_shape=(16, 16))
    phase = Phase("small", interval=0, n_frames=3, channels=[Channel("miRFP", 1)])
    RE(optogenetic_plan([(0, 0)], [phase], microscope=scope, analyzer=None))
    scope.close()
    return RE, docs


def test_runs_of_a_run_engine_land_complete_and_are_readable_while_running(RE, tmp_path):
    catalog = Catalog.local(tmp_path / "catalog")
    scope = sim_microscope(seed=3, data_dir=catalog.data_dir, image_shape=(64, 64))
    subscription = catalog.subscribe(RE, max_delay=0.1)
    writer = subscription.recorder.writer
    assert isinstance(writer, ProcessCatalogWriter)  # the default for Catalog.local
    seen_live: list[int] = []
    starts: list[str] = []

    def read_while_running(name, doc):
        # on the RunEngine's thread: the run goes on only once rows are readable here
        if name == "start":
            starts.append(doc["uid"])
        if name == "event" and doc["seq_num"] == 4 and not seen_live:
            run_uid = starts[-1]
            _until(lambda: run_uid in catalog and len(catalog[run_uid].frames) >= 1)
            assert catalog[run_uid].stop is None  # still running
            seen_live.append(len(catalog[run_uid].frames))

    RE.subscribe(read_while_running)
    phases = [
        Phase("a", interval=0.15, n_frames=5, channels=[Channel("miRFP", 2)]),
        Phase("b", interval=0.15, n_frames=3, channels=[Channel("miRFP", 2)]),
    ]
    result = RE(optogenetic_plan([(0, 0), (300, 0)], phases, microscope=scope, analyzer=None))
    uid = result.run_start_uids[0]
    assert seen_live and seen_live[0] >= 1
    run = catalog[uid]  # RE(...) returned: the stop waited for the child
    assert run.exit_status == "success"
    assert len(run.frames) == 16
    assert run.raw(via="tiled").compute().shape == (16, 1, 64, 64)
    assert catalog.search(phase="b").uids() == [uid]  # phases kept by the child too
    assert writer.errors == {}
    assert writer.written >= 16
    assert writer.startup_s is not None
    subscription.unsubscribe()
    assert not writer.alive
    scope.close()
    catalog.close()


def test_flush_returns_once_the_child_has_written_what_came_before(burst, tmp_path):
    path, docs = burst
    catalog = Catalog.local(path, recover=False)
    # an hour's delay: only the flush can have written the rows, not the batch clock
    writer = ProcessCatalogWriter(catalog.directory, max_delay=3600)
    uid = docs[0][1]["uid"]
    for name, doc in docs:
        if name != "stop":
            writer.put(name, doc, uid)
    assert writer.flush(120)
    assert len(catalog[uid].frames) == 150  # every row before the flush, no stop yet
    assert catalog[uid].stop is None
    writer.put("stop", docs[-1][1], uid)
    assert writer.flush(120)
    assert catalog[uid].stop["exit_status"] == "success"
    assert writer.written == len(docs)
    assert writer.errors == {}
    writer.close(60)
    catalog.close()


def test_a_full_queue_waits_counts_backpressure_and_drops_nothing(burst, tmp_path):
    _, docs = burst
    catalog = Catalog.local(tmp_path / "catalog")
    writer = ProcessCatalogWriter(catalog.directory, max_queued=2)
    uid = docs[0][1]["uid"]
    os.kill(writer.pid, signal.SIGSTOP)  # the child reads nothing: pipe, then queue fill
    try:
        producer = threading.Thread(target=lambda: [writer.put(n, d, uid) for n, d in docs])
        producer.start()
        _until(lambda: writer.backpressure > 0, what="backpressure")
        assert producer.is_alive()  # put() waits: nothing is dropped
    finally:
        os.kill(writer.pid, signal.SIGCONT)
    producer.join()
    assert writer.flush(120)
    assert writer.written == len(docs)
    assert writer.lost == 0
    assert len(catalog[uid].frames) == 150
    assert writer.queue_stats() == {"catalog": (0, 2)}
    writer.close(60)
    catalog.close()


def test_a_killed_writer_process_is_reported_and_never_blocks_the_run_engine(RE, scope, tmp_path):
    catalog = Catalog.local(tmp_path / "catalog", readable_storage=[tmp_path / "data"])
    # an hour's drain timeout: if a stop waited for the dead child, the test would hang
    subscription = catalog.subscribe(RE, drain_timeout=3600)
    writer = subscription.recorder.writer
    assert writer.wait_ready(120)
    killed = writer.pid

    def kill_on_third_event(name, doc):
        if name == "event" and doc["seq_num"] == 3:
            os.kill(killed, signal.SIGKILL)
            _until(lambda: not writer.alive, what="the death noticed")

    token = RE.subscribe(kill_on_third_event)
    result = RE(bp.count([scope.camera], num=6))
    RE.unsubscribe(token)
    assert result.exit_status == "success"  # the experiment went on
    uid = result.run_start_uids[0]
    assert isinstance(writer.errors[uid], CatalogWriterError)
    assert "killed by signal 9" in str(writer.errors[uid])
    assert writer.flush(None) is False  # at once: nothing waits on a dead child
    assert uid not in catalog or catalog[uid].stop is None

    assert catalog.recover() == [uid]  # the raw log had every document
    assert len(catalog[uid].frames) == 6
    assert catalog[uid].exit_status == "success"

    result = RE(bp.count([scope.camera], num=2))  # the next run starts a new child
    assert writer.alive and writer.pid != killed
    assert len(catalog[result.run_start_uids[0]].frames) == 2
    assert list(writer.errors) == [uid]
    subscription.unsubscribe()
    catalog.close()


def _held(pid: int, catalog: Catalog) -> bool:
    """Whether process ``pid`` has a file of ``catalog`` open."""
    paths = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    return any(path.startswith(str(catalog.path)) for path in paths)


def test_a_closed_writer_s_process_serves_the_next_writer(tmp_path):
    first = Catalog.local(tmp_path / "first")
    writer = ProcessCatalogWriter(first.directory)
    assert writer.wait_ready(120)
    pid = writer.pid
    writer.close(60)
    assert not writer.alive
    writer = ProcessCatalogWriter(first.directory)  # the same catalog: still open there
    assert writer.pid == pid  # the idle process: no second tiled import
    writer.close(60)
    second = Catalog.local(tmp_path / "second")
    writer = ProcessCatalogWriter(second.directory)
    assert writer.pid == pid
    assert writer.wait_ready(120)
    assert not _held(pid, first)  # closed before the other catalog was opened
    _, docs = _small_run(second)
    uid = docs[0][1]["uid"]
    for name, doc in docs:
        writer.put(name, doc, uid)
    assert writer.flush(60)
    assert len(second[uid].frames) == 3
    writer.close(60)
    first.close()
    second.close()


def test_ctrl_c_reaches_the_run_engine_not_the_writer_process(tmp_path):
    catalog = Catalog.local(tmp_path / "catalog")
    writer = ProcessCatalogWriter(catalog.directory)
    assert writer.wait_ready(120)
    os.kill(writer.pid, signal.SIGINT)  # a terminal's Ctrl-C goes to the process group
    assert writer.flush(60)  # the signal is handled before the child reads the flush
    assert writer.alive
    writer.close(60)
    catalog.close()


def test_the_writer_process_ends_with_its_parent(start_script):
    parent = start_script(
        textwrap.dedent(
            """
            import os, signal, sys
            from faro_bluesky.storage import Catalog
            from faro_bluesky.storage._writer_process import ProcessCatalogWriter

            catalog = Catalog.local(sys.argv[1])
            writer = ProcessCatalogWriter(catalog.directory)
            assert writer.wait_ready(120)
            print(writer.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no close
            """
        )
    )
    printed = next(line for line in parent.stdout if line.strip().isdigit())  # (tiled prints)
    child = int(printed)
    assert parent.wait(60) == -signal.SIGKILL

    def gone() -> bool:
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")  # exited, maybe not reaped

    _until(gone, what="the orphaned writer's exit")


def test_other_catalogs_keep_the_thread_writer_and_sqlite_files_are_in_wal_mode(tmp_path):
    duck = Catalog.local(tmp_path / "duck", tables="duckdb")  # one process per file
    recorder = duck.recorder()
    assert isinstance(recorder.writer, CatalogWriter)
    recorder.close()
    with pytest.raises(ValueError, match="SQLite tables"):
        duck.recorder(process=True)
    duck.close()
    catalog = Catalog.local(tmp_path / "lite")
    for name in ("catalog.db", "tables.sqlite"):  # readers never block the writer process
        with sqlite3.connect(catalog.path / name) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    catalog.close()


def test_a_catalog_that_cannot_open_is_reported_not_waited_for(tmp_path):
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "catalog.db").write_bytes(b"not a database" * 100)
    writer = ProcessCatalogWriter(CatalogDirectory.at(tmp_path / "catalog"))
    assert not writer.wait_ready(120)
    assert not writer.alive
    assert "could not open the catalog" in str(writer.errors[None])
    assert writer.flush(None) is False
    writer.put("event", {"data": np.zeros(1)}, None)  # dropped, counted: the raw log has it
    _until(lambda: writer.lost == 1, what="the dropped document counted")
    writer.close(60)
