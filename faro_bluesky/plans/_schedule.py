"""The schedule: an experiment list turned into timed visits, before anything runs.

`schedule` is a pure function, so the whole timing of an experiment (which FOV, which
frame, which channels, when) can be printed, tested and stored in the start document
before a device moves; the plan only walks the visits. It replaces faro's
``combine``/``apply_fov_batching`` event arithmetic with one documented set of rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from ._batching import fov_time_offsets
from ._errors import ExperimentError
from ._limits import MAX_SECONDS, MAX_VISITS, number_problem, position_problem
from ._model import Channel, Parallel, Phase, Wait

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Schedule", "Visit", "schedule", "schedule_problems"]


@dataclass(frozen=True, slots=True)
class Visit:
    """One timepoint at one FOV: where, when and which channels (faro's RTMEvent)."""

    index: int
    """Position in the schedule, 0, 1, ..."""
    t: int
    """Global timepoint index, contiguous across sequential phases."""
    p: int
    """FOV index into the schedule's ``fovs``."""
    xy: tuple[float, float]
    """Stage position of the FOV (µm)."""
    phase: str
    """Name of the phase this visit belongs to."""
    phase_index: int
    """Index of the phase in `Schedule.phases` (flattened experiment order)."""
    frame: int
    """Frame index relative to the phase start."""
    time: float
    """Scheduled start, seconds since the experiment start."""
    channels: tuple[Channel, ...]
    """Imaging channels, in acquisition order."""
    stim_channels: tuple[Channel, ...] = ()
    """Channels fired with the stimulation mask (exposure override applied); empty if none."""
    ref_channels: tuple[Channel, ...] = ()
    """Reference channels acquired after imaging; empty unless a ref frame."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The phase metadata plus ``phase_name`` and ``phase_index``."""
    rests: tuple[tuple[int, float], ...] = ()
    """Waits this visit must honour in real time: ``(index, seconds)`` pairs, each saying
    "start at least ``seconds`` after visit ``index`` ended". Set on the first visit after
    a wait (``index``: the last visit before it), so that a late run still rests as long
    as the experiment says (docs/decisions/0035-input-bounds-and-real-waits.md)."""

    @property
    def stim(self) -> bool:
        """Whether this visit stimulates."""
        return bool(self.stim_channels)

    @property
    def ref(self) -> bool:
        """Whether this visit acquires reference channels."""
        return bool(self.ref_channels)


@dataclass(slots=True, eq=False)
class _Draft:
    time: float
    p: int
    frame: int
    t: int
    phase_index: int
    rests: dict[_Draft, float] = field(default_factory=dict)
    """Real rests owed before this visit: earlier draft -> seconds after it ended."""


@dataclass(slots=True)
class _Clock:
    cursor: float
    """End of the last element: its last visit time, or the end of a wait."""
    gap: bool
    """The last element was a phase, so the next phase starts one of its intervals later."""
    t: int
    """The next free t index."""
    last: _Draft | None = None
    """The last visit so far, in run order (what a following wait is measured from)."""
    owed: dict[_Draft, float] = field(default_factory=dict)
    """Waits since the last phase: earlier draft -> seconds of real rest after it ended."""
    dry: bool = False
    """Only move the cursor (no drafts): how `schedule_problems` finds the end cheaply."""


class Schedule(Sequence[Visit]):
    """An immutable, ordered sequence of `Visit`s with the context to read them.

    Index it, iterate it, print it (`table`), or export it (`rows`, `to_dataframe`,
    `to_json`).
    """

    __slots__ = ("_fovs", "_phases", "_start", "_visits")

    def __init__(
        self,
        visits: Sequence[Visit],
        *,
        fovs: Sequence[tuple[float, float]],
        phases: Sequence[Phase],
        start: float = 0.0,
    ) -> None:
        self._visits = tuple(visits)
        self._fovs = tuple(fovs)
        self._phases = tuple(phases)
        self._start = float(start)

    def __len__(self) -> int:
        return len(self._visits)

    def __iter__(self) -> Iterator[Visit]:
        return iter(self._visits)

    @overload
    def __getitem__(self, i: int) -> Visit: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Visit, ...]: ...
    def __getitem__(self, i: int | slice) -> Visit | tuple[Visit, ...]:
        return self._visits[i]

    @property
    def fovs(self) -> tuple[tuple[float, float], ...]:
        """The FOV positions the visits' ``p`` index into."""
        return self._fovs

    @property
    def phases(self) -> tuple[Phase, ...]:
        """Every Phase in flattened experiment order (parallel branches in branch order)."""
        return self._phases

    @property
    def start(self) -> float:
        """Scheduled time of the experiment start (s)."""
        return self._start

    @property
    def end(self) -> float:
        """Scheduled time of the last visit (s)."""
        return max((v.time for v in self._visits), default=self._start)

    @property
    def duration(self) -> float:
        """Seconds from the start to the last visit (``end - start``)."""
        return self.end - self._start

    @property
    def n_timepoints(self) -> int:
        """Number of t indices used (max t + 1)."""
        return max((v.t for v in self._visits), default=-1) + 1

    def rows(self) -> list[dict[str, Any]]:
        """One flat, JSON-able dict per visit (channels as config names)."""
        return [
            {
                "index": v.index,
                "t": v.t,
                "p": v.p,
                "x": v.xy[0],
                "y": v.xy[1],
                "phase": v.phase,
                "phase_index": v.phase_index,
                "frame": v.frame,
                "time": v.time,
                "channels": [c.config for c in v.channels],
                "stim": v.stim,
                "stim_channels": [c.config for c in v.stim_channels],
                "stim_exposure": [c.exposure for c in v.stim_channels],
                "ref": v.ref,
                "ref_channels": [c.config for c in v.ref_channels],
            }
            for v in self._visits
        ]

    def to_json(self) -> list[dict[str, Any]]:
        """The schedule for the run's start document: `rows` (the experiment has the rest)."""
        return self.rows()

    def to_dataframe(self) -> pd.DataFrame:
        """The `rows` as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows())

    def table(self, max_rows: int = 30) -> str:
        """A fixed-width text table of the visits; long schedules show head and tail."""
        header = ("#", "t", "p", "phase", "frame", "time (s)", "channels", "stim", "ref")
        visits = list(self._visits)
        hidden = 0
        if len(visits) > max_rows:
            head = max(1, max_rows // 2)
            hidden = len(visits) - max_rows
            visits = visits[:head] + visits[head + hidden :]
        cells = [
            (
                str(v.index),
                str(v.t),
                str(v.p),
                v.phase,
                str(v.frame),
                f"{v.time:.3f}",
                ",".join(c.config for c in v.channels),
                ("STIM " + ",".join(f"{c.config}({c.exposure:g}ms)" for c in v.stim_channels))
                if v.stim
                else "",
                ("REF " + ",".join(c.config for c in v.ref_channels)) if v.ref else "",
            )
            for v in visits
        ]
        widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]

        def fmt(row: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

        lines = [
            f"Schedule: {len(self)} visits, {len(self._fovs)} FOV(s), "
            f"{len(self._phases)} phase(s), {self.n_timepoints} timepoint(s), "
            f"{self._start:g}-{self.end:g} s",
            fmt(header),
            fmt(["-" * w for w in widths]),
        ]
        for i, row in enumerate(cells):
            if hidden and i == max(1, max_rows // 2):
                lines.append(f"... {hidden} more visit(s) ...")
            lines.append(fmt(row))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return (
            f"Schedule({len(self)} visits, {len(self._fovs)} FOVs, {len(self._phases)} phases, "
            f"{self._start:g}-{self.end:g} s)"
        )


def _is_list(value: Any) -> bool:
    """An ordered collection of items (not a string, a mapping or a single model)."""
    if isinstance(value, np.ndarray):
        return value.ndim >= 1
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | Mapping)


def _problems(
    fovs: Sequence[Any], phases: Sequence[Any], time_per_fov: float | None, start: float = 0.0
) -> tuple[list[str], list[tuple[float, float]]]:
    problems: list[str] = []
    positions: list[tuple[float, float]] = []
    if not _is_list(fovs):
        problems.append(f"fovs={fovs!r} is not a list of (x, y) stage positions: write [(x, y)]")
        fovs = []
    elif len(fovs) == 0:
        problems.append("fovs is empty: give at least one (x, y) stage position")
    for i, xy in enumerate(fovs):
        if (problem := position_problem(f"fovs[{i}]", xy)) is not None:
            problems.append(problem)
            continue
        positions.append((float(xy[0]), float(xy[1])))
    tpf = number_problem("time_per_fov", time_per_fov, gt=0, le=MAX_SECONDS, optional=True)
    if tpf is not None:
        problems.append(tpf)
    if (problem := number_problem("start", start, ge=-MAX_SECONDS, le=MAX_SECONDS)) is not None:
        problems.append(problem)
    if not _is_list(phases):
        problems.append(
            f"phases={phases!r} is not a list: write [Phase(...), wait(s), ...] (a list is "
            "the order of the experiment)"
        )
        return problems, positions

    def check_fovs(phase: Phase, where: str) -> None:
        bad = [i for i in phase.fovs or () if i >= len(fovs)]
        if bad and fovs:
            problems.append(
                f"phase {phase.name!r} ({where}): fovs index {bad} out of range: valid FOV "
                f"indices are 0..{len(fovs) - 1} ({len(fovs)} FOV(s) given)"
            )

    n_phases = 0
    for i, el in enumerate(phases):
        if isinstance(el, Phase):
            n_phases += 1
            check_fovs(el, f"phases[{i}]")
        elif isinstance(el, Parallel):
            problems += [f"phases[{i}]: {m}" for m in el.problems()]
            for p in el.phases():
                n_phases += 1
                check_fovs(p, f"phases[{i}], parallel")
        elif not isinstance(el, Wait):
            problems.append(f"phases[{i}]={el!r} is not a Phase, wait() or parallel()")
    if n_phases == 0:
        problems.append("the experiment has no Phase: add at least one Phase(...)")
    return problems, positions


def _phase_drafts(
    phase: Phase, k: int, start: float, t0: int, n_fovs: int, time_per_fov: float | None
) -> list[_Draft]:
    ps = list(phase.fovs) if phase.fovs is not None else list(range(n_fovs))
    n, dt = phase.n_frames, phase.interval
    if phase.axis_order == "pt":
        return [
            _Draft(start + (r * n + f) * dt, p, f, t0 + f, k)
            for r, p in enumerate(ps)
            for f in range(n)
        ]
    offsets = fov_time_offsets(len(ps), n, dt, time_per_fov)
    drafts = [
        _Draft(start + f * dt + offsets[r], p, f, t0 + f, k)
        for f in range(n)
        for r, p in enumerate(ps)
    ]
    drafts.sort(key=lambda d: (d.time, d.p))
    return drafts


def _phase_end(phase: Phase, start: float, n_fovs: int, time_per_fov: float | None) -> float:
    """The time of the last visit `_phase_drafts` would make, without making any."""
    m = len(phase.fovs) if phase.fovs is not None else n_fovs
    n, dt = phase.n_frames, phase.interval
    if phase.axis_order == "pt":
        return start + ((m - 1) * n + n - 1) * dt
    return start + (n - 1) * dt + max(fov_time_offsets(m, n, dt, time_per_fov))


def _n_visits(phases: Sequence[Any], n_fovs: int) -> int:
    """Visits the experiment would schedule, by arithmetic (nothing is built)."""
    total = 0
    for el in phases:
        for p in [el] if isinstance(el, Phase) else el.phases() if isinstance(el, Parallel) else []:
            total += p.n_frames * (len(p.fovs) if p.fovs is not None else n_fovs)
    return total


def _run(
    elements: Sequence[Phase | Wait | Parallel],
    clock: _Clock,
    flat: list[Phase],
    n_fovs: int,
    time_per_fov: float | None,
) -> list[_Draft]:
    """Schedule ``elements`` one after the other from ``clock`` (updated in place)."""
    out: list[_Draft] = []
    for el in elements:
        if isinstance(el, Wait):
            clock.cursor += el.seconds
            clock.gap = False
            if clock.last is not None:  # a wait is measured from the last visit before it
                clock.owed.setdefault(clock.last, 0.0)
            clock.owed = {d: s + el.seconds for d, s in clock.owed.items()}
        elif isinstance(el, Phase):
            start = clock.cursor + (el.interval if clock.gap else 0.0)
            if clock.dry:
                clock.cursor = _phase_end(el, start, n_fovs, time_per_fov)
            else:
                drafts = _phase_drafts(el, len(flat), start, clock.t, n_fovs, time_per_fov)
                out += drafts
                clock.cursor = max(d.time for d in drafts)
                drafts[0].rests = clock.owed  # the first visit of the phase (earliest time)
                clock.last = drafts[-1]
            clock.owed = {}
            flat.append(el)
            clock.gap = True
            clock.t += el.n_frames
        else:
            # All branches start together: after a phase, one interval of the slowest
            # first phase later (so no branch starts before its own interval has passed).
            firsts = [b[0].interval for b in el.branches if b and isinstance(b[0], Phase)]
            start = clock.cursor + (max(firsts, default=0.0) if clock.gap else 0.0)
            subs = [
                _Clock(start, False, clock.t, clock.last, dict(clock.owed), clock.dry)
                for _ in el.branches
            ]
            merged: list[_Draft] = []
            for branch, sub in zip(el.branches, subs, strict=True):
                merged += _run(branch, sub, flat, n_fovs, time_per_fov)
            merged.sort(key=lambda d: (d.time, d.p))
            out += merged
            clock.cursor = max(s.cursor for s in subs)
            clock.gap = any(s.gap for s in subs if s.cursor == clock.cursor)
            clock.t = max(s.t for s in subs)
            clock.last = merged[-1] if merged else clock.last
            # A branch ending with a wait still owes that rest to whatever comes next.
            clock.owed = {}
            for sub in subs:
                for d, seconds in sub.owed.items():
                    clock.owed[d] = max(seconds, clock.owed.get(d, 0.0))
    return out


def schedule_problems(
    fovs: Sequence[tuple[float, float]],
    phases: Sequence[Phase | Wait | Parallel],
    *,
    time_per_fov: float | None = None,
    start: float = 0.0,
) -> list[str]:
    """Every reason `schedule` would refuse ``phases`` on ``fovs``, without building it.

    The size is computed arithmetically and the end by moving a clock through the
    elements (no visits are made), so a description of 10**12 visits is refused in
    microseconds rather than built until memory runs out.
    """
    problems, positions = _problems(fovs, phases, time_per_fov, start)
    if problems:
        return problems
    n = _n_visits(phases, len(positions))
    if n > MAX_VISITS:
        return [
            f"the experiment has {n:,} visits (n_frames x fovs, over all phases), more than "
            f"the {MAX_VISITS:,} one run may schedule (docs/reliability.md): use fewer frames "
            "or FOVs, or split it into several runs"
        ]
    clock = _Clock(float(start), False, 0, dry=True)
    _run(phases, clock, [], len(positions), time_per_fov)
    if not (math.isfinite(clock.cursor) and clock.cursor - start <= MAX_SECONDS):
        return [
            f"the experiment lasts {clock.cursor - start:g} s, more than a year "
            f"({MAX_SECONDS:g} s): check that interval, wait seconds and time_per_fov are "
            "in seconds"
        ]
    return []


def schedule(
    fovs: Sequence[tuple[float, float]],
    phases: Sequence[Phase | Wait | Parallel],
    *,
    time_per_fov: float | None = None,
    start: float = 0.0,
) -> Schedule:
    """Every visit of the experiment ``phases`` on ``fovs``, in run order, with its time.

    Parameters
    ----------
    fovs : list of (x, y)
        FOV stage positions; ``Phase.fovs`` and ``Visit.p`` index into this list.
    phases : list of Phase, Wait, Parallel
        The experiment, run element after element on one clock.
    time_per_fov : float, optional
        Seconds one visit of one FOV takes. Enables FOV batching and stagger (below).
    start : float
        Scheduled time (s) of the first element.

    Returns
    -------
    Schedule
        The visits, ``index`` numbered in run order.

    Raises
    ------
    ExperimentError
        Listing every problem at once: no FOVs or a FOV that is not two finite numbers, a
        phase ``fovs`` index out of range, broken `parallel` rules, no Phase at all,
        ``time_per_fov`` not a finite number in (0, one year], more than `MAX_VISITS`
        visits or a schedule longer than a year (both found without building it, see
        `schedule_problems`).

    Notes
    -----
    Rules (faro's ``combine``/``wait``/batching behaviour, with its known bugs fixed):

    1. **t indices** are contiguous across sequential phases: frame ``f`` of a phase has
       ``t = t_offset + f``, ``t_offset`` being the frames of all earlier phases (a Parallel
       counts its longest branch). Waits claim no t.
    2. **Times.** The first element starts at ``start``. In a ``"tp"`` phase, frame ``f``
       of every FOV is at ``phase_start + f * interval``; in a ``"pt"`` phase FOVs run one
       after another, frame ``f`` of the FOV of rank ``r`` at
       ``phase_start + (r * n_frames + f) * interval``. A phase after a phase starts one of
       *its own* intervals after the previous last visit (an interval-0 phase therefore
       starts with the previous last frame). A wait ends ``seconds`` after the previous
       element's end, and the element after a wait starts exactly then: no interval is
       added across a wait. The times are the plan as written; the first visit after a
       wait also carries ``rests`` so that a late run still rests ``seconds`` in real time
       (the plan then moves it and every later visit).
    3. **Parallel** branches start together (after a phase: one interval of the slowest
       branch's first phase later) and are scheduled independently, each numbering t from
       the current offset; their visits are merged by ``(time, p)``. The next element
       follows the branch that ends last.
    4. **Order**: ``"tp"`` phases by ``(time, p)``; ``"pt"`` phases FOV-major. Visits
       are never reordered across sequential elements.
    5. **Batching** (``time_per_fov`` given, ``"tp"`` phases): ``k = max(1, interval //
       time_per_fov)`` FOVs fit in one interval; the FOV of rank ``r`` (sorted by index)
       is in batch ``r // k`` at slot ``r % k`` and its times are shifted by
       ``batch * ((n_frames - 1) * interval + k * time_per_fov) + slot * time_per_fov``.
       Batches run one after another; the slot stagger also applies to a single batch
       (and to all FOVs of an interval-0 phase). t indices are not shifted.

    """
    problems = schedule_problems(fovs, phases, time_per_fov=time_per_fov, start=start)
    ExperimentError.raise_if(problems)
    positions = [(float(x), float(y)) for x, y in fovs]
    flat: list[Phase] = []
    drafts = _run(phases, _Clock(float(start), False, 0), flat, len(positions), time_per_fov)
    owed_to = {j for d in drafts for j in d.rests}  # visits a wait is measured from
    index = {d: i for i, d in enumerate(drafts) if d in owed_to}
    bases = [{**p.metadata, "phase_name": p.name, "phase_index": k} for k, p in enumerate(flat)]
    stims = [[p.stim_channels_at(f) for f in range(p.n_frames)] for p in flat]
    refs = [frozenset(p.ref_frames) for p in flat]
    visits = []
    for i, d in enumerate(drafts):
        phase = flat[d.phase_index]
        visits.append(
            Visit(
                index=i,
                t=d.t,
                p=d.p,
                xy=positions[d.p],
                phase=phase.name,
                phase_index=d.phase_index,
                frame=d.frame,
                time=d.time,
                channels=phase.channels,
                stim_channels=stims[d.phase_index][d.frame],
                ref_channels=phase.ref_channels if d.frame in refs[d.phase_index] else (),
                metadata=dict(bases[d.phase_index]),
                rests=tuple((index[j], s) for j, s in d.rests.items() if s > 0),
            )
        )
    return Schedule(visits, fovs=positions, phases=flat, start=start)
