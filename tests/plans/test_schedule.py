"""Schedule: faro's event ordering, combine/wait timing and FOV batching contracts (H2/H4/H9)."""

from __future__ import annotations

import json

import pytest

from faro_bluesky.plans._batching import check_fov_batching
from faro_bluesky.plans._errors import ExperimentError
from faro_bluesky.plans._model import Channel, Phase, Wait, parallel, wait
from faro_bluesky.plans._schedule import Schedule, Visit, schedule

IMG = [Channel("miRFP", 50)]
STIM = [Channel("Cyan", 100, 10)]
REF = [Channel("mCitrine", 600)]
FOVS = [(0.0, 0.0), (40.0, 0.0), (0.0, 40.0)]


def phase(name: str = "p", n: int = 5, interval: float = 10.0, **kw) -> Phase:
    kw.setdefault("channels", IMG)
    return Phase(name, interval=interval, n_frames=n, **kw)


def tp(s: Schedule) -> list[tuple[int, int]]:
    return [(v.t, v.p) for v in s]


def times(s: Schedule, phase_name: str | None = None) -> list[float]:
    return [v.time for v in s if phase_name is None or v.phase == phase_name]


# ------------------------------------------------------------ ordering (H2)
def test_tp_order_visits_every_fov_per_timepoint():
    s = schedule(FOVS[:2], [phase(n=2)])
    assert tp(s) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [v.index for v in s] == [0, 1, 2, 3]


def test_pt_order_runs_each_fov_through_all_frames():
    s = schedule(FOVS[:2], [phase(n=2, axis_order="pt")])
    assert tp(s) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert times(s) == [0, 10, 20, 30]


@pytest.mark.parametrize(("n_fovs", "n"), [(1, 4), (3, 1)])
def test_orders_identical_with_one_fov_or_one_frame(n_fovs, n):
    a = schedule(FOVS[:n_fovs], [phase(n=n, axis_order="tp")])
    b = schedule(FOVS[:n_fovs], [phase(n=n, axis_order="pt")])
    assert tp(a) == tp(b)


def test_same_visit_set_in_both_orders():
    a = schedule(FOVS, [phase(n=4, axis_order="tp")])
    b = schedule(FOVS, [phase(n=4, axis_order="pt")])
    assert len(a) == len(b) == 12
    assert set(tp(a)) == set(tp(b))


def test_visit_carries_channels_and_position():
    chans = [Channel("miRFP", 50), Channel("BF", 5, 99)]
    s = schedule(FOVS, [phase(n=2, channels=chans)])
    for v in s:
        assert v.channels == tuple(chans)
        assert v.xy == FOVS[v.p]


@pytest.mark.parametrize("order", ["tp", "pt"])
def test_stim_only_on_stim_frames_at_every_fov(order):
    s = schedule(FOVS, [phase(n=5, axis_order=order, stim_channels=STIM, stim_frames={1, 3})])
    assert {(v.t, v.p) for v in s if v.stim} == {(t, p) for t in (1, 3) for p in range(3)}
    assert all(v.stim_channels == tuple(STIM) for v in s if v.stim)
    assert all(v.stim_channels == () for v in s if not v.stim)


def test_stim_exposure_override_reaches_visits():
    p = phase(n=3, stim_channels=STIM, stim_frames={0, 2}, stim_exposure=[20, 30])
    s = schedule(FOVS[:1], [p])
    assert [[c.exposure for c in v.stim_channels] for v in s] == [[20], [], [30]]
    assert all(c.power == 10 for v in s for c in v.stim_channels)


def test_ref_only_on_ref_frames():
    s = schedule(FOVS[:2], [phase(n=5, ref_channels=REF, ref_frames={0, -1})])
    assert [(v.t, v.p) for v in s if v.ref] == [(0, 0), (0, 1), (4, 0), (4, 1)]
    assert all(v.ref_channels == tuple(REF) for v in s if v.ref)
    assert not schedule(FOVS[:2], [phase(n=5)])[0].ref


def test_stim_and_ref_in_one_phase():
    s = schedule(FOVS[:1], [phase(stim_channels=STIM, stim_frames={2, 3}, ref_channels=REF,
                                   ref_frames={0})])  # fmt: skip
    assert [v.t for v in s if v.ref] == [0]
    assert [v.t for v in s if v.stim] == [2, 3]


