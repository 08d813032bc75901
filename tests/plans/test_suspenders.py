"""bluesky suspenders on ophyd-async signals: the bridge alone, then a real closed-loop run."""

from __future__ import annotations

import asyncio
import collections
import threading
import time

import pytest
import zarr
from bluesky.preprocessors import SupplementalData
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.suspenders import SuspendFloor
from ophyd_async.core import init_devices, soft_signal_r_and_setter

from faro_bluesky.plans import Channel, Phase, as_v1_signal, optogenetic_plan, suspend_outside
from faro_bluesky.sim import SimIncubator


@pytest.fixture
def level(RE):
    signal, put = soft_signal_r_and_setter(float, 10.0, name="level")

    def put_on_loop(value: float) -> None:
        async def set_it() -> None:
            put(value)

        call_in_bluesky_event_loop(set_it())

    return signal, put, put_on_loop


def test_adapter_speaks_ophyd_v1(level):
    signal, put, put_on_loop = level
    adapter = as_v1_signal(signal)
    first, second = [], []

    def record(into):
        return lambda **kw: into.append((kw, threading.current_thread().name))

    cb1, cb2 = record(first), record(second)
    adapter.subscribe(cb1)  # run=True: the current value now
    cid2 = adapter.subscribe(cb2, run=False)
    assert [kw["value"] for kw, _ in first] == [10.0] and second == []
    put_on_loop(2.0)
    kw, _ = first[-1]
    assert (kw["value"], kw["old_value"], kw["sub_type"], kw["obj"]) == (
        2.0,
        10.0,
        "value",
        adapter,
    )
    assert [kw["value"] for kw, _ in second] == [2.0]
    assert adapter.get() == adapter.value == 2.0

    put(3.0)  # from this thread, not the loop's: delivered on the loop, in order
    call_in_bluesky_event_loop(asyncio.sleep(0))  # queued after the delivery
    assert first[-1][0]["value"] == second[-1][0]["value"] == 3.0
    assert {thread for _, thread in first + second} == {"bluesky-run-engine"}

    adapter.clear_sub(cb1)
    put_on_loop(4.0)
    assert first[-1][0]["value"] == 3.0 and second[-1][0]["value"] == 4.0
    adapter.unsubscribe(cid2)
    put_on_loop(5.0)
    assert second[-1][0]["value"] == 4.0
    assert adapter.get() == 5.0  # unsubscribed: read from the signal


def test_adapter_refuses_and_isolates(level):
    signal, _, put_on_loop = level
    adapter = as_v1_signal(signal)
    with pytest.raises(TypeError, match="SignalR"):
        as_v1_signal(adapter)
    with pytest.raises(ValueError, match="meta"):
        adapter.subscribe(print, event_type="meta")
    with pytest.raises(ValueError, match="sleep"):
        suspend_outside(signal, 0, 1, sleep=-1)

    def broken(**kw):
        raise RuntimeError("subscriber bug")

    seen = []
    adapter.subscribe(broken)  # logged, not raised into subscribe or the update
    adapter.subscribe(lambda value, **kw: seen.append(value))
    put_on_loop(7.0)
    assert seen == [10.0, 7.0]
    adapter.clear_sub(broken)


def test_pinned_bluesky_still_needs_the_adapter(RE, level):
    # When this fails, bluesky takes ophyd-async signals itself: drop the adapter (0041).
    signal, _, _ = level
    with pytest.raises(TypeError, match="event_type"):
        RE.install_suspender(SuspendFloor(signal, 5.0))


def test_bluesky_suspender_trips_and_clears_on_an_ophyd_async_signal(RE, level):
    signal, _, put_on_loop = level
    suspender = SuspendFloor(as_v1_signal(signal), 5.0, resume_thresh=8.0)
    RE.install_suspender(suspender)  # raises TypeError on a bare ophyd-async signal
    assert not suspender.tripped
    put_on_loop(1.0)
    assert suspender.tripped
    assert "level = 1.0 fell below 5.0" in suspender.get_futures()[1]
    put_on_loop(6.0)
    assert suspender.tripped  # hysteresis: not yet above 8
    put_on_loop(9.0)
    assert not suspender.tripped
    RE.clear_suspenders()
    assert RE.suspenders == ()


# --- a real closed-loop run, suspended by the incubator and resumed by itself -----------

