"""The status' state machine as data: every edge of the table walked, every RE state mapped."""

from __future__ import annotations

import itertools

import pytest
from bluesky.run_engine import RunEngineStateMachine

from faro_bluesky.callbacks import TRANSITIONS, Activity, RunState, RunStatus
from faro_bluesky.callbacks._snapshot import STATES
from faro_bluesky.callbacks._states import RE_STATES, StateHook, can_follow, idle_state, run_state

EDGES = [(old, new) for old, targets in TRANSITIONS.items() for new in sorted(targets)]
NOT_EDGES = [
    (old, new)
    for old, new in itertools.product(RunState, RunState)
    if old != new and new not in TRANSITIONS[old]
]


def test_the_states_are_the_strings_users_compare():
    assert STATES == (
        "idle",
        "running",
        "pausing",
        "paused",
        "waiting",
        "stopping",
        "done",
        "failed",
    )
    assert RunStatus().state == "idle" and RunStatus().kind == ""
    assert {a.value for a in Activity} == {"", "image", "stim", "ref", "wait"}
    assert not Activity.NONE  # "" is falsy, as the plain string was
    assert set(TRANSITIONS) == set(RunState)


@pytest.mark.parametrize(("old", "new"), EDGES, ids=[f"{o}->{n}" for o, n in EDGES])
def test_every_edge_of_the_table_may_follow(old, new):
    assert can_follow(old, new)


@pytest.mark.parametrize(("old", "new"), NOT_EDGES, ids=[f"{o}->{n}" for o, n in NOT_EDGES])
def test_every_other_change_is_unexpected(old, new):
    assert not can_follow(old, new)


def test_what_the_table_rules_out():
    for state in RunState:
        assert can_follow(state, state)
        assert state is RunState.IDLE or not can_follow(state, RunState.IDLE)
    for ended in (RunState.IDLE, RunState.DONE, RunState.FAILED):
        assert not can_follow(ended, RunState.PAUSED)  # a run never opens paused
        assert not can_follow(ended, RunState.STOPPING)
    assert TRANSITIONS[RunState.STOPPING] == {RunState.DONE, RunState.FAILED}


def test_every_runengine_state_is_mapped():
    assert set(RE_STATES) == set(RunEngineStateMachine.States.states())


@pytest.mark.parametrize("re_state", RunEngineStateMachine.States.states())
def test_run_state_follows_the_runengine_then_the_run(re_state):
    shown = RE_STATES[re_state]
    for requested, waiting in itertools.product((False, True), repeat=2):
        state = run_state(None, re_state, pause_requested=requested, waiting=waiting)
        if shown is not None:
            assert state is shown
        elif requested:
            assert state is RunState.PAUSING
        else:
            assert state is (RunState.WAITING if waiting else RunState.RUNNING)
        assert run_state("success", re_state, pause_requested=requested, waiting=waiting) is (
            RunState.DONE
        )
        assert run_state("abort", re_state, pause_requested=requested, waiting=waiting) is (
            RunState.FAILED
        )


def test_idle_state_keeps_the_last_run_and_fails_on_panic():
    assert idle_state(None, "idle") is RunState.IDLE
    assert idle_state(RunState.DONE, "idle") is RunState.DONE
    assert idle_state(RunState.DONE, "panicked") is RunState.FAILED


def test_state_hook_forwards_to_the_hook_before_it():
    class FakeRE:
        state_hook = None

    seen, before = [], []
    RE = FakeRE()
    RE.state_hook = lambda new, old: before.append(new)
    hook = StateHook(seen.append)
    hook.bind(RE)
    RE.state_hook("running", "idle")
    assert (seen, before) == (["running"], ["running"])
    hook.unbind()
    assert RE.state_hook is not None and RE.state_hook("idle", "running") is None
    assert seen == ["running"] and before == ["running", "idle"]
    assert hook.RE is None and not hook.pause_requested


def test_runs_walk_only_edges_of_the_table(RE):
    import logging

    import bluesky.plan_stubs as bps
    import bluesky.plans as bp
    from ophyd.sim import det

    from faro_bluesky.callbacks import StatusCallback

    st = StatusCallback(RE=RE, tick_s=None)
    RE.subscribe(st)
    states = []
    st.changed.connect(lambda snap: states.append(snap.state))

    def failing():
        yield from bp.count([det], 2)
        yield from bps.open_run()
        raise RuntimeError("boom")

    class Warnings(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    warnings = Warnings()
    logger = logging.getLogger("faro_bluesky.callbacks._status")
    logger.addHandler(warnings)
    try:
        RE(bp.count([det], 3))
        with pytest.raises(RuntimeError):
            RE(failing())
        RE(bp.count([det], 1))
    finally:
        logger.removeHandler(warnings)
    assert not [m for m in warnings.messages if "unexpected state change" in m]
    assert states[-1] == "done" and {"running", "failed"} <= set(states)
    assert all(can_follow(RunState(a), RunState(b)) for a, b in itertools.pairwise(states))
    st.close()