def test_visit_metadata_has_phase_name_and_index():
    s = schedule(FOVS[:1], [phase("a", n=1, metadata={"k": 1}), phase("b", n=1)])
    assert [v.metadata for v in s] == [
        {"k": 1, "phase_name": "a", "phase_index": 0},
        {"phase_name": "b", "phase_index": 1},
    ]
    assert [v.phase_index for v in s] == [0, 1]


# ------------------------------------------------------------ t indices across phases
def test_t_contiguous_across_phases():
    s = schedule(FOVS[:1], [phase("a", n=3), phase("b", n=2)])
    assert [v.t for v in s] == [0, 1, 2, 3, 4]
    assert [v.frame for v in s] == [0, 1, 2, 0, 1]
    assert s.n_timepoints == 5


def test_three_way_chain_t():
    s = schedule(FOVS[:1], [phase("a", n=2), phase("b", n=2), phase("c", n=2)])
    assert [v.t for v in s] == [0, 1, 2, 3, 4, 5]


def test_ref_phase_after_stim_phase():
    stim = phase("stim", n=5, stim_channels=STIM, stim_frames={1, 2})
    ref = phase("ref", n=1, interval=0, channels=REF, metadata={"img_type": "ref"})
    s = schedule(FOVS, [stim, ref])
    assert len(s) == 18
    last = s[15:]
    assert [(v.t, v.p, v.phase) for v in last] == [(5, 0, "ref"), (5, 1, "ref"), (5, 2, "ref")]
    assert max(i for i, v in enumerate(s) if v.stim) < 15
    assert times(s, "ref") == [40, 40, 40]  # interval 0: starts with the last frame


def test_waits_claim_no_t_and_no_visits():
    s = schedule(FOVS[:1], [phase("a", n=2), wait(5), phase("b", n=2)])
    assert len(s) == 4
    assert [v.t for v in s] == [0, 1, 2, 3]


def test_pt_order_kept_across_phase_boundary():
    s = schedule(FOVS[:2], [phase("a", n=2, axis_order="pt"), phase("b", n=2, axis_order="pt")])
    assert [(v.t, v.p) for v in s] == [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (3, 0), (2, 1),
                                       (3, 1)]  # fmt: skip


# ------------------------------------------------------------ timing (combine/wait)
def test_wait_first_shifts_first_frame():
    s = schedule(FOVS[:1], [wait(10), phase(n=3)])
    assert times(s)[0] == 10


def test_wait_between_phases_adds_no_interval():
    s = schedule(FOVS[:1], [phase("a", n=3), wait(10), phase("b", n=3)])
    assert times(s, "a") == [0, 10, 20]
    assert times(s, "b") == [30, 40, 50]


def test_next_phase_starts_one_of_its_intervals_after():
    s = schedule(FOVS[:1], [phase("a", n=3, interval=5), phase("b", n=2, interval=7)])
    assert times(s, "a") == [0, 5, 10]
    assert times(s, "b") == [17, 24]


def test_multi_fov_phase_starts_one_interval_after_previous_last_time():
    s = schedule(FOVS, [phase("a", n=2, interval=5), phase("b", n=2, interval=7)])
    assert times(s, "b") == [12, 12, 12, 19, 19, 19]


def test_consecutive_waits_add_up():
    s = schedule(FOVS[:1], [phase("a", n=1), wait(3), wait(4), phase("b", n=1)])
    assert times(s) == [0, 7]


def test_start_offsets_everything():
    s = schedule(FOVS[:1], [phase(n=2)], start=100)
    assert times(s) == [100, 110]
    assert (s.start, s.end, s.duration) == (100, 110, 10)


# ------------------------------------------------------------ parallel (combine axis=p)
def _par():
    a = phase("a", n=3, interval=10, fovs=[0], stim_channels=STIM, stim_frames={1})
    b = phase("b", n=2, interval=5, fovs=[1, 2], stim_channels=STIM, stim_frames={0})
    return parallel(a, b)


