"""The latency path: a frame's mask waits only for what its stimulator declares it needs.

One real run on the simulated microscope (stimulating frames 1 and 3 of 4, two FOVs) is
recorded once; its documents are then replayed into analyzers with different stimulators,
feature extractors and segmenters (the analyzer's one code path for live runs and replays),
all at once or document by document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from bluesky import RunEngine

from faro_bluesky.analysis import Analyzer, Need
from faro_bluesky.analysis.components import ErkKtrFeatures, FractionOfCells, OtsuSegmenter
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope


def feed(analyzer: Analyzer, docs) -> None:
    """Hand ``docs`` to ``analyzer`` as the RunEngine would, then wait until it is idle."""
    for name, doc in docs:
        analyzer(name, doc)
    assert analyzer.wait_idle(60)


STIM_FRAMES = {(fov, t) for fov in (0, 1) for t in (1, 3)}
FOVS = [(0, 0), (300, 0)]
PHASE = Phase(
    "p",
    interval=0.05,
    n_frames=4,
    channels=[Channel("miRFP", 10), Channel("ERKKTR", 10)],
    stim_channels=[Channel("Cyan", 50, power=50)],
    stim_frames=(1, 3),
)
"""The recorded run: lighting the whole field at t = 1 and 3 of each FOV's 4 timepoints."""


@pytest.fixture(scope="module")
def stim_run(tmp_path_factory) -> list[tuple[str, dict]]:
    """The documents of a 2-FOV, 4-timepoint run lighting the whole field at t = 1 and 3."""
    RE = RunEngine(context_managers=[], call_returns_result=True)
    scope = sim_microscope(seed=3, data_dir=tmp_path_factory.mktemp("data"), image_shape=(256, 256))
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(optogenetic_plan(FOVS, [PHASE], microscope=scope, stim_mask=True))
    scope.close()  # no camera cache left: the analyzers read the zarr store
    return docs


def analyse(docs, stimulator, features=None, segmenter=None, **kw) -> Analyzer:
    analyzer = Analyzer(
        segmenter=segmenter or OtsuSegmenter(channel="miRFP"),
        features=features if features is not None else ErkKtrFeatures(channel="ERKKTR"),
        stimulator=stimulator,
        **kw,
    )
    if isinstance(features, WatchedFeatures):
        features.board = analyzer.board
    feed(analyzer, docs)
    return analyzer


class WatchedFeatures:
    """ERK-KTR features that note, per frame, whether its mask was out when they ran."""

    channel = "ERKKTR"

    def __init__(self, fail: bool = False) -> None:
        self.board = None
        self.fail = fail
        self.mask_was_out: dict[tuple[int, int], bool] = {}

    def extract(self, labels, image, info):
        self.mask_was_out[(info.fov, info.t)] = self.board.peek(info.fov, info.t) is not None
        if self.fail:
            raise RuntimeError("features failed")
        return ErkKtrFeatures(channel="ERKKTR").extract(labels, image, info)


@dataclass(frozen=True)
class EagerFractionOfCells(FractionOfCells):
    """FractionOfCells declaring the features too: everything is measured before its mask."""

    needs: ClassVar[frozenset[Need]] = frozenset({Need.TRACKS, Need.FEATURES})


