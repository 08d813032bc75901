"""The static shape of a run, read once from its start document: visits, waits, FOVs.

A `RunLayout` is everything a status display needs that does not change while the run
goes on: one *cell* per scheduled visit (coloured by what the visit does) with a cell
for every ``wait(...)`` element in between, each visit's scheduled time and expected
frame count, the FOV positions and the order the FOVs are first visited. It is computed
once per run and shared, unchanged, by every `RunStatus` snapshot of that run, so a
100 000-visit experiment costs one set of numpy arrays, not a list per snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from ..schema import FrameKind

__all__ = ["KINDS", "WAIT_KIND", "Cell", "RunLayout", "layout_from_start"]

WAIT_KIND: Final = "wait"
"""The status' ``kind`` (and a strip cell's) while the microscope waits between visits."""


class Cell(IntEnum):
    """Code of a strip cell in `RunLayout.cells`; `KINDS` names each code."""

    IMAGE = 0
    """A visit that only images."""
    STIM = 1
    """A visit that stimulates."""
    REF = 2
    """A visit that takes reference channels (and does not stimulate)."""
    WAIT = 3
    """A ``wait(...)`` element of the experiment."""


IMAGE, STIM, REF, WAIT = Cell
KINDS: tuple[str, ...] = (
    FrameKind.IMAGE.value,
    FrameKind.STIM.value,
    FrameKind.REF.value,
    WAIT_KIND,
)
"""Names of the cell codes (``KINDS[Cell.STIM] == "stim"``): a visit is ``stim`` if it
stimulates, else ``ref`` if it takes reference channels, else ``image``; ``wait`` cells
stand for ``wait(...)`` elements. The visit kinds are `FrameKind` values."""


def _frozen(a: NDArray) -> NDArray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class RunLayout:
    """What a run will do, from its start document (shared by all snapshots of the run)."""

    uid: str
    """The RunStart uid."""
    cells: NDArray[np.uint8]
    """One `Cell` code per strip cell (index into `KINDS`), visits and waits in run order."""
    visit_cell: NDArray[np.int64]
    """The cell of each visit (visits are numbered like ``visit-index``)."""
    times: NDArray[np.float64]
    """Scheduled start of each visit, seconds from the experiment start (before shifts)."""
    frames: NDArray[np.int64]
    """Frames each visit is expected to record in stream ``primary`` (image+ref+stim)."""
    phase: NDArray[np.int64]
    """Index into `phase_names` of each visit's phase."""
    phase_names: tuple[str, ...]
    """Phase names in order of first appearance in the schedule."""
    fovs: tuple[tuple[float, float], ...]
    """Stage positions (µm) the visits' ``p`` index into."""
    path: tuple[int, ...]
    """FOV indices in the order they are first visited (the path drawn on a FOV map)."""
    on_resume: str = "shift"
    """The plan's ``on_resume``: whether pauses shift the rest of the schedule."""

    @property
    def n_visits(self) -> int:
        """Number of scheduled visits."""
        return len(self.times)

    @property
    def end(self) -> float:
        """Scheduled start of the last visit (s from the experiment start)."""
        return float(self.times[-1]) if len(self.times) else 0.0

    def kinds(self) -> list[str]:
        """The cells as names (``"image"``, ``"stim"``, ``"ref"``, ``"wait"``)."""
        return [KINDS[c] for c in self.cells.tolist()]

    def phase_totals(self) -> dict[str, int]:
        """Visits per phase name."""
        counts = np.bincount(self.phase, minlength=len(self.phase_names))
        return dict(zip(self.phase_names, counts.tolist(), strict=True))

    @classmethod
    def from_columns(
        cls,
        uid: str,
        cols: Mapping[str, NDArray],
        phase_names: Sequence[str],
        *,
        fovs: Sequence[Sequence[float]],
        waits_before: Sequence[int] = (),
        stim_mode: str = "current",
        on_resume: str = "shift",
    ) -> RunLayout:
        """Build from `Schedule.columns` (arrays; what `from_visits` does row by row).

        ``phase_names`` are the schedule's phases' names, by ``phase_index``.
        """
        stim, ref = np.asarray(cols["stim"], bool), np.asarray(cols["ref"], bool)
        p = np.asarray(cols["p"], np.int64)
        n = len(p)
        codes = np.where(stim, int(Cell.STIM), np.where(ref, int(Cell.REF), int(Cell.IMAGE)))
        firsts = np.sort(np.unique(p, return_index=True)[1]) if n else np.zeros(0, np.int64)
        n_stim = np.where(stim, np.asarray(cols["n_stim"], np.int64), 0)
        if stim_mode == "previous":
            n_stim[firsts] = 0  # "previous" never fires at a FOV's first visit
        frames = np.asarray(cols["n_image"], np.int64) + np.asarray(cols["n_ref"], np.int64)
        frames = frames + n_stim
        # phase codes in order of first appearance of each name in the schedule
        pi = np.asarray(cols["phase_index"], np.int64)
        names: dict[str, int] = {}
        code_of = np.zeros(len(phase_names), np.int64)
        order = np.sort(np.unique(pi, return_index=True)[1]) if n else np.zeros(0, np.int64)
        for k in pi[order].tolist():
            code_of[k] = names.setdefault(str(phase_names[k]), len(names))
        before = np.sort(np.asarray([w for w in waits_before if 0 <= w < n], dtype=np.int64))
        visit_cell = np.arange(n, dtype=np.int64) + np.searchsorted(
            before, np.arange(n), side="right"
        )
        cells = np.full(n + len(before), int(Cell.WAIT), dtype=np.uint8)
        cells[visit_cell] = codes.astype(np.uint8)
        return cls(
            uid=uid,
            cells=_frozen(cells),
            visit_cell=_frozen(visit_cell),
            times=_frozen(np.asarray(cols["time"], dtype=np.float64)),
            frames=_frozen(frames),
            phase=_frozen(code_of[pi] if n else np.zeros(0, np.int64)),
            phase_names=tuple(names),
            fovs=tuple((float(x), float(y)) for x, y in fovs),
            path=tuple(int(x) for x in p[firsts]),
            on_resume=on_resume,
        )

    @classmethod
    def from_visits(
        cls,
        uid: str,
        visits: Iterable[Mapping[str, Any]],
        *,
        fovs: Sequence[Sequence[float]],
        waits_before: Sequence[int] = (),
        stim_mode: str = "current",
        on_resume: str = "shift",
    ) -> RunLayout:
        """Build from schedule rows (``Schedule.rows()`` / the start doc's ``schedule``).

        ``waits_before`` lists, for each wait cell, the visit index it precedes. The rows
        become the columns `from_columns` takes (phases numbered by name, in order of first
        appearance), so both paths build a layout the same way.
        """
        rows = list(visits)
        names: dict[str, int] = {}
        phase_index = [names.setdefault(str(r.get("phase", "")), len(names)) for r in rows]
        cols = {
            "time": np.asarray([float(r["time"]) for r in rows], np.float64),
            "p": np.asarray([int(r["p"]) for r in rows], np.int64),
            "phase_index": np.asarray(phase_index, np.int64),
            "stim": np.asarray([bool(r.get("stim")) for r in rows], bool),
            "ref": np.asarray([bool(r.get("ref")) for r in rows], bool),
            "n_image": np.asarray([len(r.get("channels", ())) for r in rows], np.int64),
            "n_ref": np.asarray([len(r.get("ref_channels", ())) for r in rows], np.int64),
            "n_stim": np.asarray([len(r.get("stim_channels", ())) for r in rows], np.int64),
        }
        return cls.from_columns(
            uid,
            cols,
            list(names),
            fovs=fovs,
            waits_before=waits_before,
            stim_mode=stim_mode,
            on_resume=on_resume,
        )