def test_parallel_branches_share_the_clock():
    s = schedule(FOVS, [_par()])
    t0 = [v for v in s if v.frame == 0]
    assert {v.p for v in t0} == {0, 1, 2}
    assert all(v.time == 0 for v in t0)
    assert times(s) == sorted(times(s))


def test_parallel_merges_by_time_then_fov():
    s = schedule(FOVS, [_par()])
    assert [(v.time, v.p) for v in s] == [
        (0, 0), (0, 1), (0, 2), (5, 1), (5, 2), (10, 0), (20, 0)
    ]  # fmt: skip
    assert [v.t for v in s] == [0, 0, 0, 1, 1, 1, 2]


def test_parallel_keeps_per_branch_stim_schedules():
    s = schedule(FOVS, [_par()])
    assert {(v.t, v.p) for v in s if v.stim} == {(1, 0), (0, 1), (0, 2)}


def test_parallel_advances_t_and_clock_by_longest_branch():
    s = schedule(FOVS, [_par(), phase("after", n=1, interval=3)])
    after = [v for v in s if v.phase == "after"]
    assert {v.t for v in after} == {3}
    assert {v.time for v in after} == {23}
    assert [p.name for p in s.phases] == ["a", "b", "after"]
    assert {v.phase_index for v in after} == {2}


def test_parallel_branch_waits_and_trailing_wait():
    a = phase("a", n=2, fovs=[0])
    b = [wait(15), phase("b", n=1, fovs=[1])]
    s = schedule(FOVS, [parallel(a, b), phase("c", n=1, interval=4, fovs=[2])])
    assert times(s, "b") == [15]
    assert times(s, "c") == [19]  # branch b ends last with a phase: + c's interval
    s2 = schedule(FOVS, [parallel(a, [*b, wait(10)]), phase("c", n=1, interval=4, fovs=[2])])
    assert times(s2, "c") == [25]  # ends with a wait: no interval


def test_parallel_after_a_phase_waits_one_interval():
    s = schedule(FOVS, [phase("pre", n=2, interval=10), _par()])
    assert times(s, "a")[0] == times(s, "b")[0] == 20


def test_schedule_rechecks_directly_built_parallel():
    from faro_bluesky.plans._model import Parallel

    bad = Parallel(branches=((phase(fovs=[0, 1]),), (phase(fovs=[1]),)))
    with pytest.raises(ExperimentError, match="both use FOV 1"):
        schedule(FOVS, [bad])


# ------------------------------------------------------------ FOV batching
def test_batching_31_fovs_in_two_batches():
    fovs = [(float(i), 0.0) for i in range(31)]
    s = schedule(fovs, [phase(n=3, interval=60)], time_per_fov=2)
    batch_duration = 2 * 60 + 30 * 2
    assert times(s)[:3] == [0, 2, 4]  # slot stagger
    fov30 = [v for v in s if v.p == 30]
    assert [v.time for v in fov30] == [batch_duration, batch_duration + 60, batch_duration + 120]
    assert [v.t for v in fov30] == [0, 1, 2]  # t stays per-FOV relative
    fov29 = [v.time for v in s if v.p == 29]
    assert fov29 == [58, 118, 178]
    assert [v.time for v in s] == sorted(v.time for v in s)


def test_single_batch_still_staggers():
    s = schedule(FOVS, [phase(n=2, interval=10)], time_per_fov=2)
    assert [(v.time, v.p) for v in s] == [(0, 0), (2, 1), (4, 2), (10, 0), (12, 1), (14, 2)]


def test_no_time_per_fov_no_stagger():
    s = schedule(FOVS, [phase(n=1)])
    assert times(s) == [0, 0, 0]


def test_batched_phase_then_next_phase():
    s = schedule(FOVS, [phase("a", n=2, interval=4), phase("b", n=1, interval=4)],
                 time_per_fov=2)  # fmt: skip
    # a: 2 slots -> FOVs 0,1 at 0,2 / 4,6; FOV 2 in batch 1 at 8, 12; b starts at 12 + 4
    assert times(s, "a") == [0, 2, 4, 6, 8, 12]
    assert times(s, "b") == [16, 18, 20]


