"""Experiment models: faro's RTMSequence/Channel/wait/combine(axis=p) contracts (B1-B4, H2)."""

from __future__ import annotations

import json

import pytest
import useq
from pydantic import ValidationError

from faro_bluesky.plans._errors import ExperimentError
from faro_bluesky.plans._model import (
    Channel,
    Parallel,
    Phase,
    Wait,
    experiment_from_json,
    experiment_to_json,
    parallel,
    wait,
)
from faro_bluesky.plans._useq_import import fovs_from_useq

IMG = [Channel("miRFP", 50)]
STIM = [Channel("Cyan", 100, 10)]


def phase(name: str = "p", n: int = 5, **kw) -> Phase:
    kw.setdefault("interval", 1.0)
    kw.setdefault("channels", IMG)
    return Phase(name, n_frames=n, **kw)


# ------------------------------------------------------------------ Channel
def test_channel_positional_args_map_to_fields():
    assert Channel("miRFP", 50) == Channel(config="miRFP", exposure=50)
    ch = Channel("Cyan", 100, 10, "LED")
    assert (ch.config, ch.exposure, ch.power, ch.group) == ("Cyan", 100.0, 10.0, "LED")


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("a", 1, 2, "g", 5), {}, TypeError),  # too many positionals
        (("a", 1), {"config": "b"}, TypeError),  # given twice
        (("a", 0), {}, ValidationError),  # exposure must be > 0
        (("a", 10, -1), {}, ValidationError),  # power >= 0
        (("a", 10), {"colour": "red"}, ValidationError),  # extra fields forbidden
    ],
)
def test_channel_rejects_bad_input(args, kwargs, error):
    with pytest.raises(error):
        Channel(*args, **kwargs)


def test_channels_must_be_channel_or_dict():
    p = phase(channels=[{"config": "miRFP", "exposure": 50}])
    assert p.channels == (Channel("miRFP", 50),)
    with pytest.raises(ValidationError, match=r"channels\[0\]='miRFP' is not a Channel"):
        phase(channels=["miRFP"])
    with pytest.raises(ValidationError, match="at least 1"):
        phase(channels=[])


def test_models_are_frozen_and_replace_revalidates():
    p = phase()
    with pytest.raises(ValidationError):
        p.n_frames = 3
    assert p.replace(n_frames=3).n_frames == 3
    with pytest.raises(ValidationError):
        p.replace(n_frames=0)


# ------------------------------------------------------------ frame specs
@pytest.mark.parametrize(
    ("spec", "n", "expected"),
    [
        (3, 5, (3,)),
        ({1, 3}, 5, (1, 3)),
        (frozenset({2}), 5, (2,)),
        ([3, 1, 3], 5, (1, 3)),
        (range(2, 5), 5, (2, 3, 4)),
        (range(0, 10, 2), 10, (0, 2, 4, 6, 8)),
        (set(range(0, 10, 2)), 10, (0, 2, 4, 6, 8)),
        ({-1}, 5, (4,)),
        ({-1}, 3, (2,)),
        ({-2}, 10, (8,)),
        ({0, -1}, 5, (0, 4)),
        ({0, -5}, 5, (0,)),
    ],
)
@pytest.mark.parametrize("kind", ["stim", "ref"])
def test_frame_specs_resolve_to_sorted_unique_frames(kind, spec, n, expected):
    p = phase(n=n, **{f"{kind}_frames": spec, f"{kind}_channels": STIM})
    assert getattr(p, f"{kind}_frames") == expected
    json.dumps(p.model_dump(mode="json"))


@pytest.mark.parametrize("spec", [5, -6, {0, 7}])
def test_frame_out_of_range_names_field_and_range(spec):
    with pytest.raises(ValidationError, match=r"stim_frames \[.*\] out of range.*-5\.\.4"):
        phase(n=5, stim_frames=spec, stim_channels=STIM)


