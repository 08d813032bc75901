"""Bad experiment descriptions are refused at once, with the field and the fix named.

Two kinds of refusal, both `ValueError`s (docs/reliability.md):

* `Phase`, `Channel`, `wait` (building one model) raise pydantic's ``ValidationError``
  naming the field;
* `optogenetic_plan`, `schedule` and `parallel` raise one `ExperimentError` listing every
  problem, before any document is emitted or any device moves.

The cases are those a user found by trying bad input (issue 12), then a property-based
fuzz: every description is accepted (and then its schedule is finite, in time order and
within the bounds) or refused in one of those two ways; never another exception.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ophyd.sim import SynAxis
from pydantic import ValidationError

from faro_bluesky.plans import (
    Channel,
    ExperimentError,
    Parallel,
    Phase,
    optogenetic_plan,
    parallel,
    schedule,
    wait,
)
from faro_bluesky.plans._limits import MAX_SECONDS, MAX_VISITS

NAN, INF = math.nan, math.inf
IMG = [Channel("miRFP", 10)]
STIM = [Channel("Cyan", 10, 10)]
FOVS = [(0.0, 0.0), (400.0, 0.0)]


def phase(**kw) -> Phase:
    return Phase(kw.pop("name", "p"), **{"interval": 1, "n_frames": 2, "channels": IMG, **kw})


_ONE_PHASE = object()


def refused(scope, *, fovs=FOVS, phases=_ONE_PHASE, **kw) -> list[str]:
    """The problems `optogenetic_plan` lists (it must refuse)."""
    if phases is _ONE_PHASE:
        phases = [phase()]
    with pytest.raises(ExperimentError) as info:
        optogenetic_plan(fovs, phases, microscope=scope, **kw)
    return info.value.problems


# ------------------------------------------------------------ models: finiteness and range
@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: phase(n_frames=10**9), "n_frames"),
        (lambda: phase(n_frames=MAX_VISITS + 1), "n_frames"),
        (lambda: phase(n_frames=True), "n_frames"),
        (lambda: phase(n_frames="10"), "n_frames"),
        (lambda: phase(n_frames=2.5), "n_frames"),
        (lambda: phase(interval=INF), "interval"),
        (lambda: phase(interval=NAN), "interval"),
        (lambda: phase(interval=-1), "interval"),
        (lambda: phase(interval=2 * MAX_SECONDS), "interval"),
        (lambda: phase(interval="5"), "interval"),
        (lambda: wait(INF), "seconds"),
        (lambda: wait(NAN), "seconds"),
        (lambda: wait(-1), "seconds"),
        (lambda: wait(0), "seconds"),
        (lambda: wait(True), "seconds"),
        (lambda: wait("60"), "seconds"),
        (lambda: wait(2 * MAX_SECONDS), "seconds"),
        (lambda: Channel("miRFP", NAN), "exposure"),
        (lambda: Channel("miRFP", INF), "exposure"),
        (lambda: Channel("miRFP", 10, INF), "power"),
        (lambda: Channel("miRFP", True), "exposure"),
        (lambda: phase(stim_channels=STIM, stim_frames=0, stim_exposure=NAN), "stim_exposure"),
        (lambda: phase(stim_channels=STIM, stim_frames=0, stim_exposure=(INF,)), "stim_exposure"),
        (lambda: phase(fovs=range(10**12)), "fovs"),
        (lambda: phase(fovs=["0"]), "fovs"),
        (lambda: phase(fovs=[True]), "fovs"),
        (lambda: phase(stim_channels=STIM, stim_frames=range(10**12)), "stim_frames"),
        (lambda: phase(metadata={"x": NAN}), "metadata"),
    ],
)
def test_models_refuse_non_finite_out_of_range_and_wrong_types(make, field):
    with pytest.raises(ValidationError, match=field):
        make()


def test_an_endless_frame_generator_is_refused_not_iterated():
    import itertools

    with pytest.raises(ValidationError, match="stim_frames"):
        phase(stim_channels=STIM, stim_frames=itertools.count())


# ------------------------------------------------------------ schedule bounds
def test_a_schedule_over_the_bound_is_refused_by_arithmetic_not_built(scope):
    many = [(float(x), 0.0) for x in range(0, 2000, 100)]  # 20 FOVs x 100,000 frames
    (problem,) = refused(scope, fovs=many, phases=[phase(n_frames=100_000)])
    assert "2,000,000 visits" in problem and f"{MAX_VISITS:,}" in problem
    assert "n_frames" in problem
    with pytest.raises(ExperimentError, match="visits"):
        schedule(many, [phase(n_frames=100_000)])


def test_an_experiment_longer_than_a_year_is_refused(scope):
    (problem,) = refused(scope, phases=[phase(n_frames=1000, interval=86_400)])
    assert "interval" in problem and "a year" in problem
    with pytest.raises(ExperimentError, match="a year"):
        schedule(FOVS, [phase(n_frames=2), wait(MAX_SECONDS), phase(n_frames=2)])


def test_huge_batches_are_refused_without_overflow():
    with pytest.raises(ExperimentError, match="a year"):
        schedule([(float(i), 0.0) for i in range(50)], [phase(n_frames=3)], time_per_fov=1e7)


# ------------------------------------------------------------ plan arguments
@pytest.mark.parametrize("value", [INF, -INF, NAN, 0, -1, "1", True, 2 * MAX_SECONDS])
def test_time_per_fov_must_be_a_finite_positive_number(scope, value):
    (problem,) = refused(scope, time_per_fov=value)
    assert problem.startswith("time_per_fov=")


@pytest.mark.parametrize("value", [-1, 0, NAN, INF, "5", True])
def test_mask_timeout_must_be_a_finite_positive_number(scope, value):
    # (None is the default: the analyzer's own mask_timeout, else 80 s)
    (problem,) = refused(scope, mask_timeout=value)
    assert problem.startswith("mask_timeout=")


@pytest.mark.parametrize(
    "fovs",
    [
        ["ab"],
        ["12"],
        [("a", 1)],
        [(NAN, 0)],
        [(0, INF)],
        [(1, 2, 3)],
        [(1,)],
        [{0: 1, 1: 2}],
        [{1, 2}],
        [(True, 0)],
        "abc",
        None,
        5,
        {"a": (0, 0)},
        np.zeros((2, 3)),
        np.zeros(2),
        [],
    ],
    ids=repr,
)
def test_bad_fovs_are_named_not_raw_type_errors(scope, fovs):
    problems = refused(scope, fovs=fovs)
    assert problems and all(p.startswith("fovs") for p in problems)


def test_fovs_as_an_array_of_positions_are_accepted(scope):
    plan = optogenetic_plan(np.array(FOVS), [phase()], microscope=scope)
    assert plan.fovs == FOVS


@pytest.mark.parametrize("phases", [None, "baseline", phase(), {"a": phase()}, 3], ids=repr)
def test_phases_must_be_a_list(scope, phases):
    (problem,) = refused(scope, phases=phases)
    assert problem.startswith("phases=") and "[Phase(" in problem


@pytest.mark.parametrize(
    ("element", "needle"),
    [
        (wait, "wait itself"),
        (Phase, "class Phase"),
        (lambda: None, "one argument"),
        ("stim", "is not a Phase"),
        (None, "is not a Phase"),
    ],
)
def test_elements_that_are_not_phases_or_decisions(scope, element, needle):
    (problem,) = refused(scope, phases=[phase(), element])
    assert problem.startswith("phases[1]") and needle in problem


def test_stim_mask_string_is_refused_not_silently_blank(scope):
    stim = phase(stim_channels=STIM, stim_frames=0)
    (problem,) = refused(scope, phases=[stim], stim_mask="all")
    assert problem.startswith("stim_mask='all'") and "True for the whole field" in problem


def test_stim_mask_nobody_uses_is_refused(scope):
    (problem,) = refused(scope, stim_mask=True)  # no phase stimulates
    assert "stim_mask" in problem and "ignored" in problem


def test_stim_mask_with_a_mask_providing_analyzer_is_refused(scope):
    class Provider:
        provides_masks = True

        def __call__(self, name, doc):
            pass

    stim = phase(stim_channels=STIM, stim_frames=0)
    problems = refused(
        scope, phases=[stim], stim_mask=np.ones((256, 256), bool), analyzer=Provider()
    )
    assert any(p.startswith("stim_mask is given but the analyzer") for p in problems)


@pytest.mark.parametrize("mask", [np.full((256, 256), NAN), np.ones(3), [["a"]], object()])
def test_stim_mask_must_be_a_finite_2d_mask(scope, mask):
    stim = phase(stim_channels=STIM, stim_frames=0)
    problems = refused(scope, phases=[stim], stim_mask=mask)
    assert any(p.startswith("stim_mask") for p in problems)


@pytest.mark.parametrize("analyzer", ["otsu", b"otsu", 3, object()], ids=repr)
def test_analyzer_that_would_never_run_is_refused(scope, analyzer):
    (problem,) = refused(scope, analyzer=analyzer)
    assert problem.startswith("analyzer=")


@pytest.mark.parametrize(("md", "needle"), [("notadict", "md="), ({1: "a"}, "md keys")])
def test_md_must_be_a_dict_with_string_keys(scope, md, needle):
    (problem,) = refused(scope, md=md)
    assert problem.startswith(needle)


def test_per_visit_must_be_a_list_of_readables(scope):
    det = SynAxis(name="det")
    assert refused(scope, per_visit=det)[0].startswith("per_visit=")
    assert refused(scope, per_visit="det")[0].startswith("per_visit=")
    assert refused(scope, per_visit=[3])[0].startswith("per_visit[0]")


def test_microscope_must_be_a_microscope():
    with pytest.raises(ExperimentError, match="microscope='scope' is not a Microscope"):
        optogenetic_plan(FOVS, [phase()], microscope="scope")


def test_one_error_lists_every_problem_before_any_document_or_move(RE, docs, scope):
    problems = refused(
        scope,
        fovs=[("a", 1), (0, 0), (NAN, 0)],
        phases=[phase(n_frames=10), "x", wait],
        md=3,
        mask_timeout=-1,
        time_per_fov=NAN,
        stim_mask="all",
        analyzer="otsu",
        stim_mode="sometimes",
    )
    for field in (
        "fovs[0]",
        "fovs[2]",
        "phases[1]",
        "phases[2]",
        "md=",
        "mask_timeout=",
        "time_per_fov=",
        "stim_mask=",
        "analyzer=",
        "stim_mode=",
    ):
        assert sum(p.startswith(field) for p in problems) == 1, field
    assert len(problems) == 10
    assert docs.docs == []
    assert scope.core.getXYPosition() == (0.0, 0.0)


def test_good_input_is_still_accepted(scope):
    stim = phase(stim_channels=STIM, stim_frames=[0, -1], fovs=[1])
    plan = optogenetic_plan(
        np.array(FOVS),
        (e for e in [phase(), wait(5), stim]),  # any iterable of elements
        microscope=scope,
        md={"sample": "HeLa"},
        time_per_fov=0.5,
        mask_timeout=5,
        stim_mask=np.True_,
    )
    assert len(plan.schedule) == 6 and plan.stim_mask is True


# ------------------------------------------------------------ property-based fuzz
def mostly(good: st.SearchStrategy, bad: st.SearchStrategy, odds: int = 8) -> st.SearchStrategy:
    """``bad`` once in ``odds``: with dozens of fields per description, some are all good.

    ``bad`` is drawn for the largest integer: hypothesis favours the smallest ones.
    """
    return st.integers(1, odds).flatmap(lambda k: bad if k == odds else good)


JUNK = st.sampled_from([None, True, False, "5", "abc", b"1", [], {}, (1,), object()])
BAD_NUMBER = st.one_of(
    st.sampled_from(
        [0, -0.0, -1, NAN, INF, -INF, 1e-300, 1e300, 10**9, 2**70, MAX_SECONDS / 2, 2 * MAX_SECONDS]
    ),
    st.floats(-1e6, 1e6),
    JUNK,
)
SECONDS = mostly(st.floats(0.01, 100), BAD_NUMBER, odds=20)
# n_frames is small or far over the bound, so an accepted schedule is small (fast fuzz).
N_FRAMES = mostly(
    st.integers(1, 5),
    st.one_of(st.integers(-2, 0), st.sampled_from([2.5, MAX_VISITS + 1, 10**9, 10**18]), JUNK),
    odds=20,
)
EXPOSURE = mostly(st.floats(1, 100), BAD_NUMBER, odds=20)
POWER = mostly(st.one_of(st.none(), st.floats(0, 10)), BAD_NUMBER, odds=20)
IMAGING = st.builds(
    lambda config, exposure, power: lambda: Channel(config, exposure, power),
    mostly(st.just("miRFP"), st.sampled_from(["", "GFP", 3]), odds=20),
    EXPOSURE,
    POWER,
)
FOV_INDICES = mostly(st.none(), st.one_of(st.lists(st.integers(-1, 4), max_size=3), JUNK), odds=20)
FRAMES = mostly(
    st.sampled_from([0, -1, [0, -1], range(0, 5, 2)]), st.one_of(st.integers(-9, 9), JUNK)
)


@st.composite
def phases(draw: st.DrawFn, fovs: st.SearchStrategy = FOV_INDICES) -> object:
    """A recipe (zero-argument callable) that builds a Phase, or raises building it."""
    kw = {
        "interval": draw(SECONDS),
        "n_frames": draw(N_FRAMES),
        "channels": draw(mostly(st.lists(IMAGING, min_size=1, max_size=1), JUNK, odds=20)),
        "fovs": draw(fovs),
        "axis_order": draw(mostly(st.sampled_from(["tp", "pt"]), st.just("xy"), odds=20)),
    }
    if draw(st.booleans()):
        stim = st.builds(lambda e: lambda: Channel("Cyan", e, 10), EXPOSURE)
        kw["stim_channels"] = draw(mostly(st.lists(stim, min_size=1, max_size=1), JUNK, 20))
        kw["stim_frames"] = draw(FRAMES)
    name = draw(mostly(st.sampled_from(["a", "b"]), st.sampled_from(["", 3]), odds=20))

    def build() -> Phase:
        made = {k: [c() for c in v] if k.endswith("channels") and isinstance(v, list) else v
                for k, v in kw.items()}  # fmt: skip
        return Phase(name, **made)

    return build


WAIT = st.builds(lambda s: lambda: wait(s), SECONDS)
NOT_AN_ELEMENT = st.sampled_from([lambda: "x", lambda: None, lambda: wait, lambda: Phase])
DECISION = st.just(lambda: lambda ctx: None)  # the schedule is known up to a decision


def branch(fov: int) -> st.SearchStrategy:
    """Recipes of one parallel branch: usually a phase on FOV ``fov``, perhaps waits."""
    own = phases(mostly(st.just([fov]), FOV_INDICES))
    return st.builds(lambda p, rest: [p, *rest], own, st.lists(st.one_of(WAIT, own), max_size=2))


PARALLEL = st.builds(
    lambda a, b, extra: lambda: parallel(*[[m() for m in br] for br in [a, b, *extra]]),
    branch(0),
    branch(1),
    mostly(st.just([]), st.lists(st.lists(st.one_of(phases(), WAIT), max_size=2), max_size=1)),
)
ELEMENT = mostly(st.one_of(phases(), phases(), WAIT, PARALLEL, DECISION), NOT_AN_ELEMENT)
POSITION = mostly(
    st.tuples(st.floats(-1000, 1000), st.floats(-1000, 1000)),
    st.one_of(st.tuples(BAD_NUMBER, BAD_NUMBER), st.tuples(st.floats(0, 1)), JUNK),
)
ARGUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "time_per_fov": mostly(st.one_of(st.none(), st.floats(0.01, 10)), BAD_NUMBER),
        "mask_timeout": mostly(st.floats(0.1, 100), BAD_NUMBER),
        "stim_mask": mostly(
            st.sampled_from([None, True]),
            st.sampled_from([False, "all", np.ones(3), np.ones((256, 256))]),
        ),
        "analyzer": mostly(st.none(), st.sampled_from(["otsu", 3])),
        "md": mostly(st.sampled_from([None, {}, {"a": 1}]), st.sampled_from(["notadict", {1: 2}])),
        "stim_mode": mostly(st.sampled_from(["current", "previous"]), st.just("sometimes")),
        "on_resume": mostly(st.sampled_from(["shift", "catch_up"]), st.just(1)),
        "per_visit": mostly(st.sampled_from([(), None]), st.sampled_from(["det", [3]])),
    },
)
FIELDS = (
    "fovs", "phases", "phase ", "Phase(", "n_frames", "interval", "channels", "stim_",
    "exposure", "power", "config", "name", "seconds", "time_per_fov", "mask_timeout",
    "analyzer", "md", "per_visit", "on_resume", "parallel()", "axis_order", "DMD", "branches",
)  # fmt: skip


def names_a_field(message: str) -> bool:
    return any(f in message for f in FIELDS)


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    fovs=mostly(st.lists(POSITION, min_size=1, max_size=3), st.one_of(st.just([]), JUNK)),
    recipe=st.lists(ELEMENT, min_size=1, max_size=4),
    arguments=ARGUMENTS,
)
def test_fuzz_every_description_is_accepted_sanely_or_refused_with_a_field(
    scope, fovs, recipe, arguments
):
    try:
        elements = [make() for make in recipe]
        plan = optogenetic_plan(fovs, elements, microscope=scope, **arguments)
    except ExperimentError as exc:
        event("refused by ExperimentError")
        assert exc.problems
        for problem in exc.problems:
            assert names_a_field(problem), problem
        return
    except ValidationError as exc:  # building one Phase / Channel / wait
        event("refused by ValidationError")
        assert names_a_field(str(exc)), str(exc)
        return
    event("accepted")
    sched = plan.schedule
    if sched is None:  # nothing known before the first decision
        assert not isinstance(elements[0], Phase | Parallel)
        return
    times = [v.time for v in sched]
    assert 0 < len(sched) <= MAX_VISITS
    assert all(math.isfinite(t) for t in times)
    assert times == sorted(times)
    assert 0 <= sched.duration <= MAX_SECONDS
    assert all(0 <= v.p < len(plan.fovs) for v in sched)
    assert all(j < v.index and s > 0 for v in sched for j, s in v.rests)
    assert scope.core.getXYPosition() == (0.0, 0.0)  # validation moves nothing