FOVS = [(0.0, 0.0), (400.0, 0.0)]
PHASE = Phase(
    "stim",
    interval=0.25,
    n_frames=4,
    channels=[Channel("miRFP", 5)],
    stim_channels=[Channel("Cyan", 10, 10)],
    stim_frames=(1, 3),
)
EXPECTED = collections.Counter(
    [(t, p, "image") for t in range(4) for p in range(2)]
    + [(t, p, "stim") for t in (1, 3) for p in range(2)]
)
PLAN_VERBS = {"trigger", "set", "read", "save", "create", "wait", "checkpoint", "sleep"}


@pytest.fixture
def incubator(RE):
    with init_devices():
        incubator = SimIncubator(time_constant=0.05, poll_period=0.01)
    yield incubator
    RE.clear_suspenders()  # ends the temperature's poll


@pytest.mark.parametrize("after", [2, 9])
def test_suspend_holds_the_run_and_it_resumes_with_every_frame_once(
    RE, docs, scope, incubator, after
):
    RE.record_interruptions = True  # the RunEngine writes the suspension into the run
    RE.preprocessors.append(SupplementalData(baseline=[incubator]))
    dark = []

    def check_dark():  # the pre_plan runs once devices have been told to pause
        dark.append(scope.core.getSLMImage().max() == 0)
        yield from ()

    RE.install_suspender(
        suspend_outside(incubator.temperature, 36.5, 37.5, sleep=0.05, pre_plan=check_dark)
    )
    msgs: list[tuple[float, str]] = []
    RE.msg_hook = lambda msg: msgs.append((time.time(), msg.command))
    streams: dict[str, str] = {}
    frames = [0]

    def disturb(name, doc):  # runs on the RunEngine thread, inline: no timing involved
        if name == "descriptor":
            streams[doc["uid"]] = doc["name"]
        elif name == "event" and streams[doc["descriptor"]] == "primary":
            frames[0] += 1
            if frames[0] == after:
                incubator.open_door()  # -3 °C now: out of the band
        elif name == "event" and streams[doc["descriptor"]] == "interruptions":
            incubator.close_door()  # suspended: let the chamber recover

    RE.subscribe(disturb)
    result = RE(optogenetic_plan(FOVS, [PHASE], microscope=scope))
    assert result.exit_status == "success" and RE.state == "idle"

    # the run was suspended once, for the incubator, and the RunEngine recorded it
    (interruption,) = [e for e in docs.of("event") if streams[e["descriptor"]] == "interruptions"]
    assert "Signal incubator = " in interruption["data"]["interruption"]
    assert "outside of the range (36.5, 37.5)" in interruption["data"]["interruption"]
    (t_hold,) = [t for t, c in msgs if c == "_start_suspender"]
    (t_release,) = [t for t, c in msgs if c == "_resume_from_suspender"]
    assert t_release - t_hold >= 0.05  # back in the band, then `sleep` more
    assert dark == [True]  # the DMD was blank while suspended

    # nothing happened while it was held: no plan message, no frame
    assert not [c for t, c in msgs if t_hold < t < t_release and c in PLAN_VERBS]
    primary = [e for e in docs.of("event") if streams[e["descriptor"]] == "primary"]
    assert not [e for e in primary if t_hold <= e["time"] <= t_release]
    assert not [e for e in primary if t_hold <= e["data"]["camera-timing-start"] <= t_release]
    assert any(e["time"] > t_release for e in primary)  # it went on after the release

    # and every frame is there exactly once: events, seq_nums, stream datums, zarr
    got = collections.Counter(
        (e["data"]["visit-t"], e["data"]["visit-p"], e["data"]["visit-kind"]) for e in primary
    )
    assert got == EXPECTED
    assert [e["seq_num"] for e in primary] == list(range(1, len(primary) + 1))
    ranges = [(d["indices"]["start"], d["indices"]["stop"]) for d in docs.of("stream_datum")]
    assert ranges == [(i, i + 1) for i in range(len(primary))]
    (resource,) = docs.of("stream_resource")
    stored = zarr.open_array(resource["uri"].removeprefix("file://localhost"), mode="r")
    assert stored.shape[0] == len(primary)

    # the baseline saw a chamber in its band at the start and at the end
    baseline = [e for e in docs.of("event") if streams[e["descriptor"]] == "baseline"]
    assert [36.5 < e["data"]["incubator"] < 37.5 for e in baseline] == [True, True]
