"""Bounds of an experiment and the small checks every argument goes through.

An experiment is refused, not built, when it is larger than a machine can hold or longer
than anyone means (docs/decisions/0035-input-bounds-and-real-waits.md): a typo such as
``n_frames=10**9`` must end in a message within milliseconds, not in minutes of building
and gigabytes of memory. The checks here return a problem sentence (or None) instead of
raising, so that one `ExperimentError` can list every problem at once.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "MAX_SECONDS",
    "MAX_VISITS",
    "number_problem",
    "position_problem",
]

MAX_VISITS = 1_000_000
"""Most visits (FOV x timepoint) one experiment may schedule.

Measured 2026-12 on the 2-core dev machine: a schedule takes ~5 µs and ~440 bytes per
visit, so one million visits build in ~5 s and hold ~0.4 GB. Ten million would take
~1 min and several GB before the run even opened.
"""

MAX_SECONDS = 365 * 24 * 3600.0
"""Longest span (s) an interval, a wait or a whole schedule may have: one year.

Beyond it a value is a typo (ms for s, an exponent too many), and float times since the
run start stay exact to well under a microsecond.
"""


def _is_real(value: Any) -> bool:
    """A real number that is not a bool (``True`` is an int to Python, never a duration)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def number_problem(
    field: str,
    value: Any,
    *,
    unit: str = "s",
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    optional: bool = False,
) -> str | None:
    """Why ``value`` is not an acceptable ``field`` (a finite real in range), or None."""
    if value is None and optional:
        return None
    hint = " (or None to leave it unset)" if optional else ""
    if not _is_real(value):
        return f"{field}={value!r} is not a number: give a number of {unit}{hint}"
    v = float(value)
    if not math.isfinite(v):
        return f"{field}={value!r} is not finite: give a finite number of {unit}{hint}"
    if gt is not None and not v > gt:
        return f"{field}={value!r} must be > {gt:g} {unit}{hint}"
    if ge is not None and not v >= ge:
        return f"{field}={value!r} must be >= {ge:g} {unit}{hint}"
    if le is not None and not v <= le:
        return f"{field}={value!r} must be <= {le:g} {unit}{hint}"
    return None


def position_problem(field: str, xy: Any) -> str | None:
    """Why ``xy`` is not an (x, y) stage position of two finite numbers (µm), or None.

    Only ordered containers count (tuple, list, 1-D array): a string, a dict or a set of
    two numbers has no reliable x and y.
    """
    ordered = isinstance(xy, Sequence) and not isinstance(xy, str | bytes)
    if not (ordered or (isinstance(xy, np.ndarray) and xy.ndim == 1)):
        return f"{field}={xy!r} is not an (x, y) pair of numbers (µm): write (x, y)"
    if len(xy) != 2:
        z = " (z is not part of a FOV)" if len(xy) == 3 else ""
        return f"{field}={xy!r} is not an (x, y) pair ({len(xy)} values): write (x, y) in µm{z}"
    x, y = xy
    if not (_is_real(x) and _is_real(y)):
        return f"{field}={xy!r} is not an (x, y) pair of numbers (µm): write (x, y)"
    if not (math.isfinite(float(x)) and math.isfinite(float(y))):
        return f"{field}={xy!r} is not finite: give finite stage coordinates in µm"
    return None