def test_the_mask_is_out_before_the_features_it_does_not_need(stim_run, tmp_path):
    features = WatchedFeatures()
    analyzer = analyse(stim_run, FractionOfCells(0.5, seed=1), features, output=tmp_path / "a")
    tracks = analyzer.tracks()
    analyzer.close()
    assert not analyzer.errors
    # the features of a stimulated frame were measured after its mask was published; the
    # other frames (no mask awaited) were measured in one go
    assert {key for key, out in features.mask_was_out.items() if out} == STIM_FRAMES
    assert len(features.mask_was_out) == 8
    # and every frame's rows have them, joined to the tracked cells
    assert len(tracks) > 20 and np.isfinite(tracks["cnr"]).all()
    assert tracks["particle"].notna().all()
    stimulated = [k in STIM_FRAMES for k in zip(tracks["fov"], tracks["t"], strict=True)]
    assert tracks.loc[stimulated, "lit"].notna().all()
    assert tracks.loc[np.logical_not(stimulated), "lit"].isna().all()
    for s in analyzer.summaries:
        if (s.fov, s.t) in STIM_FRAMES:
            assert s.mask_ms <= s.analysis_ms and 0 < s.mask_fraction < 1
        else:
            assert np.isnan(s.mask_ms)
    # the same table as measuring everything before the mask
    eager = analyse(stim_run, EagerFractionOfCells(0.5, seed=1), output=tmp_path / "b")
    together = eager.tracks()
    eager.close()
    pd.testing.assert_frame_equal(tracks, together)
    # and, but for `lit`, as without a stimulator (one job per frame, nothing early)
    plain = analyse(stim_run, None, output=tmp_path / "c")
    unlit = plain.tracks()
    plain.close()
    pd.testing.assert_frame_equal(tracks.drop(columns="lit"), unlit)


class CountingSegmenter(OtsuSegmenter):
    """Otsu, counting its calls."""

    def __init__(self) -> None:
        super().__init__(channel="miRFP")
        self.planes: list[np.ndarray] = []

    def segment(self, image):
        self.planes.append(np.array(image))
        return super().segment(image)


def first_plane_of(docs, fov: int, t: int) -> int:
    """Index in ``docs`` of the event of the first imaging plane of visit (fov, t)."""
    primary = {d["uid"] for name, d in docs if name == "descriptor" and d["name"] == "primary"}
    for i, (name, doc) in enumerate(docs):
        data = doc.get("data", {}) if name == "event" and doc["descriptor"] in primary else {}
        if data.get("visit-kind") == "image" and (data["visit-p"], data["visit-t"]) == (fov, t):
            assert data["visit-c"] == 0
            return i
    raise AssertionError(f"no frame of visit {(fov, t)}")


def test_segmentation_starts_with_the_segmenters_plane_of_an_awaited_visit(stim_run, tmp_path):
    """Segmenting a stimulated visit begins when its miRFP plane arrives, while its ERK-KTR
    plane is still being exposed; every visit is still segmented once."""
    segmenter = CountingSegmenter()
    analyzer = Analyzer(
        segmenter=segmenter,
        features=ErkKtrFeatures(channel="ERKKTR"),
        stimulator=FractionOfCells(0.5, seed=1),
        output=tmp_path,
    )
    cut = first_plane_of(stim_run, 0, 1) + 1
    feed(analyzer, stim_run[:cut])
    # t = 0 (both FOVs, nothing awaited) was segmented with its stack; visit (0, 1) before
    assert len(segmenter.planes) == 3
    feed(analyzer, stim_run[cut:])
    tracks = analyzer.tracks()
    analyzer.close()
    assert not analyzer.errors
    assert len(segmenter.planes) == 8  # 2 FOVs x 4 timepoints, once each
    assert set(zip(tracks["fov"], tracks["t"], strict=True)) == {
        (fov, t) for fov in (0, 1) for t in range(4)
    }


def test_a_run_stopped_after_the_first_plane_of_an_awaited_visit_still_ends(stim_run, tmp_path):
    """The early segmentation of a visit whose other planes never come is dropped at the
    stop: the run is finished and the next one is analysed."""
    analyzer = Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"),
        stimulator=FractionOfCells(0.5, seed=1),
        output=tmp_path,
    )
    cut = first_plane_of(stim_run, 0, 1) + 1
    (stop,) = [doc for name, doc in stim_run if name == "stop"]
    feed(analyzer, [*stim_run[:cut], ("stop", stop)])
    assert sorted((s.fov, s.t) for s in analyzer.summaries) == [(0, 0), (1, 0)]
    feed(analyzer, stim_run)  # the next run
    analyzer.close()
    assert not analyzer.errors
    assert len(analyzer.summaries) == 2 + 8


