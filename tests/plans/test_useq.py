"""Phases to and from useq-schema: exact round trips, useq's own timing, SLM stimulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import useq
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from faro_bluesky.plans import (
    Channel,
    Phase,
    phases_from_useq,
    phases_to_useq,
    schedule,
    stim_mask_from_useq,
    useq_events,
)

IMG = [Channel("miRFP", 50, power=3), Channel("ERKKTR", 20)]
STIM = [Channel("Cyan", 100, power=10)]


def reloaded(seq: useq.MDASequence) -> list[useq.MDASequence]:
    """``seq`` as it comes back from useq's YAML and from its JSON (defaults written out)."""
    return [
        useq.MDASequence.model_validate(yaml.safe_load(seq.yaml())),
        useq.MDASequence.model_validate_json(seq.model_dump_json()),
    ]


def visits(phases, fovs):
    """What the plan would do: (t, p, time, channel configs and exposures) per visit."""
    return [
        (v.t, v.p, v.time, v.channels, v.stim_channels, v.ref_channels)
        for v in schedule(fovs, phases)
    ]


# ------------------------------------------------------- Phase <-> MDASequence
def test_every_phase_field_survives_useq_and_its_files():
    phase = Phase(
        "stim",
        interval=5,
        n_frames=6,
        channels=[*IMG, Channel("BF", 5, group="Channel")],
        stim_channels=STIM,
        stim_frames=range(0, 6, 2),
        stim_exposure=[100, 150, 200],
        ref_channels=[Channel("DAPI", 5)],
        ref_frames=[-1],
        metadata={"cells": "HeLa"},
        fovs=[0, 2],
        axis_order="pt",
    )
    seq = phase.to_useq(fovs=[(0, 0), (10, 0), (20, 0)])
    # what useq understands is in useq's own fields ...
    assert [(c.config, c.exposure) for c in seq.channels] == [
        ("miRFP", 50),
        ("ERKKTR", 20),
        ("BF", 5),
    ]
    assert seq.time_plan == useq.TIntervalLoops(interval=5, loops=6)
    assert seq.axis_order == ("p", "t", "c")
    assert [(p.x, p.y) for p in seq.stage_positions] == [(0, 0), (10, 0), (20, 0)]
    # ... what it has no field for is under metadata["faro"], non-default values only
    (stored,) = seq.metadata["faro"]["phases"]
    assert set(stored) == {
        "name", "powers", "groups", "stim_channels", "stim_frames", "stim_exposure",
        "ref_channels", "ref_frames", "metadata", "fovs",
    }  # fmt: skip
    assert Phase.from_useq(seq) == phase
    for again in reloaded(seq):
        assert Phase.from_useq(again) == phase


def phase_strategy(channels):
    @st.composite
    def build(draw):
        n = draw(st.integers(1, 12))
        stim = draw(st.sets(st.integers(0, n - 1), max_size=n))
        ref = draw(st.sets(st.integers(0, n - 1), max_size=n))
        exposure = st.integers(1, 10**5).map(lambda k: k / 100)
        stim_exposure = None
        if stim:
            stim_exposure = draw(
                st.none() | exposure | st.lists(exposure, min_size=len(stim), max_size=len(stim))
            )
        return Phase(
            draw(st.text("abcxyz-", min_size=1, max_size=6)),
            # useq keeps time as a timedelta: exact to the microsecond
            interval=draw(st.integers(0, 10**8)) / 10**6,
            n_frames=n,
            channels=channels if channels is not None else draw(channel_lists),
            stim_channels=draw(channel_lists) if stim else [],
            stim_frames=stim,
            stim_exposure=stim_exposure,
            ref_channels=draw(channel_lists) if ref else [],
            ref_frames=ref,
            metadata=draw(st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=2)),
            fovs=draw(st.none() | st.sets(st.integers(0, 4), min_size=1)),
            axis_order=draw(st.sampled_from(["tp", "pt"])),
        )

    return build()


