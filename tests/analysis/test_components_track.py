"""Tracker unit tests on hand-made detections: ids, memory, ordering, FOVs, threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from faro_bluesky.analysis._protocols import Tracker
from faro_bluesky.analysis.components import NearestNeighbourTracker, TrackpyTracker

TRACKERS = [NearestNeighbourTracker, TrackpyTracker]


def cells(*xy, label_from=1) -> pd.DataFrame:
    xy = np.asarray(xy, float).reshape(-1, 2)
    return pd.DataFrame(
        {"label": np.arange(label_from, label_from + len(xy)), "x": xy[:, 0], "y": xy[:, 1]}
    )


GRID = [(x, y) for x in (20.0, 80.0, 140.0) for y in (20.0, 80.0, 140.0)]


def pid(out: pd.DataFrame, x: float, y: float) -> int:
    """Particle id of the row nearest to (x, y)."""
    return int(out.particle.iloc[np.argmin(np.hypot(out.x - x, out.y - y))])


@pytest.fixture(params=TRACKERS, ids=lambda c: c.__name__)
def make(request):
    return request.param


def test_protocol_and_output_columns(make):
    tracker = make(search_range=20, memory=2)
    assert isinstance(tracker, Tracker)
    table = cells(*GRID).assign(area=5)
    out = tracker.track(0, 0, table)
    assert list(out.columns) == [*table.columns, "particle"]
    assert out.particle.dtype == np.int64
    assert sorted(out.particle) == list(range(1, 10))  # ids start at 1 (0 is background)
    assert "particle" not in table.columns  # the input is not modified
    pd.testing.assert_frame_equal(out.drop(columns="particle"), table)


def test_moving_cells_keep_their_ids(make):
    tracker = make(search_range=20, memory=2)
    first = tracker.track(0, 0, cells(*GRID))
    ids = {xy: pid(first, *xy) for xy in GRID}
    rng = np.random.default_rng(0)
    pos = np.array(GRID)
    for t in range(1, 15):
        pos = pos + rng.uniform(-5, 5, pos.shape)
        order = rng.permutation(len(pos))  # detections come in any order
        out = tracker.track(0, t, cells(*pos[order]))
        for start, now in zip(GRID, pos, strict=True):
            assert pid(out, *now) == ids[start]


def test_linking_is_globally_optimal_not_greedy(make):
    # A at x=0 and B at x=3 move to x=2 and x=5. Greedy nearest-first links B->2 (1 px)
    # and then A->5 (5 px); the optimal assignment links A->2 and B->5 (2 px each).
    tracker = make(search_range=10, memory=0)
    start = tracker.track(0, 0, cells((0, 50), (3, 50)))
    a, b = pid(start, 0, 50), pid(start, 3, 50)
    out = tracker.track(0, 1, cells((5, 50), (2, 50)))
    assert (pid(out, 2, 50), pid(out, 5, 50)) == (a, b)


def test_memory_bridges_missed_detections_up_to_memory_visits(make):
    tracker = make(search_range=20, memory=2)
    t0 = tracker.track(0, 0, cells(*GRID))
    gone_short, gone_long = GRID[0], GRID[4]
    short, long_ = pid(t0, *gone_short), pid(t0, *gone_long)
    others = [xy for xy in GRID if xy not in (gone_short, gone_long)]
    tracker.track(0, 1, cells(*others))  # both missing...
    tracker.track(0, 2, cells(*others))  # ...for 2 visits (= memory)
    back = tracker.track(0, 3, cells(*others, gone_short))
    assert pid(back, *gone_short) == short
    tracker.track(0, 4, cells(*others, gone_short))  # gone_long: 4 visits, > memory
    out = tracker.track(0, 5, cells(*GRID))
    assert pid(out, *gone_short) == short
    assert pid(out, *gone_long) not in {long_, *t0.particle}  # a new, never used id


def test_empty_frames_count_as_missed_visits(make):
    tracker = make(search_range=20, memory=1)
    t0 = tracker.track(0, 0, cells(*GRID))
    empty = tracker.track(0, 1, cells())
    assert len(empty) == 0 and "particle" in empty.columns
    out = tracker.track(0, 2, cells(*GRID))
    assert sorted(out.particle) == sorted(t0.particle)
    tracker.track(0, 3, cells())
    tracker.track(0, 4, cells())
    out = tracker.track(0, 5, cells(*GRID))
    assert not set(out.particle) & set(t0.particle)


def test_a_fov_may_start_empty(make):
    tracker = make(search_range=20, memory=1)
    assert len(tracker.track(0, 0, cells())) == 0
    out = tracker.track(0, 1, cells(*GRID))
    assert sorted(out.particle) == list(range(1, 10))


def test_skipped_timepoints_do_not_use_up_memory(make):
    # memory counts visits of the FOV: a FOV imaged again after a long pause (another phase)
    # links its cells to where they were
    tracker = make(search_range=20, memory=0)
    t0 = tracker.track(0, 0, cells(*GRID))
    out = tracker.track(0, 40, cells(*(np.array(GRID) + 3)))
    assert sorted(out.particle) == sorted(t0.particle)


def test_a_jump_beyond_search_range_starts_a_new_track(make):
    tracker = make(search_range=10, memory=3)
    t0 = tracker.track(0, 0, cells((50, 50)))
    out = tracker.track(0, 1, cells((50, 65)))
    assert out.particle.iloc[0] != t0.particle.iloc[0]


def test_ids_are_never_reused(make):
    tracker = make(search_range=10, memory=0)
    used: set[int] = set()
    rng = np.random.default_rng(1)
    for t in range(20):  # cells everywhere, all new each frame
        out = tracker.track(0, t, cells(*rng.uniform(0, 10_000, (5, 2))))
        assert not used & set(out.particle)
        used |= set(out.particle)
    assert len(used) == 100


@pytest.mark.parametrize("t", [3, 2])
def test_frames_out_of_order_are_refused(make, t):
    tracker = make()
    tracker.track(0, 3, cells(*GRID))
    with pytest.raises(ValueError, match="acquisition order"):
        tracker.track(0, t, cells(*GRID))
    tracker.track(0, 4, cells(*GRID))  # the refusal changed nothing
    tracker.track(1, 0, cells(*GRID))  # another FOV has its own clock


def test_missing_position_columns_are_refused(make):
    with pytest.raises(ValueError, match="'x' and 'y'"):
        make().track(0, 0, pd.DataFrame({"label": [1], "row": [3.0]}))


def test_fovs_are_independent_even_when_interleaved(make):
    # trackpy's own track counter restarts whenever any linker starts; our ids must not
    tracker = make(search_range=20, memory=1)
    a0 = tracker.track(0, 0, cells(*GRID))
    b0 = tracker.track(1, 0, cells(*GRID[:2]))  # starts a second linker
    a1 = tracker.track(0, 1, cells(*GRID, (500, 500)))  # a new cell in FOV 0
    assert pid(a1, 500, 500) not in set(a0.particle)
    assert set(a0.particle) < set(a1.particle)
    assert a1.particle.is_unique
    b1 = tracker.track(1, 1, cells(*GRID[:2], (500, 500)))
    assert sorted(b1.particle) == [1, 2, 3]  # unique per FOV, not across
    assert set(b0.particle) < set(b1.particle)


def test_reset_forgets_tracks_but_never_reuses_ids(make):
    tracker = make(search_range=20, memory=3)
    a = tracker.track(0, 0, cells(*GRID))
    b = tracker.track(1, 0, cells(*GRID))
    tracker.reset(0)
    a2 = tracker.track(0, 0, cells(*GRID))  # FOV 0 starts over, also its clock
    assert not set(a2.particle) & set(a.particle)
    assert sorted(tracker.track(1, 1, cells(*GRID)).particle) == sorted(b.particle)
    tracker.reset()
    b2 = tracker.track(1, 0, cells(*GRID))
    assert not set(b2.particle) & set(b.particle)


def run_fov(tracker, fov: int, n: int = 25) -> list[list[int]]:
    rng = np.random.default_rng(fov)
    pos = np.array(GRID) * (1 + fov % 3)
    out = []
    for t in range(n):
        pos = pos + rng.uniform(-4, 4, pos.shape)
        keep = rng.random(len(pos)) > 0.1  # some missed detections
        out.append(tracker.track(fov, t, cells(*pos[keep])).particle.tolist())
    return out


def test_concurrent_fovs_give_the_sequential_result(make):
    fovs = range(8)
    sequential = [run_fov(make(search_range=15, memory=2), fov) for fov in fovs]
    shared = make(search_range=15, memory=2)
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda fov: run_fov(shared, fov), fovs))
    assert concurrent == sequential


def canonical(frames: list[list[int]]) -> list[list[int]]:
    """Ids renumbered by first appearance: equal iff the same cells were linked."""
    order: dict[int, int] = {}
    return [[order.setdefault(p, len(order)) for p in frame] for frame in frames]


def test_both_trackers_link_easy_data_alike():
    a, b = (run_fov(make(search_range=15, memory=2), 0) for make in TRACKERS)
    assert canonical(a) == canonical(b)


def test_nearest_neighbour_tracks_a_crowded_random_walk():
    """300 cells at random in 512x512 px (neighbours often closer than a step), random
    steps of 3 px per axis, 5 % of detections missed: most links must still be right."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 512, (300, 2))
    tracker = NearestNeighbourTracker(search_range=25, memory=3)
    rows = []
    for t in range(30):
        pos = pos + rng.normal(0, 3.0, pos.shape)
        seen = np.nonzero(rng.random(len(pos)) > 0.05)[0]
        out = tracker.track(0, t, cells(*pos[seen]))
        rows.append(pd.DataFrame({"truth": seen, "particle": out.particle, "t": t}))
    kept = pairs = 0
    for _, cell in pd.concat(rows).groupby("truth"):
        p = cell.sort_values("t").particle.to_numpy()
        kept, pairs = kept + (p[1:] == p[:-1]).sum(), pairs + len(p) - 1
    assert kept / pairs > 0.95, kept / pairs
