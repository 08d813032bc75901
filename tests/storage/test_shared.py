"""Shared data: a tiled server in front of one catalog that several writers fill.

A second process browses and replays a run while it is still being written; the
analyzer's labels and tracks, and the phases a decision chose while running, reach remote
clients; microscopes (profiles) sharing the catalog are told apart by ``instrument``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter

import bluesky.plans as bp
import numpy as np
import pandas as pd
import pytest
import zarr
from _server import KEY, serving
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from bluesky_tiled_plugins.queries import Key
from tiled.client import from_uri

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import ErkKtrFeatures, FractionOfCells, OtsuSegmenter
from faro_bluesky.cli import open_session
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog, reanalyze

CHANNELS = [Channel("miRFP", 5), Channel("ERKKTR", 5)]
TIMEOUT = 120.0  # s; generous bounds on waits that normally take well under a second

READER = """
import json, sys
from tiled.queries import KeyPresent
from faro_bluesky.storage import Catalog, replay

remote = Catalog.from_uri(sys.stdin.readline().strip(), api_key=sys.argv[1])
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()  # the run is now held between its phases
running = remote.search(KeyPresent("stop.uid", False))
run = running[-1]
names = []
replay(run, lambda name, doc: names.append(name))
raw = run.raw(via="tiled").compute()
print(json.dumps({
    "running": running.uids(), "stop": run.stop, "phases": run.phases,
    "frames": len(run.frames), "raw_shape": list(raw.shape), "raw_sum": int(raw.sum()),
    "documents": names,
}))
"""


def _analyzer() -> Analyzer:
    return Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"),
        features=ErkKtrFeatures(channel="ERKKTR"),
        stimulator=FractionOfCells(0.5, seed=1),
    )


@pytest.fixture(scope="module")
def reader():
    """The other process: it imports while the server starts, then waits for its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(READER), KEY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def shared(reader, tmp_path_factory):
    """An embedded catalog directory, served by a real ``faro-bluesky serve`` process.

    (It takes ``reader`` so that the other process imports while the server starts.)
    """
    catalog = Catalog.local(tmp_path_factory.mktemp("shared"))
    with serving(catalog.path) as url:
        yield catalog, url
    catalog.close()


@pytest.fixture(scope="module")
def held_run(reader, shared):
    """A closed-loop run written through the server by a RunEngine on its own thread.

    A decision picks its second phase while it runs; until the reader process has read
    and replayed the run, the decision holds the run between its two phases.
    """
    catalog, url = shared
    reader.stdin.write(url + "\n")
    reader.stdin.flush()
    assert reader.stdout.readline() == "ready\n"
    remote = Catalog.from_uri(url, api_key=KEY, data_dir=catalog.data_dir)
    RE = RunEngine(context_managers=[], call_returns_result=True)
    RE.md["instrument"] = "scope-b"
    scope = sim_microscope(
        seed=3, data_dir=catalog.data_dir, image_shape=(96, 96), dmd_calibrated=True
    )
    subscription = remote.subscribe(RE, max_delay=0.1)
    live: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: live.append((name, doc)))
    held, release = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def decide(ctx):  # runs on the RunEngine's thread, between the two phases
        assert subscription.recorder.writer.flush(TIMEOUT)  # the frames so far are served
        seen["live"] = list(live)
        held.set()
        assert release.wait(TIMEOUT)
        return Phase("chosen", interval=0.05, n_frames=1, channels=CHANNELS)

    analyzer = _analyzer()
    first = Phase(
        "baseline",
        interval=0.05,
        n_frames=2,
        channels=CHANNELS,
        stim_channels=[Channel("Cyan", 20, power=50)],
        stim_frames=(1,),
    )
    plan = optogenetic_plan(
        [(0, 0), (300, 0)], [first, decide], microscope=scope, analyzer=analyzer
    )
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.update(r=RE(plan)), daemon=True)
    worker.start()
    try:
        assert held.wait(TIMEOUT)
        out, _ = reader.communicate("go\n", timeout=TIMEOUT)
    finally:
        release.set()
        worker.join(TIMEOUT)
    analyzer.close()
    scope.close()
    subscription.unsubscribe()
    assert result["r"].exit_status == "success"
    yield {"uid": result["r"].run_start_uids[0], "read": json.loads(out), "live": seen["live"]}


def test_another_process_browses_and_replays_a_run_while_it_is_written(shared, held_run):
    catalog, _ = shared
    read, uid = held_run["read"], held_run["uid"]
    live = held_run["live"]
    assert read["running"] == [uid] and read["stop"] is None
    assert read["phases"] == ["baseline"]  # the decision has not chosen yet
    n = sum(1 for name, _ in live if name == "stream_datum")
    assert read["frames"] == n > 0
    on_disk = zarr.open_array(catalog[uid].store_path / "camera", mode="r")[:n]
    assert read["raw_shape"] == list(on_disk.shape) and read["raw_sum"] == int(on_disk.sum())
    # the replay holds every document recorded so far, and no stop
    assert Counter(read["documents"]) == Counter(name for name, _ in live)