channel_lists = st.lists(
    st.builds(
        Channel,
        config=st.sampled_from(["miRFP", "ERKKTR", "BF"]),
        exposure=st.integers(1, 10**5).map(lambda k: k / 100),
        power=st.none() | st.integers(0, 100).map(float),
        group=st.none() | st.sampled_from(["Channel", "Filter"]),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(phase_strategy(None))
def test_any_phase_round_trips_through_useq(phase):
    seq = phase.to_useq()
    assert Phase.from_useq(seq) == phase
    for again in reloaded(seq):
        assert Phase.from_useq(again) == phase


@settings(max_examples=40, deadline=None)
@given(st.lists(phase_strategy(IMG), min_size=1, max_size=4))
def test_phases_round_trip_and_keep_useqs_multiphase_timing(phases):
    phases = [p.replace(axis_order="tp", fovs=None) for p in phases]
    seq = phases_to_useq(phases)
    assert isinstance(seq.time_plan, useq.MultiPhaseTimePlan) == (len(phases) > 1)
    assert phases_from_useq(seq) == phases
    # useq's own clock (a later phase starts one of its intervals after the last frame,
    # whose repeat it skips) is the plan's clock: same frames at the same times
    times = [v.time for v in schedule([(0.0, 0.0)], phases)]
    assert len(times) == sum(p.n_frames for p in phases)
    assert times == pytest.approx(list(seq.time_plan), abs=1e-6)


def test_what_one_sequence_cannot_hold_is_refused():
    a = Phase("a", interval=1, n_frames=2, channels=IMG)
    with pytest.raises(ValueError, match="one channel list"):
        phases_to_useq([a, a.replace(name="b", channels=IMG[:1])])
    with pytest.raises(ValueError, match="one axis order"):
        phases_to_useq([a, a.replace(axis_order="pt")])
    with pytest.raises(ValueError, match="waits and parallel"):
        phases_to_useq([a, useq])
    with pytest.raises(ValueError, match="phases_from_useq"):
        Phase.from_useq(phases_to_useq([a, a]))
    with pytest.raises(ValueError, match="empty"):
        phases_to_useq([])


# ------------------------------------------------------------- useq's examples
def docs_example(**changes) -> useq.MDASequence:
    """The experiment of useq-schema's documentation: three channels (one every third
    frame, one without exposure), a two-phase time plan, a z-stack, two positions of
    which one has its own sequence."""
    seq = useq.MDASequence(
        axis_order="tpcz",
        channels=[
            {"config": "Cy5", "exposure": 50},
            {"config": "FITC", "exposure": 100},
            {"config": "DAPI", "acquire_every": 3, "do_stack": False},
        ],
        time_plan={"phases": [{"interval": 3, "loops": 3}, {"duration": 2400, "interval": 10}]},
        z_plan={"range": 4, "step": 0.5},
        stage_positions=[
            (10, 20),
            {"x": 10, "y": 20, "sequence": {"z_plan": {"above": 10, "below": 0, "step": 1}}},
        ],
    )  # fmt: skip
    return seq.replace(**changes)


def test_useq_docs_example_is_refused_for_what_faro_would_not_do():
    with pytest.raises(ValueError) as info:
        phases_from_useq(docs_example())
    message = str(info.value)
    for problem in ("z and grid plans", "stage_positions[1] has its own sequence", "'DAPI'"):
        assert problem in message


def test_useq_docs_example_without_z_runs_the_same_events_as_useq():
    channels = [*docs_example().channels[:2], {"config": "DAPI", "exposure": 5, "acquire_every": 3}]
    seq = docs_example(z_plan=None, stage_positions=[(10, 20), (30, 20)], channels=channels)
    base, long = phases_from_useq(seq)
    assert (base.name, base.n_frames, base.interval) == ("phase0", 3, 3.0)
    assert (long.name, long.n_frames, long.interval) == ("phase1", 240, 10.0)  # 241 - 1
    assert [c.config for c in base.ref_channels] == ["DAPI"]
    assert base.ref_frames == (0,) and long.ref_frames[:3] == (0, 3, 6)  # global t % 3

    def summary(events):
        return [
            (e.index["t"], e.index["p"], e.channel.config, e.exposure, e.min_start_time)
            for e in events
        ]

    # useq's own iteration and faro's schedule give the same frames in the same order
    ours = useq_events([base, long], [(10, 20), (30, 20)])
    assert summary(ours) == summary(seq)  # whole seconds: exact
    assert len(ours) == 243 * 2 * 2 + 81 * 2


# ------------------------------------------------------------- SLM stimulation
def stim_phase(**kw):
    return Phase(
        "stim",
        interval=2,
        n_frames=5,
        channels=IMG,
        stim_channels=STIM,
        stim_frames=[1, 3],
        **kw,
    )


def test_stimulation_is_an_slm_image_event_and_comes_back():
    phase = stim_phase(stim_exposure=[100, 250])
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    events = useq_events([phase], [(0, 0), (5, 0)], stim_mask=mask)
    stims = [e for e in events if e.slm_image is not None]
    assert [(e.index["t"], e.index["p"]) for e in stims] == [(1, 0), (1, 1), (3, 0), (3, 1)]
    assert [e.channel.config for e in stims] == ["Cyan"] * 4
    assert [e.slm_image.exposure for e in stims] == [100, 100, 250, 250]  # per frame
    assert all(np.array_equal(e.slm_image, mask) for e in stims)
    assert all(e.metadata["faro"]["power"] == 10 for e in stims)
    np.testing.assert_array_equal(stim_mask_from_useq(events), mask)

    # a useq sequence knows no stimulation: the events bring it back (not the imaging
    # channels' powers: without metadata["faro"] useq has none)
    plain = phase.to_useq().replace(metadata={})
    rebuilt = Phase.from_useq(plain, "stim", events=events)
    expected = phase.replace(channels=[c.replace(power=None) for c in phase.channels])
    assert visits([rebuilt], [(0, 0), (5, 0)]) == visits([expected], [(0, 0), (5, 0)])
    assert useq_events([rebuilt], [(0, 0), (5, 0)], stim_mask=mask) == useq_events(
        [expected], [(0, 0), (5, 0)], stim_mask=mask
    )
    assert Phase.from_useq(plain, "stim").stim_frames == ()  # without them: none


def test_hand_made_slm_events_become_the_phase_stimulation():
    seq = useq.MDASequence(
        channels=[{"config": "miRFP", "exposure": 50}], time_plan={"interval": 1, "loops": 6}
    )
    shot = {"channel": "Cyan", "exposure": 80, "slm_image": True}
    events = [*seq, useq.MDAEvent(index={"t": 2}, **shot), useq.MDAEvent(index={"t": 5}, **shot)]
    phase = Phase.from_useq(seq, "opto", events=events)
    assert phase.stim_frames == (2, 5)
    assert phase.stim_channels == (Channel("Cyan", 80),)
    assert phase.stim_exposure is None
    assert stim_mask_from_useq(events) is None  # True: the whole field, the plan's default


@pytest.mark.parametrize(
    ("events", "match"),
    [
        ([useq.MDAEvent(index={"t": 1}, exposure=5, slm_image=True)], "no channel"),
        ([useq.MDAEvent(index={"t": 1}, channel="Cyan", slm_image=True)], "no exposure"),
        (
            [
                useq.MDAEvent(index={"t": 1, "p": 0}, channel="miRFP", exposure=5),
                useq.MDAEvent(index={"t": 1, "p": 1}, channel="miRFP", exposure=5),
                useq.MDAEvent(index={"t": 1, "p": 0}, channel="Cyan", exposure=5, slm_image=True),
            ],
            "every FOV it images",
        ),
        (
            [
                useq.MDAEvent(index={"t": 1}, channel="Cyan", exposure=5, slm_image=True),
                useq.MDAEvent(index={"t": 2}, channel="UV", exposure=5, slm_image=True),
            ],
            "one recipe",
        ),
    ],
)
def test_slm_events_faro_cannot_follow_are_refused(events, match):
    seq = useq.MDASequence(
        channels=[{"config": "miRFP", "exposure": 5}], time_plan={"interval": 1, "loops": 3}
    )
    with pytest.raises(ValueError, match=match):
        Phase.from_useq(seq, events=events)


def test_stim_mask_from_useq_refuses_what_is_not_one_fixed_mask():
    shot = {"channel": "Cyan", "exposure": 5}
    a, b = np.eye(4, dtype=bool), np.ones((4, 4), bool)
    assert stim_mask_from_useq([useq.MDAEvent(**shot)]) is None
    with pytest.raises(ValueError, match="differ"):
        stim_mask_from_useq(
            [useq.MDAEvent(slm_image=a, **shot), useq.MDAEvent(slm_image=b, **shot)]
        )
    with pytest.raises(ValueError, match="lights no mirror"):
        stim_mask_from_useq([useq.MDAEvent(slm_image=0, **shot)])
    assert math.isclose(stim_mask_from_useq([useq.MDAEvent(slm_image=a * 255, **shot)]).sum(), 4)


def test_pymmcore_plus_runs_the_events_on_the_sim_microscope(scope):
    # the events are the ordinary useq kind: pymmcore-plus's own engine executes them,
    # putting the mask on the microscope's SLM for each stimulation
    core = scope.core
    slm = core.getSLMDevice()
    mask = np.zeros((core.getSLMHeight(slm), core.getSLMWidth(slm)), bool)
    mask[:5, :5] = True
    phase = stim_phase().replace(interval=0, n_frames=2, stim_frames=[1])
    events = useq_events([phase], [(0.0, 0.0)], stim_mask=mask)
    frames = []
    core.mda.events.frameReady.connect(lambda image, event, *_: frames.append(event))
    core.mda.run(events)
    assert [e.index for e in frames] == [e.index for e in events]
    assert [e.channel.config for e in frames] == ["miRFP", "ERKKTR", "miRFP", "ERKKTR", "Cyan"]
    assert core.getSLMImage(slm).astype(bool).sum() == mask.sum()  # the last one shown
