"""The schedule's visits: `Visit` and `Schedule`, the sequence the plan walks.

A `Schedule` keeps its visits as columns (made by `schedule`, `_schedule.py`) and makes a
`Visit` when one is asked for; `columns` gives the arrays themselves (decision 0056).
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from numpy.typing import NDArray

from ._model import Channel, Phase

if TYPE_CHECKING:
    import pandas as pd

    from ._schedule import _Block

__all__ = ["Schedule", "Visit", "share", "shared"]


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


@dataclass(frozen=True, slots=True)
class _PhaseInfo:
    """What every visit of one phase shares (made once per phase, not per visit)."""

    name: str
    channels: tuple[Channel, ...]
    ref_channels: tuple[Channel, ...]
    ref_frames: frozenset[int]
    metadata: dict[str, Any]
    phase: Phase
    stims: dict[int, tuple[Channel, ...]]

    @classmethod
    def of(cls, k: int, phase: Phase) -> _PhaseInfo:
        return cls(
            phase.name,
            phase.channels,
            phase.ref_channels,
            frozenset(phase.ref_frames),
            {**phase.metadata, "phase_name": phase.name, "phase_index": k},
            phase,
            {},
        )

    def stim_at(self, frame: int) -> tuple[Channel, ...]:
        stim = self.stims.get(frame)
        if stim is None:
            stim = self.stims[frame] = self.phase.stim_channels_at(frame)
        return stim


class Schedule(Sequence[Visit]):
    """An immutable, ordered sequence of `Visit`s with the context to read them.

    Index it, iterate it, print it (`table`), or export it (`rows`, `to_dataframe`,
    `to_json`).
    """

    __slots__ = (
        "__weakref__",
        "_cols",
        "_fovs",
        "_phase_info",
        "_phases",
        "_rests",
        "_start",
        "_visits",
    )

    def __init__(
        self,
        visits: Sequence[Visit],
        *,
        fovs: Sequence[tuple[float, float]],
        phases: Sequence[Phase],
        start: float = 0.0,
    ) -> None:
        self._visits: tuple[Visit, ...] | None = tuple(visits)
        self._cols: _Block | None = None
        self._rests: dict[int, tuple[tuple[int, float], ...]] = {}
        self._phase_info: list[_PhaseInfo] = []
        self._fovs = tuple(fovs)
        self._phases = tuple(phases)
        self._start = float(start)

    @classmethod
    def _from_columns(
        cls,
        block: _Block,
        rests: dict[int, tuple[tuple[int, float], ...]],
        *,
        fovs: Sequence[tuple[float, float]],
        phases: Sequence[Phase],
        start: float,
    ) -> Schedule:
        """A schedule kept as columns; each `Visit` is made when it is asked for."""
        out = cls((), fovs=fovs, phases=phases, start=start)
        out._visits, out._cols, out._rests = None, block, rests
        out._phase_info = [_PhaseInfo.of(k, p) for k, p in enumerate(out._phases)]
        return out

    def __len__(self) -> int:
        return len(self._visits) if self._visits is not None else len(self._cols)

    def __iter__(self) -> Iterator[Visit]:
        if self._visits is not None:
            return iter(self._visits)
        return (self._visit(i) for i in range(len(self)))

    @overload
    def __getitem__(self, i: int) -> Visit: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Visit, ...]: ...
    def __getitem__(self, i: int | slice) -> Visit | tuple[Visit, ...]:
        if self._visits is not None:
            return self._visits[i]
        if isinstance(i, slice):
            return tuple(self._visit(j) for j in range(*i.indices(len(self))))
        n = len(self)
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"visit index {i} out of range for {n} visits")
        return self._visit(j)

    def _visit(self, i: int) -> Visit:
        c = self._cols
        k, frame = int(c.phase[i]), int(c.frame[i])
        info = self._phase_info[k]
        p = int(c.p[i])
        return Visit(
            index=i,
            t=int(c.t[i]),
            p=p,
            xy=self._fovs[p],
            phase=info.name,
            phase_index=k,
            frame=frame,
            time=float(c.time[i]),
            channels=info.channels,
            stim_channels=info.stim_at(frame),
            ref_channels=info.ref_channels if frame in info.ref_frames else (),
            metadata=dict(info.metadata),
            rests=self._rests.get(i, ()),
        )

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
        if self._cols is not None:
            return float(self._cols.time.max()) if len(self._cols) else self._start
        return max((v.time for v in self._visits), default=self._start)

    @property
    def duration(self) -> float:
        """Seconds from the start to the last visit (``end - start``)."""
        return self.end - self._start

    @property
    def n_timepoints(self) -> int:
        """Number of t indices used (max t + 1)."""
        if self._cols is not None:
            return int(self._cols.t.max()) + 1 if len(self._cols) else 0
        return max((v.t for v in self._visits), default=-1) + 1

    def n_frames(self) -> int:
        """Imaging and reference frames of every visit (stimulation frames not counted)."""
        cols = self.columns()
        return int(cols["n_image"].sum() + cols["n_ref"].sum())

    def columns(self) -> dict[str, NDArray]:
        """The visits as arrays, one entry per visit, in run order (no `Visit` is made).

        ``time``, ``t``, ``p``, ``frame``, ``phase_index``; ``stim`` and ``ref`` (bool);
        ``n_image``, ``n_ref``, ``n_stim``: the frames each visit records of each kind.
        What the status display needs for 200 000 visits in milliseconds.
        """
        if self._cols is None:
            v = list(self)
            cols = {
                "time": np.array([x.time for x in v], np.float64),
                "t": np.array([x.t for x in v], np.int64),
                "p": np.array([x.p for x in v], np.int64),
                "frame": np.array([x.frame for x in v], np.int64),
                "phase_index": np.array([x.phase_index for x in v], np.int64),
                "n_image": np.array([len(x.channels) for x in v], np.int64),
                "n_ref": np.array([len(x.ref_channels) for x in v], np.int64),
                "n_stim": np.array([len(x.stim_channels) for x in v], np.int64),
            }
        else:
            c = self._cols
            cols = {
                "time": c.time,
                "t": c.t,
                "p": c.p,
                "frame": c.frame,
                "phase_index": c.phase,
            }
            n_image = np.zeros(len(c), np.int64)
            n_ref = np.zeros(len(c), np.int64)
            n_stim = np.zeros(len(c), np.int64)
            for k, info in enumerate(self._phase_info):
                here = np.flatnonzero(c.phase == k)
                frames = c.frame[here]
                n_image[here] = len(info.channels)
                if info.ref_frames:
                    is_ref = np.isin(frames, list(info.ref_frames))
                    n_ref[here[is_ref]] = len(info.ref_channels)
                uniq, inverse = np.unique(frames, return_inverse=True)
                per = np.array([len(info.stim_at(int(f))) for f in uniq], np.int64)
                n_stim[here] = per[inverse] if len(uniq) else 0
            cols |= {"n_image": n_image, "n_ref": n_ref, "n_stim": n_stim}
        cols["stim"] = cols["n_stim"] > 0
        cols["ref"] = cols["n_ref"] > 0
        return cols

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
            for v in self
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
        hidden = 0
        if len(self) > max_rows:
            head = max(1, max_rows // 2)
            hidden = len(self) - max_rows
            visits = [*self[:head], *self[head + hidden :]]
        else:
            visits = list(self)
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


_SHARED: weakref.WeakValueDictionary[str, Schedule] = weakref.WeakValueDictionary()


def share(sched: Schedule) -> str:
    """Register ``sched`` for this process; the key a start document carries.

    The plan builds its schedule once; a status callback in the same process finds it by
    the key (`shared`) instead of building it again from the start document.
    """
    key = uuid.uuid4().hex
    _SHARED[key] = sched
    return key


def shared(key: object) -> Schedule | None:
    """The schedule `share` registered under ``key`` (None: another process's, or gone)."""
    return _SHARED.get(key) if isinstance(key, str) else None
