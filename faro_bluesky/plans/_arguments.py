"""Type, finiteness and range checks of `optogenetic_plan`'s own arguments.

They run first, before anything is built, so that ``fovs=["a"]``, ``phases=None`` or
``md="notadict"`` end in the experiment's one `ExperimentError` (field and fix named)
rather than a bare ``TypeError`` from deep inside. A string where an object is meant
(``stim_mask="all"``, ``analyzer="otsu"``) is refused: taken as a name it would be looked
up by nobody and the stimulation or analysis silently not done.

A bad argument is replaced by a harmless placeholder (``None`` for a FOV, ``[]``,
``{}``) so the other checks (devices, schedule) still run and every problem is listed at
once; the placeholders never reach a run because the problems are raised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bluesky.protocols import Readable
from pydantic import BaseModel

from ..schema import DocumentSink, contract_problems, provides_masks
from ._limits import MAX_SECONDS, MAX_VISITS, number_problem, position_problem
from ._model import Parallel, Phase, Wait
from ._validate import iter_phases

__all__ = ["PlanArguments", "check_arguments"]

_SCALARS = (str, bytes, int, float, complex, np.number, np.bool_)
"""Values that are never an analyzer (a name or a number is not looked up)."""


@dataclass
class PlanArguments:
    """The arguments as the plan keeps them, and what is wrong with them."""

    fovs: list[tuple[float, float] | None]
    """Positions; ``None`` where ``fovs[i]`` was refused (its index kept for messages)."""
    phases: list[Any] | None
    """The experiment elements; None when ``phases`` itself was refused."""
    per_visit: list[Any]
    md: dict[str, Any]
    analyzer: Any
    stim_mask: Any
    """None, a bool or a numpy array (a nested list becomes an array)."""
    time_per_fov: float | None
    mask_timeout: float | None
    problems: list[str] = field(default_factory=list)


def _listed(value: Any, name: str, example: str, problems: list[str]) -> list[Any] | None:
    """``value`` as a list if it is a collection of items, else None and a problem."""
    if isinstance(value, BaseModel):
        problems.append(f"{name}={value!r} is one item, not a list: write [{example}]")
        return None
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        problems.append(f"{name}={value!r} is not a list: write [{example}]")
        return None
    if isinstance(value, np.ndarray) and value.ndim == 0:
        problems.append(f"{name}={value!r} is not a list: write [{example}]")
        return None
    return list(value)


def _fovs(value: Any, problems: list[str]) -> list[tuple[float, float] | None]:
    if isinstance(value, Readable | str | bytes | Mapping):
        problems.append(f"fovs={value!r} is not a list of (x, y) stage positions: write [(x, y)]")
        return []
    if isinstance(value, np.ndarray) and value.ndim != 2:
        problems.append(f"fovs array has shape {value.shape}: give an (n, 2) array of (x, y) in µm")
        return []
    if isinstance(value, Sequence | np.ndarray) and len(value) > MAX_VISITS:
        problems.append(
            f"fovs holds {len(value):,} positions, more than the {MAX_VISITS:,} visits one "
            "experiment may schedule: split the FOVs over several runs"
        )
        return []
    items = _listed(value, "fovs", "(x, y), ...", problems)
    if items is None:
        return []
    if not items:
        problems.append("fovs is empty: give at least one (x, y) stage position")
    out: list[tuple[float, float] | None] = []
    for i, xy in enumerate(items):
        problem = position_problem(f"fovs[{i}]", xy)
        if problem is not None:
            problems.append(problem)
            out.append(None)
        else:
            out.append((float(xy[0]), float(xy[1])))
    return out


def _analyzer(value: Any, problems: list[str]) -> Any:
    if value is None:
        return None
    if isinstance(value, _SCALARS):
        problems.append(
            f"analyzer={value!r} is not an analyzer (a name is not looked up): build one, "
            "e.g. Analyzer(segmenter=...) from faro_bluesky.analysis, or pass None"
        )
        return None
    if not (isinstance(value, DocumentSink) or provides_masks(value)):
        problems.append(
            f"analyzer={value!r} neither takes documents (it is not callable) nor provides "
            "masks, so it would never run: pass a faro_bluesky.analysis.Analyzer or None"
        )
    problems += contract_problems(value)  # the roles it takes on, checked once, here
    return value


def _stim_mask(value: Any, analyzer: Any, problems: list[str]) -> Any:
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str | bytes):
        problems.append(
            f"stim_mask={value!r} is a string: use None or True for the whole field, False "
            "for no light, or a bool array of the camera's shape (camera pixels)"
        )
        return None
    if provides_masks(analyzer):
        problems.append(
            "stim_mask is given but the analyzer provides the masks, so stim_mask would be "
            "ignored: drop stim_mask, or drop the analyzer for a fixed mask"
        )
        return None
    try:
        mask = np.asarray(value)
    except (TypeError, ValueError):
        mask = np.asarray(None)
    if mask.ndim != 2 or not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.number)):
        problems.append(
            f"stim_mask must be True/False/None or a 2-D bool array of the camera's shape; "
            f"got {type(value).__name__} of shape {mask.shape} and dtype {mask.dtype}"
        )
        return None
    if np.issubdtype(mask.dtype, np.inexact) and not np.isfinite(mask).all():
        problems.append("stim_mask holds NaN or inf: give a bool array (True = light)")
        return None
    return mask


def _decision_problem(i: int, el: Callable[..., Any]) -> str | None:
    """Why ``el`` can't be a decision callable ``f(ctx)``, or None."""
    import inspect

    from ._model import parallel, wait

    if not callable(el):
        return None  # named by validate_experiment: not a Phase, wait() or parallel()
    if isinstance(el, type):
        return f"phases[{i}] is the class {el.__name__}, not an element: call it, e.g. Phase(...)"
    if el is wait or el is parallel:
        return f"phases[{i}] is the function {el.__name__} itself: call it, e.g. wait(60)"
    try:
        inspect.signature(el).bind(None)
    except TypeError:
        return (
            f"phases[{i}]={el!r} can't be a decision: a decision is called with one argument "
            "(the DecisionContext), e.g. def decide(ctx): return Phase(...)"
        )
    except ValueError:  # no signature to inspect (some builtins): trust it
        return None
    return None