@pytest.mark.parametrize("spec", [1.5, "3", [True], {"a": 1}])
def test_frame_spec_rejects_non_integers(spec):
    with pytest.raises(ValidationError, match="ref_frames"):
        phase(ref_frames=spec, ref_channels=IMG)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"stim_frames": {1}}, "stim_frames given but stim_channels is empty"),
        ({"stim_channels": STIM}, "stim_channels given but stim_frames is empty"),
        ({"ref_frames": {1}}, "ref_frames given but ref_channels is empty"),
        ({"ref_channels": IMG}, "ref_channels given but ref_frames is empty"),
        ({"stim_exposure": 10}, "stim_exposure given but stim_frames is empty"),
    ],
)
def test_frames_and_channels_come_together(kw, message):
    with pytest.raises(ValidationError, match=message):
        phase(**kw)


# ------------------------------------------------------------ stim exposure
def test_stim_exposure_scalar_overrides_every_stim_channel():
    p = phase(stim_channels=[*STIM, Channel("UV", 5)], stim_frames={1, 3}, stim_exposure=42)
    assert [c.exposure for c in p.stim_channels_at(1)] == [42, 42]
    assert p.stim_channels_at(0) == ()


def test_stim_exposure_sequence_maps_onto_sorted_resolved_frames():
    p = phase(n=5, stim_channels=STIM, stim_frames={-1, 1}, stim_exposure=[10, 20])
    assert p.stim_frames == (1, 4)
    assert p.stim_channels_at(1)[0].exposure == 10
    assert p.stim_channels_at(4)[0].exposure == 20
    assert p.stim_channels_at(-1)[0].exposure == 20


def test_stim_exposure_length_must_match_stim_frames():
    with pytest.raises(ValidationError, match=r"stim_exposure length \(3\) must match .* \(2"):
        phase(stim_channels=STIM, stim_frames={1, 2}, stim_exposure=[1, 2, 3])


def test_exposure_override_keeps_power_and_group():
    stim = Channel("Cyan", 100, 10, group="LED")
    (ch,) = phase(stim_channels=[stim], stim_frames=0, stim_exposure=20).stim_channels_at(0)
    assert (ch.config, ch.exposure, ch.power, ch.group) == ("Cyan", 20, 10, "LED")


# ------------------------------------------------------------ other Phase rules
@pytest.mark.parametrize(
    ("interval", "n", "ok"), [(0, 1, True), (0, 3, True), (2.5, 3, True), (-1, 1, False)]
)
def test_interval_zero_is_as_fast_as_possible_negative_is_refused(interval, n, ok):
    if ok:
        assert phase(n=n, interval=interval).n_frames == n
    else:
        with pytest.raises(ValidationError, match="interval"):
            phase(n=n, interval=interval)


def test_plus_raises_type_error_pointing_to_lists_and_parallel():
    for a, b in [(phase(), phase()), (phase(), wait(1)), (wait(1), phase())]:
        with pytest.raises(TypeError, match=r"list.*parallel"):
            a + b


def test_metadata_must_be_json_serialisable():
    assert phase(metadata={"stim_fraction": 0.5}).metadata == {"stim_fraction": 0.5}
    with pytest.raises(ValidationError, match="JSON"):
        phase(metadata={"x": object()})


@pytest.mark.parametrize(
    ("spec", "expected"), [(None, None), (2, (2,)), ({3, 1}, (1, 3)), ([2, 0, 2], (0, 2))]
)
def test_phase_fovs_normalised(spec, expected):
    assert phase(fovs=spec).fovs == expected


@pytest.mark.parametrize("spec", [[], [-1]])
def test_phase_fovs_rejects_empty_and_negative(spec):
    with pytest.raises(ValidationError, match="fovs"):
        phase(fovs=spec)


def test_wait_needs_positive_seconds():
    assert wait(10) == Wait(seconds=10)
    with pytest.raises(ValidationError):
        wait(0)


