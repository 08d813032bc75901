"""Background runs: the caller gets a RunHandle at once and controls the run through it.

The run is held at a *gate* (a ``wait_for`` on an asyncio event, inserted before the first
checkpoint after a given number of frames) so that every assertion about "still running"
or "frames at the pause" is exact, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import collections
import threading

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
import zarr
from bluesky import RunEngine
from bluesky.utils import SigintHandler

from faro_bluesky.callbacks import StatusCallback
from faro_bluesky.plans import Channel, Phase, RunState, optogenetic_plan, start_background
from faro_bluesky.sim import sim_microscope

FOVS = [(0.0, 0.0), (400.0, 0.0)]
IMG = [Channel("miRFP", 5)]
PHASE = Phase(
    "stim",
    interval=0.05,
    n_frames=3,
    channels=IMG,
    stim_channels=[Channel("Cyan", 5, 10)],
    stim_frames=(1,),
)


@pytest.fixture
def small_scope(RE, tmp_path):
    microscope = sim_microscope(
        seed=3, data_dir=tmp_path / "data", image_shape=(96, 96), dmd_calibrated=True
    )
    yield microscope
    microscope.close()


class Frames:
    """Counts frames (stream ``primary``) from documents; notes any taken while paused."""

    def __init__(self, RE: RunEngine) -> None:
        self.RE = RE
        self.primary: set[str] = set()
        self.events: list[dict] = []
        self.while_paused = 0
        RE.subscribe(self)

    def __call__(self, name: str, doc: dict) -> None:
        if name == "descriptor" and doc["name"] == "primary":
            self.primary.add(doc["uid"])
        elif name == "event" and doc["descriptor"] in self.primary:
            self.events.append(doc)
            self.while_paused += self.RE.state == "paused"

    def keys(self) -> collections.Counter:
        return collections.Counter(
            (e["data"]["visit-t"], e["data"]["visit-p"], e["data"]["visit-kind"])
            for e in self.events
        )


class Gate:
    """Holds the plan before its first checkpoint after ``after`` frames, until opened."""

    def __init__(self, RE: RunEngine, frames: Frames, after: int) -> None:
        self.RE, self.frames, self.after = RE, frames, after
        self.reached = threading.Event()
        self.frames_at_gate: int | None = None
        self._open = asyncio.Event()
        self._fired = False

    def wrap(self, plan):
        def insert(msg):
            if msg.command != "checkpoint" or self._fired or len(self.frames.events) < self.after:
                return None, None
            self._fired = True

            def held():
                self.frames_at_gate = len(self.frames.events)
                self.reached.set()
                yield from bps.wait_for([self._open.wait])
                return (yield msg)

            return held(), None

        return bpp.plan_mutator(plan, insert)

    def open(self) -> None:
        self.RE.loop.call_soon_threadsafe(self._open.set)


def expected() -> collections.Counter:
    keys = [(t, p, "image") for t in range(3) for p in range(2)]
    return collections.Counter(keys + [(1, p, "stim") for p in range(2)])


def check_on_disk(docs, frames: Frames) -> None:
    assert [e["seq_num"] for e in frames.events] == list(range(1, len(frames.events) + 1))
    (resource,) = docs.of("stream_resource")
    array = zarr.open_array(resource["uri"].removeprefix("file://localhost"), mode="r")
    assert array.shape[0] == len(frames.events)  # every frame on disk, once


def test_pause_resume_in_background(RE, docs, small_scope):
    frames = Frames(RE)
    status = StatusCallback(RE=RE, tick_s=None)
    RE.subscribe(status)
    gate = Gate(RE, frames, after=3)
    changes: list[RunState] = []
    paused = threading.Event()

    plan = optogenetic_plan(FOVS, [PHASE], microscope=small_scope)
    handle = start_background(RE, gate.wrap(plan))
    handle.statusChanged.connect(lambda s: (changes.append(s), s == "paused" and paused.set()))
    assert handle.status() == RunState.RUNNING  # returned while the RunEngine runs
    assert gate.reached.wait(10)
    with pytest.raises(TimeoutError):
        handle.wait(timeout=0)  # held at the gate: it cannot have finished
    assert handle.status() == RunState.RUNNING

    handle.pause()  # deferred: lands at the checkpoint behind the gate
    assert handle.status() == RunState.PAUSING
    gate.open()
    assert paused.wait(10)
    assert handle.status() == RunState.PAUSED and RE.state == "paused"
    assert status.snapshot.state == "paused"  # the StatusCallback follows the background run
    assert small_scope.core.getSLMImage().max() == 0  # DMD dark while paused
    n = len(frames.events)
    assert n == gate.frames_at_gate  # the pause landed right at the gate
    threading.Event().wait(0.2)  # stay paused a known while (the thing under test)
    assert len(frames.events) == n and frames.while_paused == 0

    handle.resume()
    result = handle.wait(timeout=30)
    assert result.exit_status == "success" and not result.interrupted
    assert handle.status() == RunState.DONE
    assert frames.keys() == expected()  # every frame exactly once
    check_on_disk(docs, frames)
    assert result.run_start_uids == handle.uids and len(handle.uids) == 1
    assert changes == ["pausing", "paused", "running", "done"]
    snap = status.snapshot
    assert snap.state == "done" and (snap.frames_received, snap.stim_frames) == (6, 2)


@pytest.mark.parametrize(
    ("how", "exit_status", "final"),
    [
        ("stop", "success", "stopped"),
        ("abort", "abort", "aborted"),
        ("cancel", "success", "stopped"),
    ],
)
def test_ending_mid_run_keeps_every_frame_taken(RE, docs, small_scope, how, exit_status, final):
    frames = Frames(RE)
    gate = Gate(RE, frames, after=4)
    plan = optogenetic_plan(FOVS, [PHASE], microscope=small_scope)
    handle = start_background(RE, gate.wrap(plan))
    assert gate.reached.wait(10)
    getattr(handle, how)()  # stop/abort: at once (interrupts the gate); cancel: at the checkpoint
    assert handle.status() == RunState.STOPPING
    gate.open()
    result = handle.wait(timeout=30)
    assert result.exit_status == exit_status and result.interrupted
    assert handle.status() == final
    (stop,) = docs.of("stop")
    assert stop["exit_status"] == exit_status
    assert len(frames.events) == gate.frames_at_gate  # nothing after the request
    check_on_disk(docs, frames)  # ...and everything taken is in the documents and on disk
    assert small_scope.core.getSLMImage().max() == 0
    handle.stop()  # ending an ended run is harmless
    with pytest.raises(RuntimeError, match="ended"):
        handle.resume()


def test_the_plans_exception_surfaces_from_wait(RE, docs):
    def broken():
        yield from bps.checkpoint()
        raise ValueError("segmenter exploded")

    handle = start_background(RE, bpp.run_wrapper(broken()))
    with pytest.raises(ValueError, match="segmenter exploded"):
        handle.wait(timeout=10)
    assert handle.status() == RunState.FAILED
    assert docs.of("stop")[0]["exit_status"] == "fail"
    with pytest.raises(TypeError, match="no extend"):
        handle.extend(PHASE)
    assert RE.state == "idle" and RE.state_hook is None  # the RunEngine is as it was
    assert RE(bpp.run_wrapper(bps.null())).exit_status == "success"


def test_extend_a_running_experiment(RE, small_scope):
    frames = Frames(RE)
    arrived, go = threading.Event(), threading.Event()

    def decide(ctx):  # holds the plan while the notebook extends it
        arrived.set()
        go.wait(10)

    first = Phase("first", interval=0.05, n_frames=2, channels=IMG)
    plan = optogenetic_plan(FOVS[:1], [first, decide], microscope=small_scope)
    handle = start_background(RE, plan)
    assert arrived.wait(10)
    handle.extend(Phase("more", interval=0.05, n_frames=2, channels=IMG))
    go.set()
    assert handle.wait(timeout=30).exit_status == "success"
    phases = [e["data"]["visit-phase"] for e in frames.events]
    assert phases == ["first", "first", "more", "more"]
    with pytest.raises(RuntimeError, match="ended"):
        handle.extend(first)
    with pytest.raises(RuntimeError, match="last visit"):
        plan.extend(first)  # the plan itself refuses once past its last visit


def test_ctrl_c_runengine_and_an_outside_resume():
    """A RunEngine with bluesky's SIGINT handler runs in the background (the handler is
    left out meanwhile, then put back); a resume by someone else is followed."""
    RE = RunEngine()  # default context managers, call_returns_result=False
    during = RE._during_task
    opened = asyncio.Event()

    def plan():
        yield from bps.wait_for([opened.wait])
        yield from bps.checkpoint()
        yield from bps.null()

    handle = start_background(RE, bpp.run_wrapper(plan()))
    assert not any(m is SigintHandler for m in RE.context_managers)
    with pytest.raises(RuntimeError, match="already running"):
        start_background(RE, bpp.run_wrapper(plan()))
    paused = threading.Event()
    handle.statusChanged.connect(lambda s: s == "paused" and paused.set())
    handle.pause(defer=False)
    assert paused.wait(10)
    outside = threading.Thread(target=RE.resume)  # e.g. the status widget's Resume
    outside.start()
    RE.loop.call_soon_threadsafe(opened.set)
    result = handle.wait(timeout=10)
    outside.join(10)
    assert result.exit_status == "success" and result.run_start_uids == handle.uids
    assert handle.status() == RunState.DONE
    assert RE.context_managers == [SigintHandler] and RE._during_task is during


def test_an_outside_stop_is_followed(RE, docs):
    """``RE.stop()`` typed (or a widget's Stop) while the handle runs the plan."""
    opened = asyncio.Event()

    def plan():
        yield from bps.wait_for([opened.wait])
        yield from bps.null()

    handle = start_background(RE, bpp.run_wrapper(plan()))
    RE.stop()  # the run is held at the gate: this is mid-run
    result = handle.wait(timeout=10)
    RE.loop.call_soon_threadsafe(opened.set)  # lets bluesky's orphaned wait_for task end
    assert (result.exit_status, result.interrupted) == ("success", True)
    assert handle.status() == RunState.STOPPED
    assert docs.of("stop")[0]["exit_status"] == "success"
