"""The simulated sample: cells that drift, and an ERK-like activity driven by light.

Cells sit on a jittered grid of sites over an unbounded world (µm), generated lazily and
deterministically from the seed, so any stage position shows cells and the same seed
always shows the same ones. Each cell has a nucleus and a cytoplasm (ellipses) and wobbles
slowly around its site. Light delivered during a stimulation exposure raises an input
``u`` (decays with ``tau_input_s``) that drives the activity ``a``:
``da/dt = k_rise * u * (1 - a) - a / tau_decay`` — a rise over seconds, a decay over tens
of seconds. Sample time runs ``time_scale`` times faster than the clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

_OFFSET = 1 << 15  # grid indices are offset so that cell ids are non-negative


@dataclass(frozen=True)
class SampleParams:
    """Geometry and dynamics of the simulated cells (lengths in µm, times in s)."""

    spacing_um: float = 45.0
    """Distance between neighbouring cell sites."""
    occupancy: float = 0.8
    """Probability that a site holds a cell."""
    jitter_um: float = 7.0
    """Largest offset of a cell from its site."""
    nucleus_radius_um: tuple[float, float] = (4.5, 6.5)
    """Range of nucleus radii (major half-axis)."""
    cell_radius_factor: float = 2.0
    """Cell radius as a multiple of the nucleus radius."""
    wobble_um: float = 5.0
    """Amplitude of each cell's slow drift around its site."""
    wobble_period_s: tuple[float, float] = (240.0, 600.0)
    """Range of drift periods."""
    tau_input_s: float = 4.0
    """Decay time of the light-driven input."""
    k_rise_per_s: float = 0.8
    """Rate at which a full input drives activity up."""
    tau_decay_s: float = 30.0
    """Decay time of the activity."""
    dose_gain: float = 40.0
    """Input added per (lit fraction x power fraction x second of light)."""
    ratio_rest: float = 0.45
    """ERK-KTR cytoplasm/nucleus ratio at zero activity."""
    ratio_gain: float = 1.6
    """Increase of that ratio at full activity."""
    time_scale: float = 1.0
    """Sample seconds per clock second (> 1 makes tests and demos fast)."""


@dataclass(frozen=True, slots=True)
class Cells:
    """The cells near a field of view at one instant, as arrays (one row per cell)."""

    ids: NDArray[np.int64]
    xy_um: NDArray[np.float64]  # (n, 2) world position of the centre
    nucleus_um: NDArray[np.float64]  # (n,) nucleus major half-axis
    elongation: NDArray[np.float64]  # (n,) major/minor ratio
    angle: NDArray[np.float64]  # (n,) orientation (rad)
    marker: NDArray[np.float64]  # (n,) nuclear-marker expression
    ktr: NDArray[np.float64]  # (n,) ERK-KTR expression
    activity: NDArray[np.float64]  # (n,) 0..1


@dataclass
class _Activity:
    """Light input and activity of the cells that are not at rest."""

    t: float = 0.0
    state: dict[int, NDArray[np.float64]] = field(default_factory=dict)  # id -> [u, a]