# ------------------------------------------------------------ useq
def test_phase_from_useq():
    seq = useq.MDASequence(
        time_plan={"interval": 2, "loops": 5},
        channels=[{"config": "miRFP", "exposure": 50}],
        stage_positions=[(1, 2), (3, 4, 5)],
    )
    p = Phase.from_useq(seq, stim_channels=STIM, stim_frames={-1})
    assert (p.name, p.interval, p.n_frames, p.axis_order) == ("phase", 2.0, 5, "tp")
    assert p.channels == (Channel("miRFP", 50),)
    assert p.stim_frames == (4,)
    assert fovs_from_useq(seq) == [(1.0, 2.0), (3.0, 4.0)]


def test_phase_from_useq_without_time_plan_and_errors():
    seq = useq.MDASequence(channels=[{"config": "BF", "exposure": 5}], axis_order="ptc")
    p = Phase.from_useq(seq, "ref")
    assert (p.name, p.n_frames, p.interval, p.axis_order) == ("ref", 1, 0.0, "pt")
    with pytest.raises(ValueError, match="no exposure"):
        Phase.from_useq(useq.MDASequence(channels=["BF"]))


# ------------------------------------------------------------ parallel
def test_parallel_accepts_phases_waits_and_lists():
    a, b = phase("a", fovs=[0]), phase("b", fovs=[1])
    par = parallel(a, [wait(5), b])
    assert par.branches == ((a,), (Wait(5), b))
    assert par.phases() == [a, b]


@pytest.mark.parametrize(
    ("branches", "message"),
    [
        ((phase(fovs=[0]),), "at least 2 branches"),
        ((phase(fovs=[0]), phase()), "has no fovs"),
        ((phase(fovs=[0, 1]), phase(fovs=[1, 2])), "both use FOV 1"),
        ((phase(fovs=[0]), wait(3)), "branch 1 has no Phase"),
        ((phase(fovs=[0]), [phase(fovs=[1]), "x"]), "is not a Phase"),
        (
            (phase(fovs=[0]), phase(fovs=[1], channels=[Channel("GFP", 10)])),
            r"matching imaging channels.*\['miRFP'\].*\['GFP'\]",
        ),
    ],
)
def test_parallel_rules(branches, message):
    with pytest.raises(ExperimentError, match=message):
        parallel(*branches)


def test_parallel_rejects_nesting():
    inner = parallel(phase(fovs=[0]), phase(fovs=[1]))
    with pytest.raises(ExperimentError, match="nested"):
        parallel(inner, phase(fovs=[2]))


def test_parallel_reports_every_problem_at_once():
    with pytest.raises(ExperimentError) as info:
        parallel(phase(fovs=[0]), phase(), phase(fovs=[0], channels=[Channel("GFP", 1)]))
    assert len(info.value.problems) == 3


def test_parallel_matching_multichannel_ok():
    two = [Channel("miRFP", 50), Channel("BF", 5)]
    par = parallel(phase(fovs=[0], channels=two), phase(fovs=[1], channels=two, interval=3))
    assert par.problems() == []


# ------------------------------------------------------------ JSON
def test_experiment_json_round_trip():
    exp = [
        phase("base", n=3, ref_channels=IMG, ref_frames={-1}, metadata={"k": [1, 2]}),
        wait(30),
        parallel(
            phase("a", fovs=[0], stim_channels=STIM, stim_frames=range(0, 5, 2)),
            [wait(2), phase("b", fovs={1, 2}, stim_channels=STIM, stim_frames=1, stim_exposure=7)],
        ),
    ]
    data = experiment_to_json(exp)
    assert [d["type"] for d in data] == ["phase", "wait", "parallel"]
    assert data[2]["branches"][1][0]["type"] == "wait"
    text = json.dumps(data)
    assert experiment_from_json(json.loads(text)) == exp
    assert Parallel.model_validate({"branches": data[2]["branches"]}) == exp[2]


def test_experiment_json_records_decisions_but_cannot_rebuild_them():
    def choose(ctx):
        return None

    data = experiment_to_json([phase(), choose])
    assert data[1] == {"type": "decision", "name": choose.__qualname__}
    with pytest.raises(ValueError, match="decision"):
        experiment_from_json(data)