def _wait_positions(experiment: Sequence[Mapping[str, Any]]) -> list[int]:
    """For each top-level ``wait`` element, how many phases come before it (flattened).

    Waits inside `parallel` branches share their time with other branches, so they get
    no cell of their own. Elements after an unresolved decision are not scheduled yet.
    """
    out: list[int] = []
    k = 0
    for el in experiment:
        kind = el.get("type")
        if kind == "phase":
            k += 1
        elif kind == "parallel":
            k += sum(p.get("type") == "phase" for b in el.get("branches", ()) for p in b)
        elif kind == "wait":
            out.append(k)
        else:  # a decision: nothing after it is in the schedule
            break
    return out


def _waits_before(experiment: Sequence[Mapping[str, Any]], phase_index: Sequence[int]) -> list[int]:
    """Visit index each wait cell precedes: the first visit of a phase after the wait."""
    pi = np.asarray(phase_index, dtype=np.int64)
    out = []
    for k in _wait_positions(experiment):
        hits = np.flatnonzero(pi >= k)
        if len(hits):
            out.append(int(hits[0]))
    return out


def layout_from_start(doc: Mapping[str, Any]) -> RunLayout | None:
    """The layout of an `optogenetic_plan` run, or None for other plans.

    Uses the start document's ``schedule``; when it is absent (schedules over 20 000
    visits are left out of the start document) the schedule is rebuilt from
    ``experiment`` and ``fovs`` with the plans' own `schedule` function (about 0.5 s for
    100 000 visits: call this off the RunEngine thread for such runs).
    """
    experiment = doc.get("experiment")
    fovs = doc.get("fovs")
    if not isinstance(experiment, list) or fovs is None:
        return None
    kw = {
        "fovs": fovs,
        "stim_mode": str(doc.get("stim_mode", "current")),
        "on_resume": str(doc.get("on_resume", "shift")),
    }
    from ..plans import shared_schedule

    sched = shared_schedule(doc.get("schedule_key"))  # built by the plan in this process
    rows = doc.get("schedule") if sched is None else None
    if sched is None and rows is None:
        sched = _rebuild(experiment, fovs, doc.get("time_per_fov"))
        if sched is None:
            return None
    if sched is not None:
        cols = sched.columns()
        waits = _waits_before(experiment, cols["phase_index"])
        names = [p.name for p in sched.phases]
        return RunLayout.from_columns(str(doc["uid"]), cols, names, waits_before=waits, **kw)
    waits = _waits_before(experiment, [int(r.get("phase_index", 0)) for r in rows])
    return RunLayout.from_visits(str(doc["uid"]), rows, waits_before=waits, **kw)


def _rebuild(
    experiment: Sequence[Mapping[str, Any]], fovs: Sequence[Sequence[float]], time_per_fov: Any
) -> Any:
    """The run's schedule from its start document (another process's run), or None."""
    from ..plans import experiment_from_json, schedule

    resolved = []
    for el in experiment:
        if el.get("type") == "decision":
            break
        resolved.append(el)
    if not any(el.get("type") in ("phase", "parallel") for el in resolved):
        return None
    elements = experiment_from_json(resolved)
    return schedule([tuple(xy) for xy in fovs], elements, time_per_fov=time_per_fov)