@pytest.mark.parametrize(
    ("n", "interval", "tpf", "ok", "text"),
    [
        (30, 60, 2, True, "Parallelisation OK: 30 FOV(s) fit in 30 parallel slot(s)."),
        (31, 60, 2, False, "NOT possible in one batch: 31 FOV(s) need 2 batch(es) of up to 30"),
        (5, 1, 2, False, "need 5 batch(es) of up to 1"),
    ],
)
def test_check_fov_batching(n, interval, tpf, ok, text):
    fits, message = check_fov_batching(n, interval, tpf)
    assert fits is ok
    assert text in message


# ------------------------------------------------------------ FOV subsets and validation
def test_phase_fovs_subset():
    s = schedule(FOVS, [phase(n=2, fovs=[2, 0])])
    assert tp(s) == [(0, 0), (0, 2), (1, 0), (1, 2)]


def test_phase_fov_index_out_of_range():
    with pytest.raises(ExperimentError, match=r"phase 'x'.*fovs index \[3\].*0\.\.2"):
        schedule(FOVS, [phase("x", fovs=[1, 3])])


@pytest.mark.parametrize(
    ("fovs", "phases", "kw", "message"),
    [
        ([], [phase()], {}, "fovs is empty"),
        (FOVS, [wait(3)], {}, "no Phase"),
        (FOVS, [phase()], {"time_per_fov": 0}, "time_per_fov"),
        ([(1, 2, 3)], [phase()], {}, "not an"),
        (FOVS, [phase(), "p2"], {}, "is not a Phase"),
    ],
)
def test_schedule_validation(fovs, phases, kw, message):
    with pytest.raises(ExperimentError, match=message):
        schedule(fovs, phases, **kw)


def test_all_problems_reported_together():
    bad_par = parallel(phase(fovs=[0]), phase(fovs=[1])).model_copy(
        update={"branches": ((phase(fovs=[0]),), (phase(fovs=[0]),))}
    )
    with pytest.raises(ExperimentError) as info:
        schedule(FOVS[:1], [phase("x", fovs=[5]), bad_par, Wait(1)], time_per_fov=-1)
    text = "\n".join(info.value.problems)
    assert len(info.value.problems) == 3
    for part in ("time_per_fov", "phase 'x'", "both use FOV 0"):
        assert part in text


# ------------------------------------------------------------ Schedule as data
def test_schedule_is_an_immutable_sequence():
    s = schedule(FOVS, [phase(n=2)])
    assert len(s) == 6 and isinstance(s[0], Visit) and len(s[1:3]) == 2
    assert list(s) == list(s[:])
    with pytest.raises(AttributeError):
        s[0].t = 3
    with pytest.raises(AttributeError):
        s.extra = 1


def test_rows_are_json_serialisable():
    s = schedule(FOVS, [phase(n=3, stim_channels=STIM, stim_frames={1}, ref_channels=REF,
                              ref_frames={2})])  # fmt: skip
    rows = json.loads(json.dumps(s.rows()))
    assert rows[3] | {"time": 10} == {
        "index": 3, "t": 1, "p": 0, "x": 0.0, "y": 0.0, "phase": "p", "phase_index": 0,
        "frame": 1, "time": 10, "channels": ["miRFP"], "stim": True, "stim_channels": ["Cyan"],
        "stim_exposure": [100.0], "ref": False, "ref_channels": [],
    }  # fmt: skip
    assert json.dumps(s.to_json())


def test_dataframe_has_one_row_per_visit():
    s = schedule(FOVS, [phase(n=2)])
    df = s.to_dataframe()
    assert len(df) == len(s)
    assert list(df["t"]) == [v.t for v in s]


def test_table_shows_phases_and_stim_markers():
    s = schedule(FOVS[:1], [phase("baseline", n=2), phase("opto", n=3, stim_channels=STIM,
                                                          stim_frames={0})])  # fmt: skip
    text = s.table()
    assert "baseline" in text and "opto" in text
    assert "STIM Cyan(100ms)" in text
    assert str(s) == text
    long = schedule(FOVS, [phase(n=40)]).table(max_rows=10)
    assert "110 more visit(s)" in long
    assert len(long.splitlines()) == 3 + 10 + 1
