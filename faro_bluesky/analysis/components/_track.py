"""Trackers: link each FOV's cells from frame to frame, incrementally.

Both trackers keep one small state per FOV and are called once per (fov, t), with ``t``
increasing per FOV (a call out of order raises `ValueError` instead of silently mixing
frames, faro-features I.5). Calls for different FOVs may run concurrently; calls for one
FOV are serialised by that FOV's lock.

Conventions shared by both:

- ``memory`` counts *visits of the FOV*, not timepoints: a cell may go undetected for up
  to ``memory`` consecutive calls and still get its id back. A FOV that is not imaged for
  a while (a phase without it, a lost frame) therefore keeps its tracks, and its cells
  are linked to where they were last seen if they are still within ``search_range``.
- Particle ids start at 1 (so a label image of particle ids keeps 0 for background), are
  unique within a FOV and are never reused, not even after a track ends.
- ``reset(fov)`` forgets a FOV (or all); its next frame starts new tracks, with ids that
  continue after the old ones (still never reused).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

#: trackpy numbers its points and tracks with counters that are class attributes, reset by
#: every ``Linker.init_level``: two linkers (two FOVs) must not run at the same time
_TRACKPY_LOCK = threading.Lock()


def _positions(cells: pd.DataFrame) -> NDArray[np.float64]:
    missing = {"x", "y"} - set(cells.columns)
    if missing:
        raise ValueError(f"cells need columns 'x' and 'y' to be tracked; missing {sorted(missing)}")
    # two column reads, not cells[["x", "y"]] (a new frame: ~10x slower for ~40 cells)
    return np.column_stack(
        [cells["x"].to_numpy(dtype=np.float64), cells["y"].to_numpy(dtype=np.float64)]
    ).reshape(-1, 2)


@dataclass
class _FovState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_t: int | None = None
    next_id: int = 1
    data: Any = None
    """Tracker-specific linking state."""


class _PerFovTracker:
    """Per-FOV state, ordering checks and locking; subclasses implement `_link`."""

    def __init__(self, search_range: float, memory: int) -> None:
        if search_range <= 0:
            raise ValueError(f"search_range must be > 0 px, got {search_range}")
        if memory < 0:
            raise ValueError(f"memory must be >= 0 frames, got {memory}")
        self.search_range = float(search_range)
        self.memory = int(memory)
        self._states: dict[int, _FovState] = {}
        self._next_ids: dict[int, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(search_range={self.search_range}, memory={self.memory})"

    def _state(self, fov: int) -> _FovState:
        with self._lock:
            state = self._states.get(fov)
            if state is None:
                state = self._states[fov] = _FovState(next_id=self._next_ids.pop(fov, 1))
            return state

    def track(self, fov: int, t: int, cells: pd.DataFrame) -> pd.DataFrame:
        """``cells`` (a copy) with an int64 ``particle`` column (see module docstring)."""
        xy = _positions(cells)
        while True:
            state = self._state(fov)
            with state.lock:
                if self._states.get(fov) is not state:  # reset() meanwhile: use the new one
                    continue
                particles = self._track_locked(state, fov, t, xy)
                break
        out = cells.copy()
        out["particle"] = particles
        return out

    def _track_locked(
        self, state: _FovState, fov: int, t: int, xy: NDArray[np.float64]
    ) -> NDArray[np.int64]:
        if state.last_t is not None and t <= state.last_t:
            raise ValueError(
                f"{type(self).__name__}: FOV {fov} was already tracked up to t={state.last_t}; "
                f"got t={t}. Frames of a FOV must be tracked once each, in acquisition order"
            )
        particles = self._link(state, xy).astype(np.int64)
        state.last_t = t
        return particles

    def reset(self, fov: int | None = None) -> None:
        """Forget the tracks of ``fov`` (all FOVs if None); ids are still never reused."""
        with self._lock:
            fovs = list(self._states) if fov is None else [fov]
            for f in fovs:
                state = self._states.pop(f, None)
                if state is not None:
                    with state.lock:
                        self._next_ids[f] = state.next_id

    @staticmethod
    def _new_ids(state: _FovState, n: int) -> NDArray[np.int64]:
        ids = np.arange(state.next_id, state.next_id + n, dtype=np.int64)
        state.next_id += n
        return ids

    def _link(self, state: _FovState, xy: NDArray[np.float64]) -> NDArray[np.int64]:
        raise NotImplementedError


@dataclass
class _Tracks:
    """Live tracks of one FOV for `NearestNeighbourTracker`."""

    ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    xy: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 2)))
    missed: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    """Visits since each track was last matched."""


class NearestNeighbourTracker(_PerFovTracker):
    """Frame-to-frame linking by globally optimal assignment (scipy only).

    Each frame, every live track (seen within the last ``memory`` visits, at its last
    position) may link to a detection within ``search_range`` px. A KD-tree finds the
    candidate pairs; the pairs split into independent groups (connected components), and
    each group is solved with `scipy.optimize.linear_sum_assignment`, minimising the sum
    of squared displacements where ending a track costs ``search_range**2``. So a cell
    links to its nearest free detection unless that would force a neighbour into a worse
    link, and no link is ever longer than ``search_range``. Unmatched detections start new
    tracks. No motion model: our cells wobble, they do not fly.

    :param search_range: largest displacement (px) between visits (50, as faro's trackpy
        default). A larger range is safe against neighbours (the assignment is global) but
        lets a newcomer inherit the id of a cell that vanished nearby.
    :param memory: visits a track survives undetected (see module docstring).
    """

    def __init__(self, search_range: float = 50.0, memory: int = 3) -> None:
        super().__init__(search_range, memory)

    def _link(self, state: _FovState, xy: NDArray[np.float64]) -> NDArray[np.int64]:
        tracks: _Tracks = state.data if state.data is not None else _Tracks()
        n_tracks, n_cells = len(tracks.ids), len(xy)
        particles = np.full(n_cells, -1, np.int64)
        matched = np.zeros(n_tracks, bool)
        if n_tracks and n_cells:
            for ti, ci in self._assign(tracks.xy, xy):
                particles[ci] = tracks.ids[ti]
                matched[ti] = True
        born = particles < 0
        particles[born] = self._new_ids(state, int(born.sum()))
        # update: matched tracks move, unmatched ones age, too old ones end, new ones start
        missed = np.where(matched, 0, tracks.missed + 1)
        xy_tracks = tracks.xy.copy()
        if matched.any():
            order = {pid: i for i, pid in enumerate(particles.tolist())}
            rows = [order[pid] for pid in tracks.ids[matched].tolist()]
            xy_tracks[matched] = xy[rows]
        keep = missed <= self.memory
        state.data = _Tracks(
            ids=np.concatenate([tracks.ids[keep], particles[born]]),
            xy=np.concatenate([xy_tracks[keep], xy[born]]),
            missed=np.concatenate([missed[keep], np.zeros(int(born.sum()), np.int64)]),
        )
        return particles

    def _assign(
        self, track_xy: NDArray[np.float64], cell_xy: NDArray[np.float64]
    ) -> list[tuple[int, int]]:
        """Optimal (track, cell) links, solved per connected group of candidates."""
        pairs = cKDTree(track_xy).sparse_distance_matrix(
            cKDTree(cell_xy), self.search_range, output_type="ndarray"
        )
        if pairs.size == 0:
            return []
        ti, ci, dist = pairs["i"], pairs["j"], pairs["v"]
        n_t, n_c = len(track_xy), len(cell_xy)
        graph = coo_matrix((np.ones(ti.size), (ti, n_t + ci)), shape=(n_t + n_c,) * 2)
        _, component = connected_components(graph, directed=False)
        death = self.search_range**2
        pair_component = component[ti]
        # A group with one candidate pair (one track, one cell: most groups when cells are
        # further apart than they move) is solved without the solver: link unless ending
        # the track is cheaper, as linear_sum_assignment decides for [[d², death]]. Only
        # the crowded groups go through the solver, one call each.
        pairs_in = np.bincount(pair_component, minlength=component.max() + 1)
        alone = pairs_in[pair_component] == 1
        linked = alone & (dist**2 <= death)
        links: list[tuple[int, int]] = list(
            zip(ti[linked].tolist(), ci[linked].tolist(), strict=True)
        )
        crowded = ~alone
        for comp in np.unique(pair_component[crowded]):
            sel = pair_component == comp
            t_idx, t_inv = np.unique(ti[sel], return_inverse=True)
            c_idx, c_inv = np.unique(ci[sel], return_inverse=True)
            nt, nc = t_idx.size, c_idx.size
            # columns: one per cell, then one "end this track" slot per track
            cost = np.full((nt, nc + nt), np.inf)
            cost[t_inv, c_inv] = dist[sel] ** 2
            cost[np.arange(nt), nc + np.arange(nt)] = death
            rows, cols = linear_sum_assignment(cost)
            links += [
                (int(t_idx[r]), int(c_idx[c])) for r, c in zip(rows, cols, strict=True) if c < nc
            ]
        return links


@dataclass
class _TrackpyState:
    linker: Any
    level: int


class TrackpyTracker(_PerFovTracker):
    """trackpy's incremental `trackpy.linking.Linker`, one per FOV (faro's ``TrackerTrackpy``).

    trackpy links by minimising total displacement within subnets, shrinking the search
    range adaptively (down to ``adaptive_stop``) when a subnet is too large to solve.
    Frame numbers given to trackpy are per-FOV visit counts, so ``memory`` means visits as
    for `NearestNeighbourTracker`. Particle ids are ours, not trackpy's: trackpy's track
    counter is global and restarts whenever any linker starts, which in faro gave two FOVs
    (or one FOV after another's start) the same ids. Calls into trackpy are serialised by
    a module lock for the same reason.

    :param search_range: largest displacement (px) between visits.
    :param memory: visits a track survives undetected.
    :param adaptive_stop: smallest search range (px) adaptive search may shrink to; ``None``
        disables adaptive search (oversized subnets then raise).
    :param adaptive_step: factor by which adaptive search shrinks the range.
    :param link_strategy: trackpy's subnet solver (``None``: its default).
    """

    def __init__(
        self,
        search_range: float = 50.0,
        memory: int = 3,
        *,
        adaptive_stop: float | None = 3.0,
        adaptive_step: float = 0.95,
        link_strategy: str | None = None,
    ) -> None:
        # trackpy is an optional extra: say so now, before any run, not at the first link
        if importlib.util.find_spec("trackpy") is None:
            raise ImportError(
                "TrackpyTracker needs the optional package 'trackpy', which is not installed: "
                "install it with `uv sync --extra trackpy` (or `pip install "
                "faro-bluesky[trackpy]`), or use NearestNeighbourTracker"
            )
        super().__init__(search_range, memory)
        self.adaptive_stop = adaptive_stop
        self.adaptive_step = adaptive_step
        self.link_strategy = link_strategy

    def _linker(self) -> Any:
        from trackpy.linking import Linker

        return Linker(
            self.search_range,
            memory=self.memory,
            adaptive_stop=self.adaptive_stop,
            adaptive_step=self.adaptive_step,
            link_strategy=self.link_strategy,
        )

    def _link(self, state: _FovState, xy: NDArray[np.float64]) -> NDArray[np.int64]:
        data: _TrackpyState | None = state.data
        with _TRACKPY_LOCK:
            if data is None:
                if len(xy) == 0:  # nothing to start tracks from yet
                    return np.zeros(0, np.int64)
                data = state.data = _TrackpyState(self._linker(), 0)
                data.linker.init_level(xy, data.level)
            else:
                data.level += 1
                data.linker.next_level(xy, data.level)
            tracks = [point.track for point in data.linker.hash.points]
        particles = np.empty(len(tracks), np.int64)
        seen: set[int] = set()
        for i, track in enumerate(tracks):
            pid = getattr(track, "faro_particle", None)
            if pid is None:  # a track trackpy started now
                pid = track.faro_particle = int(self._new_ids(state, 1)[0])
            elif pid in seen:  # two points on one track (a trackpy quirk faro worked around)
                pid = int(self._new_ids(state, 1)[0])
            seen.add(pid)
            particles[i] = pid
        return particles
