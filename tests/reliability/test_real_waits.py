"""``wait(s)`` is real rest: at least s seconds after the last visit before it, even late.

The runs force a phase to run late (more visits than fit its interval), so a wait measured
from the *scheduled* end would be short. Every assertion is a lower bound that lateness or
a loaded machine can only make truer: no sleeps, no upper time limits.
"""

from __future__ import annotations

import pytest

from faro_bluesky.plans import Channel, Phase, optogenetic_plan, parallel, schedule, wait

FOVS = [(0.0, 0.0), (400.0, 0.0)]
REST = 0.5  # s
SLOW = [Channel("miRFP", 20)]
FAST = [Channel("miRFP", 5)]


def late_phase(**kw) -> Phase:
    """10 frames 1 ms apart: the visits take far longer than scheduled, so it ends late."""
    return Phase("late", interval=0.001, n_frames=10, channels=SLOW, **kw)


def frames(docs, phase: str | None = None, p: int | None = None) -> list[dict]:
    uids = {d["uid"] for d in docs.of("descriptor") if d["name"] == "primary"}
    return [
        e
        for e in docs.of("event")
        if e["descriptor"] in uids
        and (phase is None or e["data"]["visit-phase"] == phase)
        and (p is None or e["data"]["visit-p"] == p)
    ]


# ------------------------------------------------------------ the schedule knows the waits
def test_first_visit_after_a_wait_owes_the_rest_to_the_last_visit_before():
    s = schedule(
        FOVS, [late_phase(), wait(3), wait(2), Phase("b", interval=1, n_frames=2, channels=FAST)]
    )
    last_late = max(v.index for v in s if v.phase == "late")
    first_b = min(v.index for v in s if v.phase == "b")
    assert s[first_b].rests == ((last_late, 5.0),)  # consecutive waits add up
    assert all(v.rests == () for v in s if v.index != first_b)


def test_a_wait_at_the_start_owes_nothing():
    s = schedule(FOVS, [wait(3), Phase("a", interval=1, n_frames=1, channels=FAST)])
    assert [v.rests for v in s] == [(), ()]
    assert s[0].time == 3.0


def test_parallel_branches_owe_rest_to_their_own_last_visit_and_trailing_waits_carry_over():
    a1 = Phase("a1", interval=1, n_frames=2, channels=FAST, fovs=[0])
    a2 = Phase("a2", interval=1, n_frames=1, channels=FAST, fovs=[0])
    b = Phase("b", interval=1, n_frames=6, channels=FAST, fovs=[1])
    after = Phase("after", interval=1, n_frames=1, channels=FAST)
    s = schedule(FOVS, [parallel([a1, wait(2), a2, wait(4)], [b]), after])
    index = {(v.phase, v.frame, v.p): v.index for v in s}
    (a2_first,) = [v for v in s if v.phase == "a2"]
    assert a2_first.rests == ((index["a1", 1, 0], 2.0),)  # not b's visits in between
    first_after = next(v for v in s if v.phase == "after")
    assert first_after.rests == ((index["a2", 0, 0], 4.0),)  # branch a's trailing wait


def test_rest_before_a_parallel_reaches_every_branch():
    p = Phase("p", interval=1, n_frames=1, channels=FAST)
    a = Phase("a", interval=1, n_frames=1, channels=FAST, fovs=[0])
    b = Phase("b", interval=1, n_frames=1, channels=FAST, fovs=[1])
    s = schedule(FOVS, [p, wait(3), parallel([wait(1), a], [b])])
    last_p = max(v.index for v in s if v.phase == "p")
    rests = {v.phase: v.rests for v in s if v.phase in ("a", "b")}
    assert rests == {"a": ((last_p, 4.0),), "b": ((last_p, 3.0),)}


# ------------------------------------------------------------ real runs
@pytest.mark.parametrize("on_resume", ["shift", "catch_up"])
def test_wait_after_a_late_phase_gives_the_full_rest(RE, docs, scope, on_resume):
    after = Phase("after", interval=0.05, n_frames=2, channels=FAST)
    plan = optogenetic_plan(
        FOVS, [late_phase(), wait(REST), after], microscope=scope, on_resume=on_resume
    )
    assert RE(plan).exit_status == "success"
    before, later = frames(docs, "late"), frames(docs, "after")
    (start,) = docs.of("start")
    t0 = frames(docs)[0]["data"]["visit-scheduled"]  # the first visit is due at t = 0
    nominal_after = t0 + min(r["time"] for r in start["schedule"] if r["phase"] == "after")
    last_before = max(e["time"] for e in before)
    first_after = min(e["time"] for e in later)
    # The late phase really ran late: resting from its scheduled end would be short ...
    assert nominal_after - last_before < REST
    # ... but the rest is real, measured from the frames themselves.
    assert first_after - last_before >= REST
    # visit-scheduled is the real, shifted deadline: no frame before it, the first
    # after the wait due a full rest after the last frame before it.
    for e in frames(docs):
        assert e["time"] >= e["data"]["visit-scheduled"]
    assert min(e["data"]["visit-scheduled"] for e in later) >= last_before + REST
    # The phase after the wait keeps its own interval (the whole rest moved, not squeezed).
    for p in range(len(FOVS)):
        due = [e["data"]["visit-scheduled"] for e in frames(docs, "after", p)]
        assert due[1] - due[0] == pytest.approx(0.05, abs=1e-6)
    # The start document keeps the experiment as planned.
    planned = next(r["time"] for r in start["schedule"] if r["phase"] == "after")
    assert planned == pytest.approx(late_phase().duration + REST)


def test_wait_inside_a_parallel_branch_is_real(RE, docs, scope):
    a1 = late_phase(fovs=[0])
    a2 = Phase("a2", interval=0.05, n_frames=1, channels=FAST, fovs=[0])
    b = Phase("b", interval=0.05, n_frames=4, channels=FAST, fovs=[1])
    plan = optogenetic_plan(FOVS, [parallel([a1, wait(REST), a2], [b])], microscope=scope)
    assert RE(plan).exit_status == "success"
    last_a1 = max(e["time"] for e in frames(docs, "late"))
    (first_a2,) = [e["time"] for e in frames(docs, "a2")]
    assert first_a2 - last_a1 >= REST
    assert len(frames(docs, "b")) == 4