class Probe:
    """A stimulator that records what the analyzer hands it."""

    required_metadata: ClassVar[frozenset[str]] = frozenset()
    needs: ClassVar[frozenset[Need]] = frozenset()

    def __init__(self) -> None:
        self.calls: dict[tuple[int, int], pd.DataFrame] = {}
        self.planes: dict[tuple[int, int], tuple[int, tuple[str, ...]]] = {}

    def mask(self, labels, tracks, image, info):
        self.calls[(info.fov, info.t)] = tracks.copy()
        self.planes[(info.fov, info.t)] = (image.shape[0], info.channels)
        return labels > 0


def probe(*needs: Need) -> Probe:
    return type("Probe", (Probe,), {"needs": frozenset(needs)})()


@pytest.mark.parametrize(
    "needs",
    [(), (Need.TRACKS,), (Need.TRACKS, Need.FEATURES), (Need.HISTORY,)],
    ids=["nothing", "tracks", "tracks+features", "history"],
)
def test_a_stimulator_gets_what_it_declares(stim_run, tmp_path, needs):
    stim = probe(*needs)
    analyzer = analyse(stim_run, stim, output=tmp_path)
    analyzer.close()
    assert not analyzer.errors
    assert set(stim.calls) == STIM_FRAMES
    for (fov, t), tracks in stim.calls.items():
        assert analyzer.board.peek(fov, t) is not None
        assert len(tracks) > 5
        columns = set(tracks.columns)
        assert {"label", "x", "y", "area"} <= columns
        assert ("particle" in columns) == bool(set(needs) & {Need.TRACKS, Need.HISTORY})
        this_frame = tracks[tracks["t"] == t] if "t" in columns else tracks
        measured = "cnr" in columns and this_frame["cnr"].notna().all()
        assert measured == (Need.FEATURES in needs)
        if needs:
            frames = set(tracks["t"])
            assert frames == (set(range(t + 1)) if Need.HISTORY in needs else {t})
            assert set(tracks["fov"]) == {fov}


@pytest.mark.parametrize(
    "needs",
    [(Need.TRACKS,), (), (Need.HISTORY,), (Need.TRACKS, Need.STACK), (Need.FEATURES,)],
    ids=["tracks", "nothing", "history", "stack", "features"],
)
def test_a_mask_needing_only_labels_goes_out_before_the_visits_other_planes(
    stim_run, tmp_path, needs
):
    """The segmenter's plane decides the mask of a stimulator that needs no other plane:
    it is published while the visit's ERK-KTR plane is still being exposed, and the
    visit is then completed (tracked once, features measured) like any other."""
    stim = probe(*needs)
    analyzer = Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"),
        features=ErkKtrFeatures(channel="ERKKTR"),
        stimulator=stim,
        output=tmp_path,
    )
    cut = first_plane_of(stim_run, 0, 1) + 1
    feed(analyzer, stim_run[:cut])
    early = not set(needs) & {Need.STACK, Need.FEATURES}
    assert (analyzer.board.peek(0, 1) is not None) == early
    feed(analyzer, stim_run[cut:])
    tracks = analyzer.tracks()
    analyzer.close()
    assert not analyzer.errors
    assert set(stim.calls) == STIM_FRAMES
    # the early mask saw the segmenter's plane alone; the others the whole stack
    assert stim.planes[(0, 1)] == ((1, ("miRFP",)) if early else (2, ("miRFP", "ERKKTR")))
    assert stim.planes[(1, 3)][0] in (1, 2)  # either way, as fast as the analysis went
    # every visit tracked once, in order, and measured in full
    visits = tracks.groupby(["fov", "t"])
    assert set(visits.groups) == {(fov, t) for fov in (0, 1) for t in range(4)}
    assert tracks["cnr"].notna().all() and tracks["particle"].notna().all()
    assert (visits["particle"].nunique() == visits.size()).all()  # one row per cell