def test_labels_tracks_and_chosen_phases_reach_remote_clients(shared, held_run):
    catalog, url = shared
    uid = held_run["uid"]
    remote = Catalog.from_uri(url, api_key=KEY)
    run, local = remote[uid], catalog[uid]
    assert run.start["phase_names"] == ["baseline"]
    assert run.phases == local.phases == ["baseline", "chosen"]
    for where in (catalog, remote):
        assert where.search(phase="chosen").uids() == [uid]
        assert where.search(phase="baseline", instrument="scope-b").uids() == [uid]
    _same_outputs(run, local)


def _same_outputs(remote_run, local_run) -> None:
    """The remote run's labels and tracks (tiled) equal the store's on disk."""
    names = local_run.label_names
    assert {"particles", "stim_mask"} <= set(names)
    assert sorted(remote_run._label_names("tiled")) == sorted(names)
    for name in names:
        on_disk = local_run.labels(name, via="zarr").compute()
        np.testing.assert_array_equal(remote_run.labels(name, via="tiled").compute(), on_disk)
    np.testing.assert_array_equal(
        remote_run.labels(names[0], 1, via="tiled").compute(),
        local_run.labels(names[0], 1, via="zarr").compute(),
    )
    tracks = local_run.tracks(via="zarr")
    assert len(tracks) > 0
    pd.testing.assert_frame_equal(remote_run.tracks(via="tiled"), tracks)
    pd.testing.assert_frame_equal(remote_run.tracks(1, via="tiled"), local_run.tracks(1))


def test_a_reanalysis_is_served_like_the_run_it_reanalyses(shared, held_run):
    catalog, url = shared
    new = reanalyze(catalog[held_run["uid"]], _analyzer(), catalog)
    assert {"labels", "tracks"} <= set(new.streams)
    remote = Catalog.from_uri(url, api_key=KEY)
    run = remote[new.uid]
    assert remote.search(plan="reanalyze", source_run=held_run["uid"]).uids() == [new.uid]
    names = new.label_names
    for name in names:
        np.testing.assert_array_equal(
            run.labels(name, via="tiled").compute(), new.labels(name, via="zarr").compute()
        )
    pd.testing.assert_frame_equal(run.tracks(via="tiled"), new.tracks(via="zarr"))


PROFILE_DEVICES = """
from faro_bluesky.sim import sim_microscope


def instruments(setup):
    setup.instrument = "scope-a"
    return {"scope": sim_microscope(1, data_dir=setup.data_dir, image_shape=(64, 64))}
"""


def test_microscopes_sharing_a_catalog_are_found_by_instrument(shared, tmp_path):
    catalog, url = shared
    profile = tmp_path / "profile"
    for package, source in (("devices", PROFILE_DEVICES), ("plans", "")):
        (profile / package).mkdir(parents=True)
        (profile / package / "__init__.py").write_text(textwrap.dedent(source))
    session = open_session(
        catalog.path,
        profile=profile,
        progress=False,
        feedback=False,
        context_managers=[],
        md_dir=tmp_path / "md",
    )
    try:  # microscope A: a shell session on the catalog directory, from its profile
        (a,) = session.RE(bp.count([session.scope.camera])).run_start_uids
    finally:
        session.close()
    # microscope B: another RunEngine, writing through the server
    remote = Catalog.from_uri(url, api_key=KEY, data_dir=catalog.data_dir)
    RE = RunEngine({"instrument": "scope-c"}, context_managers=[], call_returns_result=True)
    scope = sim_microscope(2, data_dir=catalog.data_dir, image_shape=(64, 64))
    subscription = remote.subscribe(RE)
    try:
        (c,) = RE(bp.count([scope.camera])).run_start_uids
    finally:
        subscription.unsubscribe()
        scope.close()
    for where in (catalog, remote):
        assert where.search(instrument="scope-a").uids() == [a]
        assert where.search(instrument="scope-c").uids() == [c]
    plain = from_uri(url, api_key=KEY)  # bluesky's own query, from tiled alone
    assert list(plain.search(Key("instrument") == "scope-a")) == [a]


def test_runs_recorded_before_phases_were_kept_are_still_found_by_phase(shared):
    catalog, _ = shared
    RE = RunEngine(context_managers=[], call_returns_result=True)
    RE.subscribe(TiledWriter(catalog.client))  # what wrote runs before: no faro metadata
    (uid,) = RE(bp.count([]), phase_names=["legacy"]).run_start_uids
    assert catalog.search(phase="legacy").uids() == []
    reopened = Catalog.local(catalog.path)  # gives such runs their start's phases
    try:
        assert reopened.search(phase="legacy").uids() == [uid]
        assert reopened[uid].phases == ["legacy"]
    finally:
        reopened.close()