def check_arguments(
    fovs: Any,
    phases: Any,
    *,
    analyzer: Any,
    per_visit: Any,
    md: Any,
    time_per_fov: Any,
    stim_mask: Any,
    mask_timeout: Any,
) -> PlanArguments:
    """Check and normalise the plan's arguments; never raises (see `PlanArguments`)."""
    problems: list[str] = []
    positions = _fovs(fovs, problems)
    elements = _listed(phases, "phases", "Phase(...), wait(60), ...", problems)
    for i, el in enumerate(elements or ()):
        problem = None if isinstance(el, Phase | Wait | Parallel) else _decision_problem(i, el)
        if problem is not None:
            problems.append(problem)
    readers = [] if per_visit is None else per_visit
    if isinstance(readers, Readable):
        problems.append(f"per_visit={readers!r} is one device, not a list: write [device]")
        readers = []
    readers = _listed(readers, "per_visit", "device, ...", problems) or []
    meta: dict[str, Any] = {}
    if md is not None and not isinstance(md, Mapping):
        problems.append(f"md={md!r} is not a dict: write md={{'sample': 'HeLa'}} (or None)")
    elif md is not None:
        meta = dict(md)
        bad = [k for k in meta if not isinstance(k, str)]
        if bad:
            problems.append(f"md keys {bad!r} are not strings: start-document keys are str")
    tpf = number_problem("time_per_fov", time_per_fov, gt=0, le=MAX_SECONDS, optional=True)
    if tpf is not None:
        problems.append(tpf)
    timeout = number_problem("mask_timeout", mask_timeout, gt=0, le=MAX_SECONDS, optional=True)
    if timeout is not None:
        problems.append(timeout)
    checked_analyzer = _analyzer(analyzer, problems)
    mask = _stim_mask(stim_mask, checked_analyzer, problems)
    decisions = any(not isinstance(e, Phase | Wait | Parallel) for e in elements or ())
    stimulates = any(p.stim_frames for p in iter_phases(elements or ()))
    if stim_mask is not None and mask is not None and not (stimulates or decisions):
        problems.append(
            "stim_mask is given but no phase stimulates (no stim_frames), so it would be "
            "ignored: add stim_channels and stim_frames to a phase, or drop stim_mask"
        )
    return PlanArguments(
        fovs=positions,
        phases=elements,
        per_visit=readers,
        md=meta,
        analyzer=checked_analyzer,
        stim_mask=mask,
        time_per_fov=None if tpf is not None else time_per_fov,
        mask_timeout=None if timeout is not None or mask_timeout is None else float(mask_timeout),
        problems=problems,
    )
