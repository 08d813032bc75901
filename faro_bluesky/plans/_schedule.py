"""The schedule: an experiment list turned into timed visits, before anything runs.

`schedule` is a pure function, so the whole timing of an experiment (which FOV, which
frame, which channels, when) can be printed, tested and stored in the start document
before a device moves; the plan only walks the visits. It replaces faro's
``combine``/``apply_fov_batching`` event arithmetic with one documented set of rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._batching import fov_time_offsets
from ._errors import ExperimentError
from ._limits import MAX_SECONDS, MAX_VISITS, number_problem, position_problem
from ._model import Parallel, Phase, Wait
from ._visits import Schedule, Visit, share, shared

__all__ = ["Schedule", "Visit", "schedule", "schedule_problems", "share", "shared"]


@dataclass(slots=True)
class _Block:
    """Visits in run order as columns (one array per field).

    200 000 visits are built in tens of ms, where one Python object per visit took
    seconds (issue 13, point 4).
    """

    time: NDArray[np.float64]
    p: NDArray[np.int64]
    frame: NDArray[np.int64]
    t: NDArray[np.int64]
    phase: NDArray[np.int64]
    ids: NDArray[np.int64]
    """A unique id per visit, for `rests` (ids survive sorting and merging)."""
    rests: dict[int, dict[int, float]] = field(default_factory=dict)
    """Real rests owed before a visit: its id -> {earlier visit id: seconds after it ended}."""

    @classmethod
    def empty(cls) -> _Block:
        f, i = np.zeros(0, np.float64), np.zeros(0, np.int64)
        return cls(f, i, i, i, i, i)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, order: NDArray[np.intp]) -> _Block:
        return _Block(
            self.time[order],
            self.p[order],
            self.frame[order],
            self.t[order],
            self.phase[order],
            self.ids[order],
            self.rests,
        )

    @staticmethod
    def concat(blocks: Sequence[_Block]) -> _Block:
        blocks = [b for b in blocks if len(b)] or [_Block.empty()]
        out = _Block(
            *(
                np.concatenate([getattr(b, name) for b in blocks])
                for name in ("time", "p", "frame", "t", "phase", "ids")
            )
        )
        for b in blocks:
            out.rests.update(b.rests)
        return out

    def sorted_by_time_then_p(self) -> _Block:
        return self.take(np.lexsort((self.p, self.time)))  # stable: ties keep their order


@dataclass(slots=True)
class _Ids:
    next: int = 0

    def take(self, n: int) -> NDArray[np.int64]:
        out = np.arange(self.next, self.next + n, dtype=np.int64)
        self.next += n
        return out


@dataclass(slots=True)
class _Clock:
    cursor: float
    """End of the last element: its last visit time, or the end of a wait."""
    gap: bool
    """The last element was a phase, so the next phase starts one of its intervals later."""
    t: int
    """The next free t index."""
    last: int | None = None
    """Id of the last visit so far, in run order (what a following wait is measured from)."""
    owed: dict[int, float] = field(default_factory=dict)
    """Waits since the last phase: earlier visit id -> seconds of real rest after it ended."""
    dry: bool = False
    """Only move the cursor (no visits): how `schedule_problems` finds the end cheaply."""
    ids: _Ids = field(default_factory=_Ids)
    """Shared by a clock and its parallel branches' clocks."""


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


def _phase_block(
    phase: Phase,
    k: int,
    start: float,
    t0: int,
    n_fovs: int,
    time_per_fov: float | None,
    ids: _Ids,
) -> _Block:
    ps = np.asarray(list(phase.fovs) if phase.fovs is not None else range(n_fovs), np.int64)
    n, dt, m = phase.n_frames, phase.interval, len(ps)
    if phase.axis_order == "pt":  # FOV-major: FOV rank r, then its frames
        rank, frame = np.divmod(np.arange(m * n, dtype=np.int64), n)
        time = start + (rank * n + frame) * dt
        return _Block(time, ps[rank], frame, t0 + frame, np.full(m * n, k), ids.take(m * n))
    offsets = np.asarray(fov_time_offsets(m, n, dt, time_per_fov), np.float64)
    frame, rank = np.divmod(np.arange(n * m, dtype=np.int64), m)  # frame-major
    time = start + frame * dt + offsets[rank]
    block = _Block(time, ps[rank], frame, t0 + frame, np.full(n * m, k), ids.take(n * m))
    return block.sorted_by_time_then_p()


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
) -> _Block:
    """Schedule ``elements`` one after the other from ``clock`` (updated in place)."""
    out: list[_Block] = []
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
                block = _phase_block(el, len(flat), start, clock.t, n_fovs, time_per_fov, clock.ids)
                out.append(block)
                clock.cursor = float(block.time.max())
                block.rests[int(block.ids[0])] = clock.owed  # its first (earliest) visit
                clock.last = int(block.ids[-1])
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
                _Clock(start, False, clock.t, clock.last, dict(clock.owed), clock.dry, clock.ids)
                for _ in el.branches
            ]
            branches = [
                _run(branch, sub, flat, n_fovs, time_per_fov)
                for branch, sub in zip(el.branches, subs, strict=True)
            ]
            merged = _Block.concat(branches).sorted_by_time_then_p()
            out.append(merged)
            clock.cursor = max(s.cursor for s in subs)
            clock.gap = any(s.gap for s in subs if s.cursor == clock.cursor)
            clock.t = max(s.t for s in subs)
            clock.last = int(merged.ids[-1]) if len(merged) else clock.last
            # A branch ending with a wait still owes that rest to whatever comes next.
            clock.owed = {}
            for sub in subs:
                for d, seconds in sub.owed.items():
                    clock.owed[d] = max(seconds, clock.owed.get(d, 0.0))
    return _Block.concat(out)


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
    block = _run(phases, _Clock(float(start), False, 0), flat, len(positions), time_per_fov)
    # rests by schedule index: "start at least s after visit j ended"
    where = dict(zip(block.ids.tolist(), range(len(block)), strict=True)) if block.rests else {}
    rests = {
        where[first]: tuple((where[j], sec) for j, sec in owed.items() if sec > 0)
        for first, owed in block.rests.items()
        if any(sec > 0 for sec in owed.values())
    }
    return Schedule._from_columns(block, rests, fovs=positions, phases=flat, start=start)
