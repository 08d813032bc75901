"""The Analyzer in real closed-loop runs on the simulated microscope."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context

import numpy as np
import pandas as pd
import pytest
import zarr

from faro_bluesky.analysis import Analyzer, read_tracks
from faro_bluesky.analysis.components import (
    ErkKtrFeatures,
    FractionOfCells,
    OtsuSegmenter,
    WholeField,
)
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope

IMG = [Channel("miRFP", 10), Channel("ERKKTR", 10)]
STIM = [Channel("Cyan", 100, power=50)]


def events(docs, stream):
    uids = {d["uid"] for d in docs.of("descriptor") if d["name"] == stream}
    return [e for e in docs.of("event") if e["descriptor"] in uids]


class FlakySegmenter(OtsuSegmenter):
    """Raises on every 5th call (calls come in acquisition order with one worker)."""

    def __init__(self) -> None:
        super().__init__(channel="miRFP")
        self.calls = 0
        self.lock = threading.Lock()

    def segment(self, image):
        with self.lock:
            k = self.calls
            self.calls += 1
        if k % 5 == 4:
            raise RuntimeError(f"segmentation failed on call {k}")
        return super().segment(image)


class SlowSegmenter(OtsuSegmenter):
    def __init__(self, delay: float) -> None:
        super().__init__(channel="miRFP")
        self.delay = delay

    def segment(self, image):
        time.sleep(self.delay)  # a slow model, not synchronisation
        return super().segment(image)


def erk_analyzer(**kw):
    return Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"),
        features=ErkKtrFeatures(channel="ERKKTR"),
        **kw,
    )


@pytest.fixture
def fast_scope(RE, tmp_path):
    """Calibrated DMD and a sample 20x faster than the clock, so activity moves in seconds."""
    scope = sim_microscope(
        seed=3,
        data_dir=tmp_path / "data",
        image_shape=(256, 256),
        dmd_calibrated=True,
        time_scale=20.0,
    )
    yield scope
    scope.close()


def test_closed_loop_raises_activity_of_the_lit_half_only(RE, docs, fast_scope):
    analyzer = erk_analyzer(stimulator=FractionOfCells(0.5, seed=1))
    phases = [
        Phase("baseline", interval=0.3, n_frames=3, channels=IMG),
        Phase(
            "stim",
            interval=0.3,
            n_frames=5,
            channels=IMG,
            stim_channels=STIM,
            stim_frames=range(5),
        ),
        Phase("recovery", interval=0.3, n_frames=14, channels=IMG),
    ]
    fovs = [(0.0, 0.0), (300.0, 0.0)]
    result = RE(optogenetic_plan(fovs, phases, microscope=fast_scope, analyzer=analyzer))
    assert result.exit_status == "success"
    tracks = analyzer.tracks()
    analyzer.close()
    assert not analyzer.errors
    assert set(tracks["phase"]) == {"baseline", "stim", "recovery"}
    # which cells were lit: from the tracks table's per-cell `lit` during stimulation
    lit = tracks[tracks["phase"] == "stim"].groupby(["fov", "particle"])["lit"].mean()
    stimulated = set(lit[lit > 0.5].index)
    unstimulated = set(lit[lit == 0].index)
    assert len(stimulated) >= 4 and len(unstimulated) >= 4
    key = list(zip(tracks["fov"], tracks["particle"], strict=True))
    tracks["group"] = [
        "lit" if k in stimulated else "dark" if k in unstimulated else "?" for k in key
    ]
    mean = tracks.groupby(["phase", "group"])["cnr"].mean()
    late_stim = tracks[(tracks["phase"] == "stim") & (tracks["frame"] >= 2)]
    peak = late_stim.groupby("group")["cnr"].mean()
    assert peak["lit"] > peak["dark"] * 1.3  # clearly above during stimulation
    assert abs(mean["baseline", "lit"] - mean["baseline", "dark"]) < 0.15 * mean["baseline", "dark"]
    end = tracks[(tracks["phase"] == "recovery") & (tracks["frame"] >= 11)]
    relaxed = end.groupby("group")["cnr"].mean()
    assert relaxed["lit"] < peak["lit"] - 0.5 * (peak["lit"] - peak["dark"])  # relaxes


def test_documents_record_masks_and_one_summary_per_visit(RE, docs, fast_scope):
    analyzer = erk_analyzer(stimulator=WholeField())
    phase = Phase(
        "p", interval=0.1, n_frames=4, channels=IMG, stim_channels=STIM, stim_frames=(1, 3)
    )
    RE(optogenetic_plan([(0, 0), (300, 0)], [phase], microscope=fast_scope, analyzer=analyzer))
    summaries = events(docs, "analysis")
    assert sorted((e["data"]["analysis-fov"], e["data"]["analysis-t"]) for e in summaries) == [
        (p, t) for p in range(2) for t in range(4)
    ]
    assert all(e["data"]["analysis-n_cells"] > 0 for e in summaries)
    assert all(e["data"]["analysis-error"] == "" for e in summaries)
    masks = events(docs, "mask")
    assert len(masks) == 4 and not any(m["data"]["mask-missed"] for m in masks)
    # labels in the run's store, NGFF: segmentation, particles, the fired stim mask
    assert analyzer.wait_idle(30)  # the stop document's bookkeeping runs after RE returns
    analyzer.close()
    (resource,) = docs.of("stream_resource")
    store = zarr.open_group(resource["uri"].removeprefix("file://localhost").rsplit("/", 1)[0])
    names = store["labels"].attrs["ome"]["labels"]
    assert {"nuclei", "particles", "rings", "stim_mask"} <= set(names)
    n = store["camera"].shape[0]
    assert store["labels/nuclei/0"].shape == (n, 1, 256, 256)
    frames = [(e["data"]["visit-kind"], e["seq_num"] - 1) for e in events(docs, "primary")]
    stim_index = [i for kind, i in frames if kind == "stim"]
    fired = store["labels/stim_mask/0"]
    assert all(fired[i].all() for i in stim_index)  # whole field fired, stored where it fired
    first_image = frames[0][1]
    assert store["labels/nuclei/0"][first_image].max() > 0


def test_segmenter_failing_every_5th_frame_is_recorded_and_the_run_goes_on(RE, docs, fast_scope):
    analyzer = Analyzer(
        segmenter=FlakySegmenter(),
        stimulator=WholeField(),
        executor=ThreadPoolExecutor(1),
        mask_timeout=5.0,
    )
    phase = Phase(
        "p", interval=0.05, n_frames=12, channels=IMG, stim_channels=STIM, stim_frames=range(12)
    )
    result = RE(optogenetic_plan([(0, 0)], [phase], microscope=fast_scope, analyzer=analyzer))
    assert result.exit_status == "success"
    assert analyzer.wait_idle(30)
    failed = sorted((e.fov, e.t) for e in analyzer.errors)
    assert failed == [(0, 4), (0, 9)]
    assert {e.source for e in analyzer.errors} == {"segmentation"}
    assert all(e.exc_type == "RuntimeError" and "Traceback" in e.traceback for e in analyzer.errors)
    masks = {m["data"]["mask-t"]: m["data"]["mask-missed"] for m in events(docs, "mask")}
    assert [t for t, missed in masks.items() if missed] == [4, 9]
    assert len(masks) == 12
    errors = {
        e["data"]["analysis-t"] for e in events(docs, "analysis") if e["data"]["analysis-error"]
    }
    assert errors == {4, 9}
    tracks = analyzer.tracks()
    assert sorted(set(tracks["t"])) == [t for t in range(12) if t not in (4, 9)]
    analyzer.close()


def test_slow_segmenter_loses_no_frame_and_reports_late_masks(RE, docs, fast_scope):
    analyzer = Analyzer(
        segmenter=SlowSegmenter(0.4),
        stimulator=WholeField(),
        executor=ThreadPoolExecutor(1),
        mask_timeout=0.1,
        max_inflight=1,
    )
    phase = Phase(
        "p", interval=0.05, n_frames=6, channels=IMG, stim_channels=STIM, stim_frames=range(6)
    )
    fovs = [(0, 0), (300, 0)]
    result = RE(optogenetic_plan(fovs, [phase], microscope=fast_scope, analyzer=analyzer))
    assert result.exit_status == "success"
    primary = events(docs, "primary")
    assert len(primary) == 6 * 2 * 3  # 2 imaging + 1 stim frame per visit, none lost
    (resource,) = docs.of("stream_resource")
    camera = zarr.open_array(resource["uri"].removeprefix("file://localhost"))
    assert camera.shape[0] == len(primary)
    masks = events(docs, "mask")
    assert len(masks) == 12 and sum(m["data"]["mask-missed"] for m in masks) >= 6
    assert analyzer.wait_idle(60)  # no deadlock: the deferred backlog drains
    tracks = analyzer.tracks()
    assert sorted(set(zip(tracks["fov"], tracks["t"], strict=True))) == [
        (p, t) for p in range(2) for t in range(6)
    ]  # deferred, not dropped
    analyzer.close()


def _replay(docs, analyzer):
    for name, doc in docs.docs:
        analyzer(name, doc)
    assert analyzer.wait_idle(60)


def _comparable(tracks: pd.DataFrame) -> pd.DataFrame:
    return tracks.sort_values(["fov", "t", "particle"], ignore_index=True)


def test_replayed_documents_give_the_live_tracks(RE, docs, fast_scope, tmp_path):
    live = erk_analyzer(stimulator=FractionOfCells(0.5, seed=1))
    phase = Phase(
        "p", interval=0.1, n_frames=6, channels=IMG, stim_channels=STIM, stim_frames=(2, 3)
    )
    fovs = [(0, 0), (300, 0)]
    RE(optogenetic_plan(fovs, [phase], microscope=fast_scope, analyzer=live))
    live_tracks = live.tracks()
    live.close()
    fast_scope.close()  # no camera cache left: the replay reads the zarr store
    fresh = erk_analyzer(stimulator=FractionOfCells(0.5, seed=1), output=tmp_path / "re")
    _replay(docs, fresh)
    replayed = read_tracks(tmp_path / "re")
    fresh.close()
    assert len(live_tracks) > 20
    pd.testing.assert_frame_equal(_comparable(live_tracks), _comparable(replayed))


def test_process_pool_executor_gives_the_thread_pool_result(RE, docs, fast_scope, tmp_path):
    phase = Phase("p", interval=0.05, n_frames=4, channels=IMG)
    RE(optogenetic_plan([(0, 0)], [phase], microscope=fast_scope))
    threads = erk_analyzer(output=tmp_path / "threads")
    _replay(docs, threads)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        procs = erk_analyzer(output=tmp_path / "procs", executor=pool)
        _replay(docs, procs)
        procs.close()
    threads.close()
    assert not procs.errors and not threads.errors
    a, b = read_tracks(tmp_path / "threads"), read_tracks(tmp_path / "procs")
    assert len(a) > 0
    pd.testing.assert_frame_equal(_comparable(a), _comparable(b))


def test_pause_releases_a_mask_wait_at_once(RE, docs, fast_scope):
    from bluesky.utils import RunEngineInterrupted

    analyzer = Analyzer(
        segmenter=SlowSegmenter(1.5),
        stimulator=WholeField(),
        executor=ThreadPoolExecutor(1),
        mask_timeout=30.0,
    )
    phase = Phase(
        "p", interval=0.05, n_frames=2, channels=IMG, stim_channels=STIM, stim_frames=(0, 1)
    )
    waiting = threading.Event()

    def watch(name, doc):  # the second imaging frame of t=0 is in: the plan now awaits a mask
        if name == "event" and doc["data"].get("visit-c") == 1 and doc["data"]["visit-t"] == 0:
            waiting.set()

    RE.subscribe(watch)

    def pause_when_waiting():
        waiting.wait(10)
        while analyzer.board.waiting() == 0:
            time.sleep(0.005)  # polling the board for the wait to begin
        RE.request_pause(defer=False)

    threading.Thread(target=pause_when_waiting).start()
    start = time.monotonic()
    with pytest.raises(RunEngineInterrupted):
        RE(optogenetic_plan([(0, 0)], [phase], microscope=fast_scope, analyzer=analyzer))
    paused_after = time.monotonic() - start
    assert paused_after < 1.5  # did not sit out the slow analysis, let alone the timeout
    assert analyzer.board.waiting() == 0
    result = RE.resume()
    assert result.exit_status == "success"
    masks = events(docs, "mask")
    assert [m["data"]["mask-t"] for m in masks] == [0, 1]  # asked again, recorded once
    assert not any(m["data"]["mask-missed"] for m in masks)
    analyzer.close()


def test_bad_mask_timeout_is_refused():
    with pytest.raises(ValueError, match="mask_timeout"):
        Analyzer(mask_timeout=0)


def test_tracks_table_columns(RE, docs, fast_scope):
    analyzer = erk_analyzer()
    phase = Phase("p", interval=0.05, n_frames=3, channels=IMG)
    RE(optogenetic_plan([(0, 0)], [phase], microscope=fast_scope, analyzer=analyzer))
    tracks = analyzer.tracks()
    analyzer.close()
    for column in ("particle", "fov", "t", "time", "x", "y", "area", "cnr", "stim", "phase"):
        assert column in tracks
    assert np.isfinite(tracks["cnr"]).all()
    assert tracks.groupby("t")["particle"].apply(lambda s: s.is_unique).all()


def test_live_segmentation_and_tracking_against_ground_truth(RE, docs, fast_scope):
    """>= 90 % of cells found and >= 95 % of identities kept over a 30-frame run."""
    truth: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def record_truth(name, doc):  # the cells under the camera when each visit's image is taken
        data = doc.get("data", {}) if name == "event" else {}
        if data.get("visit-kind") == "image" and data["visit-c"] == 0:
            gt = fast_scope.sim.ground_truth()
            truth[data["visit-t"]] = (gt.ids, gt.xy_px)

    RE.subscribe(record_truth)
    analyzer = Analyzer()  # default settings: Otsu on plane 0 (miRFP), nearest-neighbour
    phase = Phase("p", interval=0.2, n_frames=30, channels=IMG)
    RE(optogenetic_plan([(0, 0)], [phase], microscope=fast_scope, analyzer=analyzer))
    tracks = analyzer.tracks()
    analyzer.close()
    found, total = 0, 0
    particle_of: dict[int, dict[int, int]] = {}  # gt id -> {t: particle}
    for t, (ids, xy) in truth.items():
        rows = tracks[tracks["t"] == t]
        pts = rows[["x", "y"]].to_numpy()
        inside = (xy[:, 0] > 8) & (xy[:, 0] < 248) & (xy[:, 1] > 8) & (xy[:, 1] < 248)
        for cell, p in zip(ids[inside], xy[inside], strict=True):
            total += 1
            d = np.hypot(*(pts - p).T) if len(pts) else np.array([np.inf])
            if d.min() < 4.0:
                found += 1
                particle_of.setdefault(int(cell), {})[t] = int(rows["particle"].iloc[d.argmin()])
    assert total > 200
    assert found / total >= 0.9
    kept = pairs = 0
    for seen in particle_of.values():
        for t in seen:
            if t + 1 in seen:
                pairs += 1
                kept += seen[t] == seen[t + 1]
    assert pairs > 150
    assert kept / pairs >= 0.95


def test_reference_channel_features_join_their_visits_rows(RE, docs, fast_scope):
    from faro_bluesky.analysis.components import RefFeatures

    analyzer = Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"), ref_features=RefFeatures(channel=0)
    )
    phase = Phase(
        "p",
        interval=0.05,
        n_frames=4,
        channels=[Channel("miRFP", 10)],
        ref_channels=[Channel("BF", 5)],
        ref_frames=(1, 3),
    )
    RE(optogenetic_plan([(0, 0), (300, 0)], [phase], microscope=fast_scope, analyzer=analyzer))
    tracks = analyzer.tracks()
    analyzer.close()
    assert not analyzer.errors
    has_ref = tracks.groupby("t")["ref_mean_intensity"].apply(lambda s: s.notna().all())
    assert has_ref.to_dict() == {0: False, 1: True, 2: False, 3: True}
    assert set(zip(tracks["fov"], tracks["t"], strict=True)) == {
        (p, t) for p in range(2) for t in range(4)
    }


def test_channels_the_components_read_are_checked_before_the_run(RE, docs, fast_scope):
    from faro_bluesky.plans import ExperimentError

    analyzer = erk_analyzer()
    phase = Phase("only_nuclei", interval=0.1, n_frames=2, channels=[Channel("miRFP", 10)])
    with pytest.raises(ExperimentError, match=r"does not image \['ERKKTR'\]"):
        optogenetic_plan([(0, 0)], [phase], microscope=fast_scope, analyzer=analyzer)
    assert docs.docs == []
    analyzer.close()


def test_dask_cluster_executor_gives_the_thread_pool_result(RE, docs, fast_scope, tmp_path):
    from distributed import Client, LocalCluster

    phase = Phase("p", interval=0.05, n_frames=3, channels=IMG)
    RE(optogenetic_plan([(0, 0)], [phase], microscope=fast_scope))
    threads = erk_analyzer(output=tmp_path / "threads")
    _replay(docs, threads)
    threads.close()
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        on_dask = erk_analyzer(output=tmp_path / "dask", executor=client.get_executor())
        _replay(docs, on_dask)
        on_dask.close()
    assert not on_dask.errors
    a, b = read_tracks(tmp_path / "threads"), read_tracks(tmp_path / "dask")
    assert len(a) > 0
    pd.testing.assert_frame_equal(_comparable(a), _comparable(b))


def test_replay_without_output_never_overwrites_the_live_analysis(RE, docs, fast_scope):
    live = erk_analyzer()
    phase = Phase("p", interval=0.05, n_frames=3, channels=IMG)
    RE(optogenetic_plan([(0, 0)], [phase], microscope=fast_scope, analyzer=live))
    live_tracks = live.tracks()
    live.close()
    again = Analyzer(segmenter=OtsuSegmenter(channel="miRFP"))  # other columns, no output=
    _replay(docs, again)
    assert again.root != live.root and again.root.name.startswith(live.root.stem)
    replayed = again.tracks()
    again.close()
    assert "cnr" not in replayed and len(replayed) == len(live_tracks)
    pd.testing.assert_frame_equal(read_tracks(live.root), live_tracks)  # untouched
    assert "rings" in zarr.open_group(live.root)["labels"].attrs["ome"]["labels"]


def test_runs_back_to_back_while_analysis_lags_are_kept_apart(RE, docs, fast_scope, tmp_path):
    phase = Phase("p", interval=0.05, n_frames=3, channels=IMG)
    RE(optogenetic_plan([(0, 0), (300, 0)], [phase], microscope=fast_scope))
    analyzer = Analyzer(
        segmenter=SlowSegmenter(0.2), executor=ThreadPoolExecutor(1), max_inflight=1
    )
    for _ in range(2):  # the second run's start arrives while the first is still analysed
        for name, doc in docs.docs:
            analyzer(name, doc)
    assert analyzer.wait_idle(60)
    first, second = analyzer.summaries[:6], analyzer.summaries[6:]
    assert sorted((s.fov, s.t) for s in first) == [(p, t) for p in range(2) for t in range(3)]
    assert sorted((s.fov, s.t) for s in second) == sorted((s.fov, s.t) for s in first)
    assert len(read_tracks(analyzer.root)) == len(analyzer.tracks()) > 0
    analyzer.close()


def test_a_closed_analyzer_is_refused_and_ignores_documents(RE, docs, fast_scope):
    from faro_bluesky.plans import ExperimentError

    analyzer = Analyzer()
    analyzer.close()
    phase = Phase("p", interval=0.05, n_frames=1, channels=IMG)
    with pytest.raises(ExperimentError, match="closed"):
        optogenetic_plan([(0, 0)], [phase], microscope=fast_scope, analyzer=analyzer)
    analyzer("start", {"uid": "x", "time": 0.0})
    assert analyzer.wait_idle(1)


def test_decision_reads_the_analyzers_tracks_after_the_baseline(RE, docs, fast_scope):
    analyzer = erk_analyzer()
    chosen = {}

    def decide(ctx):
        tracks = ctx.analyzer.tracks()  # everything analysed so far: the baseline
        chosen["cells"] = tracks.groupby("t")["particle"].count().min()
        chosen["baseline_cnr"] = float(tracks["cnr"].mean())
        n = 2 if chosen["cells"] > 5 else 1
        return Phase("follow-up", interval=0.05, n_frames=n, channels=IMG)

    baseline = Phase("baseline", interval=0.05, n_frames=2, channels=IMG)
    RE(optogenetic_plan([(0, 0)], [baseline, decide], microscope=fast_scope, analyzer=analyzer))
    tracks = analyzer.tracks()
    analyzer.close()
    assert chosen["cells"] > 5 and np.isfinite(chosen["baseline_cnr"])
    assert list(tracks.drop_duplicates("t")["phase"]) == ["baseline"] * 2 + ["follow-up"] * 2
