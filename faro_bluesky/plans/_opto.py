"""`optogenetic_plan`: one bluesky run for a whole multi-phase, multi-FOV experiment."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import bluesky.preprocessors as bpp
from bluesky import Msg
from bluesky.protocols import Readable
from bluesky.utils import MsgGenerator, RunEngineControlException
from ophyd_async.core import TriggerInfo
from ophyd_async.plan_stubs import ensure_connected

from ..devices import FixedMask, MaskFacet, Microscope, PatternedLight, SummaryFacet
from ..schema import (
    MASK,
    MISSED,
    VISIT,
    DocumentSink,
    Stream,
    SummarySource,
    mask_source,
)
from ._ahead import NextVisit
from ._arguments import check_arguments
from ._bursts import burst_at
from ._errors import DeviceFault, ExperimentError
from ._heap import frozen_heap
from ._metadata import optogenetic_start
from ._model import Parallel, Phase, Wait
from ._schedule import Schedule, Visit, schedule, schedule_problems
from ._session import session_analyzer, session_microscope
from ._stubs import (
    expose_at,
    frame_devices,
    move,
    read_event,
    record_summaries,
    wait_until,
)
from ._tags import MissedVisit, PauseClock, VisitTag
from ._validate import calibration_warnings, timing_warnings, validate_experiment
from ._visit import frame_readables, prepare_visit, visit

logger = logging.getLogger(__name__)

Element = Phase | Wait | Parallel | Callable[["DecisionContext"], Any]
DEFAULT_MASK_TIMEOUT = 80.0  # s, faro's default
# s before a visit is due that the plan wakes and sends its first trigger, which the camera's
# thread holds until the due time (a plain sleep there: ~0.5 ms late). The way from the
# event loop's wake-up to that thread is ~2 ms on a busy machine but 15-27 ms after a
# second of idle on an idle VM (measured, docs/decisions/0062): the lead covers that
_TRIGGER_LEAD_S = 0.03


@dataclass
class DecisionContext:
    """What a decision callable in the phase list sees when its turn comes."""

    plan: OptogeneticPlan
    """The running plan (its schedule so far, extend/replace_pending)."""
    visits_done: int
    """How many visits have run."""
    microscope: Microscope
    analyzer: Any
    results: dict[str, Any] = field(default_factory=dict)
    """Free space for decisions to keep notes across the run."""


class OptogeneticPlan(Generator[Msg, Any, str]):
    """The experiment plan: a generator of messages (``RE(plan)``) you can edit as it runs.

    Built by `optogenetic_plan`; validation has already happened when you hold one.
    It is a real generator (``send``/``throw``/``close``), so bluesky's preprocessors
    (``bpp.baseline_wrapper(plan, ...)``) and ``yield from plan`` in users' plans work.
    `extend` and `replace_pending` may be called from any thread while the RunEngine runs
    it; the changes are validated first and take effect at the next visit.
    """

    def __init__(
        self,
        fovs: Sequence[Sequence[float]],
        phases: Sequence[Element],
        *,
        microscope: Microscope,
        analyzer: Any,
        stim_mode: str,
        on_resume: str,
        per_visit: Sequence[Readable],
        md: dict | None,
        time_per_fov: float | None,
        stim_mask: Any,
        mask_timeout: float | None,
        settle_timeout: float = 60.0,
        patterned_light: PatternedLight | str | None = None,
    ) -> None:
        # Every argument is checked (type, finiteness, range) before anything is built;
        # refused ones become placeholders so that _check still lists every problem.
        args = check_arguments(
            fovs,
            phases,
            analyzer=analyzer,
            per_visit=per_visit,
            md=md,
            time_per_fov=time_per_fov,
            stim_mask=stim_mask,
            mask_timeout=mask_timeout,
        )
        self.fovs: list[tuple[float, float]] = args.fovs  # type: ignore[assignment]
        self.microscope = microscope
        self.analyzer = args.analyzer
        self.stim_mode = stim_mode
        self.on_resume = on_resume
        self.per_visit = args.per_visit
        self.md = args.md
        self.time_per_fov = args.time_per_fov
        self.stim_mask = args.stim_mask
        self.mask_timeout = args.mask_timeout
        self.settle_timeout = settle_timeout
        self.patterned_light = patterned_light
        """The light asked for (a device, a key of ``patterned_lights``, None: default)."""
        self.run_warnings: list[str] = []
        """What the run was asked to do and never did (also the stop document's reason)."""
        self.max_consecutive_misses = 3
        """Visits missed in a row (a device failing even after retries) that end the run."""
        self._lock = threading.Lock()
        self._elements: list[Element] = []
        self._started = 0  # elements whose visits have begun (can't be replaced)
        self._schedule: Schedule | None = None
        self.visits_done = 0
        self._gen: MsgGenerator[str] | None = None
        self._last_visit_run = False  # past its last visit: edits would be ignored
        self._check(args.phases, args.problems)
        self.light: PatternedLight | None = microscope.patterned_light(patterned_light)
        """The patterned light that projects the masks (None: whole-field light only)."""
        self._elements = list(args.phases or ())
        self._schedule = self._build_schedule()
        self.warnings = timing_warnings(
            len(self.fovs),
            self._elements,
            time_per_fov=time_per_fov,
            stim_mode=stim_mode,
            fovs=self.fovs,
            stage_speed_um_s=getattr(microscope.stage, "speed_um_s", None),
        ) + calibration_warnings(microscope, self.fovs)
        """Problems that don't stop the run (e.g. visits that can't fit an interval)."""
        for warning in self.warnings:
            logger.warning("optogenetic_plan: %s", warning)

    # ----------------------------------------------------------------- editing
    def _check(self, elements: list[Element] | None, refused: Sequence[str] = ()) -> None:
        """Raise one `ExperimentError` with ``refused`` and every problem of ``elements``.

        The schedule is checked by arithmetic (`schedule_problems`), not built: a huge
        or endless description is refused at once. ``elements=None``: already refused.
        """
        problems = list(refused)
        problems += validate_experiment(
            self.microscope,
            self.fovs,
            elements,
            analyzer=self.analyzer,
            stim_mask=self.stim_mask,
            stim_mode=self.stim_mode,
            on_resume=self.on_resume,
            per_visit=self.per_visit,
            patterned_light=self.patterned_light,
        )
        resolved = self._resolved(elements or [])
        if resolved and self.fovs:  # no FOVs: refused by check_arguments
            fovs = [(0.0, 0.0) if xy is None else xy for xy in self.fovs]  # refused already
            problems += schedule_problems(fovs, resolved, time_per_fov=self.time_per_fov)
        ExperimentError.raise_if(problems)

    @staticmethod
    def _resolved(elements: Sequence[Element]) -> list[Phase | Wait | Parallel]:
        """The elements up to the first decision not yet taken."""
        out = []
        for el in elements:
            if not isinstance(el, Phase | Wait | Parallel):
                break
            out.append(el)
        return out

    def _build_schedule(self) -> Schedule | None:
        resolved = self._resolved(self._elements)
        if not any(isinstance(e, Phase | Parallel) for e in resolved):
            return None
        return schedule(self.fovs, resolved, time_per_fov=self.time_per_fov)

    @property
    def schedule(self) -> Schedule | None:
        """Visits known so far (up to the first decision not yet taken)."""
        return self._schedule

    @property
    def elements(self) -> list[Element]:
        """The experiment as it stands (phases, waits, parallels, decisions)."""
        with self._lock:
            return list(self._elements)

    def extend(self, *elements: Element) -> None:
        """Append phases/waits/decisions to the experiment, also while it runs.

        Refused (`RuntimeError`) once its last visit has run: it would be ignored.
        """
        with self._lock:
            new = [*self._elements, *elements]
            self._check(new)
            self._refuse_if_over("extend")
            self._elements = new
            self._schedule = self._build_schedule()

    def replace_pending(self, elements: Sequence[Element]) -> None:
        """Replace every element whose visits have not begun."""
        with self._lock:
            new = [*self._elements[: self._started], *elements]
            self._check(new)
            self._refuse_if_over("replace_pending")
            self._elements = new
            self._schedule = self._build_schedule()

    def _refuse_if_over(self, what: str) -> None:
        if self._last_visit_run:
            raise RuntimeError(
                f"cannot {what}: the experiment has run its last visit; start a new run"
            )

    # --------------------------------------------------------------- running
    def _start_md(self) -> dict[str, Any]:
        return optogenetic_start(self)  # bluesky's keys + the experiment (_metadata.py)

    def _next_visit(self, ctx: DecisionContext) -> Visit | None:
        """The visit to run next, taking the next decision when the known ones are done."""
        while True:
            with self._lock:
                sched = self._schedule
                n_known = len(sched) if sched is not None else 0
                if self.visits_done < n_known:
                    v = sched[self.visits_done]
                    self._started = max(self._started, self._element_of(v))
                    return v
                n_resolved = len(self._resolved(self._elements))
                if n_resolved == len(self._elements):
                    self._last_visit_run = True
                    return None
                decision = self._elements[n_resolved]
            result = decision(ctx)
            chosen = [] if result is None else result if isinstance(result, list) else [result]
            with self._lock:
                # found again by identity: replace_pending may have edited the list meanwhile
                at = next((i for i, e in enumerate(self._elements) if e is decision), None)
                if at is None:
                    continue  # the decision itself was replaced while it ran
                new = [*self._elements[:at], *chosen, *self._elements[at + 1 :]]
                self._check(new)
                self._elements = new
                self._schedule = self._build_schedule()

    def _next_start(self, burst_end: int) -> NextVisit | None:
        """Where the visit after the current one starts, if it is known: its FOV, its preset.

        A stimulation sends both as it ends (decision 0069), which is what `prepare_visit`
        would do next. None when that visit is not decided yet; no preset when it is a
        later frame of the armed burst or begins with a stimulation (``"previous"``
        mode). A schedule edited meanwhile costs nothing: the visit moves and sets what it
        needs itself.
        """
        i = self.visits_done + 1
        with self._lock:
            sched = self._schedule
            n = sched[i] if sched is not None and i < len(sched) else None
        if n is None:
            return None
        preset = n.channels[0] if n.channels else None
        if i < burst_end or (n.stim and self.stim_mode == "previous"):
            preset = None
        return NextVisit(xy=n.xy, setting=preset)

    def _element_of(self, v: Visit) -> int:
        """One past the index of the element holding visit ``v`` (its phase has begun)."""
        owner: list[int] = []  # flattened phase index -> element index
        for i, el in enumerate(self._resolved(self._elements)):
            if isinstance(el, Phase):
                owner.append(i)
            elif isinstance(el, Parallel):
                owner += [i] * sum(isinstance(p, Phase) for b in el.branches for p in b)
        return owner[v.phase_index] + 1

    def _outcome_warning(self, masks: MaskFacet, outcome: dict[str, int]) -> str | None:
        """What was asked for and silently never happened, for the stop document."""
        warnings = []
        if masks.fetched and not masks.delivered:
            warnings.append(
                f"stimulation was due {masks.fetched} times but no mask was ever delivered "
                "(every mask missed, so the DMD stayed dark): check the analyzer's errors "
                "and mask_timeout"
            )
        analyses = isinstance(self.analyzer, SummarySource)
        if analyses and self.visits_done and not outcome["summaries"]:
            warnings.append(
                f"the analyzer produced no result for any of the {self.visits_done} "
                "visits: check its errors"
            )
        self.run_warnings = warnings
        for warning in warnings:
            logger.warning("optogenetic_plan: %s", warning)
        return "; ".join(warnings) or None

    def _missed(
        self, v: Visit, fault: DeviceFault, tag: VisitTag, missed: MissedVisit, misses: int
    ) -> MsgGenerator[None]:
        """Record visit ``v`` as missed (stream ``missed``), make the light safe, go on.

        ``max_consecutive_misses`` misses in a row mean the device is not coming back:
        the run ends with a one-sentence reason.
        """
        logger.warning("visit t=%d FOV %d missed: %s", v.t, v.p, fault)
        if self.light is not None:
            yield from move(self.light, False)  # a stim cut short must not stay lit
        missed.update(fault.device, str(fault.error))
        yield from read_event([tag, missed], Stream.MISSED)
        if misses >= self.max_consecutive_misses:
            raise DeviceFault(
                fault.device,
                f"{fault.error} ({misses} visits in a row missed, the run stops; "
                "max_consecutive_misses sets how many are tolerated)",
            ) from fault

    # ------------------------------------------------------ generator protocol
    def _generator(self) -> MsgGenerator[str]:
        if self._gen is None:
            self._gen = self._plan()
        return self._gen

    def __iter__(self) -> MsgGenerator[str]:
        # The underlying Python generator: the RunEngine drives it directly.
        return self._generator()

    def send(self, value: Any) -> Msg:
        """Resume the plan with the RunEngine's response to the last message."""
        return self._generator().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Msg:  # type: ignore[override]
        """Raise an exception (a RunEngine interruption) inside the plan."""
        if val is None and tb is None:
            return self._generator().throw(typ)
        return self._generator().throw(typ, val, tb)

    def close(self) -> None:
        """Close the plan (runs its cleanup)."""
        if self._gen is not None:
            self._gen.close()

    def _plan(self) -> MsgGenerator[str]:
        scope = self.microscope
        tag = VisitTag(name=VISIT)
        missed = MissedVisit(name=MISSED)
        clock = PauseClock()
        analyzer = self.analyzer
        source = mask_source(analyzer)  # a MaskSource saying provides_masks, or None
        fixed = FixedMask(True if self.stim_mask is None else self.stim_mask)
        provider = source if source is not None else fixed
        # the plan's mask_timeout= wins; else the analyzer's own; else 80 s
        timeout = self.mask_timeout
        if timeout is None:
            timeout = float(source.mask_timeout) if source is not None else DEFAULT_MASK_TIMEOUT
        light = self.light
        shape = light.camera_shape if light is not None else (1, 1)
        masks = MaskFacet(provider, shape, timeout=timeout, name=MASK)
        summary = SummaryFacet(analyzer) if isinstance(analyzer, SummarySource) else None
        facets = [tag, missed, masks] + ([summary] if summary is not None else [])
        yield from ensure_connected(*facets)
        staged = [scope.camera] + ([light] if light is not None else [])
        ctx = DecisionContext(self, 0, scope, self.analyzer)
        shift = self.on_resume == "shift"

        outcome = {"summaries": 0}

        @bpp.stage_decorator(staged)
        @_run_decorator(md=self._start_md(), reason=lambda: self._outcome_warning(masks, outcome))
        def inner() -> MsgGenerator[None]:
            yield Msg("null", clock)  # the RunEngine now tells the clock about pauses
            # the camera opens its store now, not in the first visit's trigger (an implicit
            # prepare there made the first exposure ~10 ms late)
            group = f"prepare-{id(clock)}"
            yield Msg("prepare", scope.camera, TriggerInfo(), group=group)
            yield Msg("wait", None, group=group)
            # the frames' stream is described now, before the clock starts, not by the first
            # frame's event (describing six devices delayed the first visit ~10 ms)
            devices = frame_devices(scope.camera, frame_readables(scope, light, tag))
            yield Msg("declare_stream", None, *devices, name=Stream.PRIMARY)
            if self._schedule is not None and self._schedule.columns()["stim"].any():
                yield Msg("declare_stream", None, masks, name=Stream.MASK)  # (the same)
            # The schedule's clock starts when the first visit is ready (stage there, preset
            # set), so that visit is not late by its own preparation.
            t0: float | None = None
            applied: dict[str, Any] = {}
            last_t: dict[int, int] = {}
            late = 0.0  # s later visits move because a wait began late (waits are real)
            ended: list[float] = []  # real end of visit i (visits run in index order)
            burst_end = 0  # visits before this index are frames of an armed camera sequence
            switching = False  # that sequence switches the channels itself (several presets)
            can_sequence = _sequenceable_presets(scope.camera)
            misses = 0  # visits missed in a row (a device failed even after its retries)
            while (v := self._next_visit(ctx)) is not None:
                yield Msg("checkpoint")
                in_burst = self.visits_done < burst_end  # a later visit of an armed burst
                if not in_burst:
                    if switching:  # the sequence left the light path at its last preset
                        applied.pop("channel", None)
                        switching = False
                    n = 0
                    if self._schedule:
                        n = burst_at(self._schedule, self.visits_done, can_sequence)
                    if n > 1:  # one camera sequence for the whole burst (interval 0)
                        presets = tuple(c.config for c in v.channels)
                        cycle = presets if len(presets) > 1 else ()
                        yield from move(scope.camera.sequence_channels, cycle, clock=clock)
                        yield from move(scope.camera.sequence, n * len(v.channels), clock=clock)
                        burst_end = self.visits_done + n
                        switching = bool(cycle)

                deadline: Callable[[], float] = time.time  # until the visit has one
                try:
                    # stage and first preset go to the visit while it is not yet due, so
                    # its first exposure starts on time (the lag is the exposure's)
                    yield from prepare_visit(
                        scope,
                        v,
                        stim_mode=self.stim_mode,
                        clock=clock,
                        applied=applied,
                        sequenced=switching and in_burst,
                    )
                    if t0 is None:
                        t0 = time.time() - (clock.consume()[0] if shift else 0.0)
                    paused = clock.consume()[0] if shift else 0.0
                    if v.rests:  # wait(s) before v: s real seconds after the visit before it
                        due = max((ended[j] + s for j, s in v.rests if j < len(ended)), default=t0)
                        late += max(0.0, due - (t0 + v.time + late + paused))

                    def deadline(v: Visit = v, late: float = late, t0: float = t0) -> float:
                        return t0 + v.time + late + (clock.consume()[0] if shift else 0.0)

                    # woken a little early, the camera is told when to start exposing
                    yield from wait_until(deadline, early=_TRIGGER_LEAD_S)
                    due = deadline()
                    # (a burst's frames come as they come; an overdue visit starts at once)
                    if self.visits_done >= burst_end and due > time.time():
                        yield from expose_at(scope.camera, due)
                    tag.update(v, scheduled=due)
                    summaries_done = False

                    def summaries(awaited: bool) -> MsgGenerator[None]:
                        # during the visit's stimulation, if it has one (decision 0066)
                        nonlocal summaries_done
                        summaries_done = True
                        if summary is not None:
                            outcome["summaries"] += yield from record_summaries(
                                summary, awaited=awaited
                            )

                    yield from visit(
                        scope,
                        v,
                        masks=masks,
                        mask_t=last_t.get(v.p),
                        stim_mode=self.stim_mode,
                        tag=tag,
                        per_visit=self.per_visit,
                        clock=clock,
                        applied=applied,
                        light=light,
                        sequenced=switching,
                        meanwhile=summaries,
                        then=self._next_start(burst_end),
                    )
                except DeviceFault as fault:
                    misses += 1
                    tag.update(v, scheduled=deadline())  # (a move may fail before it is due)
                    yield from self._missed(v, fault, tag, missed, misses)
                    last_t.pop(v.p, None)  # no frame: no mask comes from this visit
                else:
                    misses = 0
                    last_t[v.p] = v.t
                ended.append(time.time())
                self.visits_done += 1
                ctx.visits_done = self.visits_done
                if not summaries_done:
                    yield from summaries(False)
            if summary is not None:  # the last visits' analysis, before the run closes
                outcome["summaries"] += yield from record_summaries(
                    summary, settle=self.settle_timeout
                )

        plan = bpp.rewindable_wrapper(frozen_heap(inner()), False)
        if isinstance(analyzer, DocumentSink):
            # Subscribed for the run (a second subscription by the user is harmless: the
            # analyzer ignores a document it has just seen).
            plan = bpp.subs_wrapper(plan, {"all": [analyzer]})
        return (yield from plan)


def _sequenceable_presets(camera: Any) -> Callable[[tuple[str, ...]], bool]:
    """`Camera.sequenceable`, asked once per set of presets (it queries the core)."""
    known: dict[tuple[str, ...], bool] = {}

    def can_sequence(presets: tuple[str, ...]) -> bool:
        if presets not in known:
            known[presets] = bool(camera.sequenceable(presets))
        return known[presets]

    return can_sequence


def _run_decorator(md: dict[str, Any], reason: Callable[[], str | None]) -> Any:
    """``bpp.run_decorator`` whose successful stop carries ``reason()`` (a warning)."""

    def decorator(gen_func: Callable[..., MsgGenerator[Any]]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> MsgGenerator[Any]:
            def close() -> MsgGenerator[Any]:
                return (yield Msg("close_run", exit_status=None, reason=reason()))

            def except_plan(e: BaseException) -> MsgGenerator[Any]:
                if isinstance(e, RunEngineControlException):
                    yield Msg("close_run", exit_status=e.exit_status, reason=None)
                else:
                    yield Msg("close_run", exit_status="fail", reason=str(e))

            uid = yield Msg("open_run", **md)
            yield from bpp.contingency_wrapper(
                gen_func(*args, **kwargs), except_plan=except_plan, else_plan=close
            )
            return uid

        return wrapped

    return decorator


def optogenetic_plan(
    fovs: Sequence[Sequence[float]],
    phases: Sequence[Element],
    *,
    microscope: Microscope | None = None,
    analyzer: Any = None,
    stim_mode: str = "current",
    on_resume: str = "shift",
    per_visit: Sequence[Readable] = (),
    md: dict | None = None,
    time_per_fov: float | None = None,
    stim_mask: Any = None,
    mask_timeout: float | None = None,
    patterned_light: PatternedLight | str | None = None,
) -> OptogeneticPlan:
    """Run a multi-phase, multi-FOV, closed-loop experiment as one bluesky run.

    Parameters
    ----------
    fovs : list of (x, y)
        Stage positions (µm) of the fields of view; phases refer to them by index.
    phases : list
        `Phase`, `wait(s)`, `parallel(...)` and decision callables
        (``f(ctx: DecisionContext) -> Phase | list | None``, called when reached: ordinary
        Python choosing what comes next), run in order on one absolute clock.
    microscope, analyzer :
        Default: the session's (`set_session`). The analyzer provides stimulation masks
        through its ``masks`` facet; without one, stimulation is whole-field, or
        ``stim_mask`` if given. The plan uses the roles of the analyzer contract
        (`faro_bluesky.schema.ClosedLoopAnalyzer`) it plays: `DocumentSink`,
        `MaskSource`, `SummarySource`, `AnalysisNeeds`.
    stim_mask : bool or array
        Without an analyzer: the fixed mask (camera pixels, bool, the camera's shape) every
        stimulation fires; default whole field.
    patterned_light : PatternedLight or str, optional
        The device that projects the masks: a key of ``microscope.patterned_lights``
        (e.g. ``"slm2"``) or a `PatternedLight`; default the microscope's ``dmd``. Without
        one, stimulation is whole-field.
    stim_mode : {"current", "previous"}
        ``"current"``: image, then fire this frame's mask. ``"previous"``: fire the mask of
        this FOV's previous frame, then image (never on a FOV's first visit).
    on_resume : {"shift", "catch_up"}
        After a pause, shift the rest of the schedule by the time paused (intervals stay
        true) or keep the original clock (late visits run at once).
    per_visit : list of Readable
        Extra instruments read once per visit (stream ``per_visit``).
    md : dict
        Extra start-document metadata.
    time_per_fov : float
        Seconds one FOV visit takes: enables FOV batching and per-FOV stagger.
    mask_timeout : float, optional
        Seconds to wait for a mask before firing a blank one (recorded as missed).
        Default: the analyzer's ``mask_timeout`` if it has one, else 80 s.

    Returns
    -------
    OptogeneticPlan
        Iterable plan: ``RE(optogenetic_plan(fovs, phases))``. The whole experiment is
        validated here, so an invalid one raises `ExperimentError` (listing every problem)
        before any run opens or any device moves.

    Notes
    -----
    The plan runs non-rewindable with a checkpoint before every visit (and in waits):
    the first Ctrl-C pauses between visits, a second one at once; ``RE.resume()``
    continues without repeating or losing a frame or a stimulation. The start document
    carries the experiment (``experiment``), the schedule (``schedule``) and
    ``phase_names``; every frame's event carries ``visit-t``, ``visit-p``,
    ``visit-phase``, ``visit-kind`` (image/ref/stim) and ``visit-c``.

    """
    scope = microscope if microscope is not None else session_microscope()
    analyzer = analyzer if analyzer is not None else session_analyzer()
    return OptogeneticPlan(  # validates (also "no microscope") before anything else
        fovs,
        phases,
        microscope=scope,
        analyzer=analyzer,
        stim_mode=stim_mode,
        on_resume=on_resume,
        per_visit=per_visit,
        md=md,
        time_per_fov=time_per_fov,
        stim_mask=stim_mask,
        mask_timeout=mask_timeout,
        patterned_light=patterned_light,
    )