class SimSample:
    """A deterministic, unbounded field of cells (see module docstring).

    :param seed: the same seed gives the same cells.
    :param params: geometry and dynamics.
    :param clock: wall clock in seconds (injectable for deterministic tests).
    """

    def __init__(
        self,
        seed: int = 0,
        params: SampleParams | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seed = seed
        self.params = params or SampleParams()
        self._clock = clock
        self._t0 = clock()
        self._sites: dict[tuple[int, int], tuple | None] = {}
        self._activity = _Activity()
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- time
    def now(self) -> float:
        """Sample time in s since creation (clock time x ``time_scale``)."""
        return (self._clock() - self._t0) * self.params.time_scale

    # ---------------------------------------------------------------- cells
    def _site(self, i: int, j: int) -> tuple | None:
        key = (i, j)
        if key not in self._sites:
            rng = np.random.default_rng([self.seed, i + _OFFSET, j + _OFFSET])
            p = self.params
            if rng.random() >= p.occupancy:
                self._sites[key] = None
            else:
                r = rng.uniform(-p.jitter_um, p.jitter_um, 2)
                self._sites[key] = (
                    (i + _OFFSET) * (1 << 16) + (j + _OFFSET),  # id
                    (i * p.spacing_um + r[0], j * p.spacing_um + r[1]),  # site
                    rng.uniform(*p.nucleus_radius_um),
                    rng.uniform(1.0, 1.35),
                    rng.uniform(0, np.pi),
                    rng.uniform(0.6, 1.4),  # marker expression
                    rng.uniform(0.7, 1.3),  # ktr expression
                    rng.uniform(*p.wobble_period_s, 2),
                    rng.uniform(0, 2 * np.pi, 2),
                )
        return self._sites[key]

    def cells_in(self, x0: float, y0: float, x1: float, y1: float, t: float) -> Cells:
        """Cells whose centre lies in the world box ``[x0, x1] x [y0, y1]`` at time ``t``."""
        p = self.params
        margin = p.jitter_um + p.wobble_um
        i_range = range(
            int(np.floor((x0 - margin) / p.spacing_um)),
            int(np.ceil((x1 + margin) / p.spacing_um)) + 1,
        )
        j_range = range(
            int(np.floor((y0 - margin) / p.spacing_um)),
            int(np.ceil((y1 + margin) / p.spacing_um)) + 1,
        )
        with self._lock:
            sites = [s for i in i_range for j in j_range if (s := self._site(i, j))]
            self._advance(t)
            state = self._activity.state
            rows = []
            for cid, (sx, sy), rn, el, ang, mk, kt, per, ph in sites:
                x = sx + p.wobble_um * np.sin(2 * np.pi * t / per[0] + ph[0])
                y = sy + p.wobble_um * np.sin(2 * np.pi * t / per[1] + ph[1])
                if x0 <= x <= x1 and y0 <= y <= y1:
                    a = state[cid][1] if cid in state else 0.0
                    rows.append((cid, x, y, rn, el, ang, mk, kt, a))
        arr = np.array(rows, dtype=float).reshape(-1, 9)
        return Cells(
            ids=arr[:, 0].astype(np.int64),
            xy_um=arr[:, 1:3],
            nucleus_um=arr[:, 3],
            elongation=arr[:, 4],
            angle=arr[:, 5],
            marker=arr[:, 6],
            ktr=arr[:, 7],
            activity=arr[:, 8],
        )

    # ------------------------------------------------------------- activity
    def _advance(self, t: float) -> None:
        """Integrate input and activity of non-resting cells up to sample time ``t``."""
        act = self._activity
        dt_total = t - act.t
        if dt_total <= 0:
            return
        act.t = t
        if not act.state:
            return
        p = self.params
        ids = list(act.state)
        ua = np.array([act.state[i] for i in ids])
        u, a = ua[:, 0], ua[:, 1]
        remaining = dt_total
        while remaining > 0 and u.max() > 1e-4:
            dt = min(0.05, remaining)
            a = a + dt * (p.k_rise_per_s * u * (1 - a) - a / p.tau_decay_s)
            u = u * np.exp(-dt / p.tau_input_s)
            remaining -= dt
        if remaining > 0:
            a = a * np.exp(-remaining / p.tau_decay_s)
            u = u * np.exp(-remaining / p.tau_input_s)
        for cid, ui, ai in zip(ids, u, a, strict=True):
            if ui < 1e-6 and ai < 1e-4:
                del act.state[cid]
            else:
                act.state[cid] = np.array([ui, ai])

    def deliver_light(
        self,
        ids: NDArray[np.int64],
        lit_fraction: NDArray[np.float64],
        power_fraction: float,
        duration_s: float,
    ) -> None:
        """Add the light dose of one exposure to cells ``ids`` (lit fraction of each cell)."""
        p = self.params
        with self._lock:
            self._advance(self.now())
            for cid, frac in zip(ids.tolist(), lit_fraction.tolist(), strict=True):
                dose = p.dose_gain * frac * power_fraction * duration_s
                if dose <= 0:
                    continue
                u, a = self._activity.state.get(cid, np.zeros(2))
                self._activity.state[cid] = np.array([min(1.0, u + dose), a])

    def activity(self, ids: NDArray[np.int64] | list[int]) -> NDArray[np.float64]:
        """Activity (0..1) of cells ``ids`` now."""
        with self._lock:
            self._advance(self.now())
            state = self._activity.state
            return np.array([state[i][1] if i in state else 0.0 for i in np.asarray(ids).tolist()])

    def erk_ratio(self, activity: NDArray[np.float64]) -> NDArray[np.float64]:
        """True ERK-KTR cytoplasm/nucleus intensity ratio for ``activity``."""
        return self.params.ratio_rest + self.params.ratio_gain * np.asarray(activity)