def test_features_failing_after_the_mask_keep_the_mask_and_the_tracked_cells(stim_run, tmp_path):
    features = WatchedFeatures(fail=True)
    analyzer = analyse(stim_run, FractionOfCells(0.5, seed=1), features, output=tmp_path)
    tracks = analyzer.tracks()
    analyzer.close()
    sources = {(e.fov, e.t): e.source for e in analyzer.errors}
    # measured before the mask (in one job with segmentation) on the other frames
    assert sources == {
        k: "features" if k in STIM_FRAMES else "segmentation" for k in features.mask_was_out
    }
    assert all(analyzer.board.peek(*k) is not None for k in STIM_FRAMES)
    assert set(zip(tracks["fov"], tracks["t"], strict=True)) == STIM_FRAMES
    assert "cnr" not in tracks and tracks["particle"].notna().all()


def test_a_stimulator_must_declare_what_it_needs():
    class Undeclared:
        required_metadata = frozenset()

        def mask(self, labels, tracks, image, info):
            return True

    with pytest.raises(TypeError, match="needs"):
        Analyzer(stimulator=Undeclared())
    analyzer = Analyzer()
    with pytest.raises(TypeError, match="needs"):
        analyzer.stimulator = Undeclared()
    analyzer.stimulator = FractionOfCells()
    assert analyzer.provides_masks
    analyzer.close()


def test_a_plane_is_segmented_at_its_readout_and_its_event_adopts_the_result(tmp_path):
    """A camera in this process hands each frame to the analyzer as it is read out: the
    segmenter's planes are segmented before any event names their visit (here the events
    after the run's first come only after the run), and the visits then take those results
    instead of segmenting again. The first frame is not: until an event names the run's
    camera array, a readout may be another plan's."""
    RE = RunEngine(context_managers=[], call_returns_result=True)
    scope = sim_microscope(seed=3, data_dir=tmp_path / "data", image_shape=(256, 256))
    segmenter = CountingSegmenter()
    analyzer = Analyzer(
        segmenter=segmenter,
        features=ErkKtrFeatures(channel="ERKKTR"),
        stimulator=FractionOfCells(0.5, seed=1),
        output=tmp_path / "out",
    )
    docs: list[tuple[str, dict]] = []

    def first_event_only(name, doc):  # the analyzer sees the run up to its first event
        docs.append((name, doc))
        if len(fed) == len(docs) - 1 and not any(n == "event" for n, _ in fed):
            fed.append((name, doc))
            analyzer(name, doc)

    fed: list[tuple[str, dict]] = []
    RE.subscribe(first_event_only)
    RE(optogenetic_plan(FOVS, [PHASE], microscope=scope, stim_mask=True))
    assert analyzer.wait_idle(60)
    # each miRFP frame (2 FOVs x 4) but the first, at its readout
    assert len(segmenter.planes) == 7
    feed(analyzer, docs[len(fed) :])
    tracks = analyzer.tracks()
    analyzer.close()
    scope.close()
    assert not analyzer.errors
    assert len(segmenter.planes) == 8  # adopted by their visits: none segmented twice
    visits = tracks.groupby(["fov", "t"])
    assert set(visits.groups) == {(fov, t) for fov in (0, 1) for t in range(4)}
    assert tracks["cnr"].notna().all() and tracks["particle"].notna().all()
    assert all(analyzer.board.peek(*k) is not None for k in STIM_FRAMES)


def test_an_analyzer_never_closed_stops_listening_to_readouts():
    import gc

    from faro_bluesky.devices import Frame, FrameCache, _frames

    before = len(_frames._READOUT_LISTENERS)
    analyzer = Analyzer(stimulator=FractionOfCells())
    assert len(_frames._READOUT_LISTENERS) == before + 1
    del analyzer
    gc.collect()
    FrameCache().add(Frame("memory://x", 0, np.zeros((2, 2), np.uint16), 0.0, 1.0))
    assert len(_frames._READOUT_LISTENERS) == before  # removed itself at the next readout
