"""Start documents that follow bluesky's conventions, for every faro plan.

bluesky's own plans (``bluesky.plans.count``, ``scan``) put the same keys in every start
document: ``plan_name``, ``plan_args`` (the call, as JSON-safe reprs), ``detectors`` and
``motors`` (device names), ``hints`` (``dimensions``, what a plot's x axis is). Tools
that know nothing about faro (the BestEffortCallback, databroker/tiled browsers, a
``Key("plan_name") == ...`` query) read those keys, so faro's plans write them the same
way, here in one place (docs/decisions/0043-start-document-conventions.md).

``plan_type`` is written too, and fixed to ``"generator"``: the RunEngine would
otherwise fill it from the plan object's class name, which is ``OptogeneticPlan`` when
called directly but ``generator`` when the same plan is wrapped by a preprocessor.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..schema import Stream, VisitField
from ._model import Phase, experiment_to_json
from ._schedule import share

if TYPE_CHECKING:
    from ._opto import OptogeneticPlan

__all__ = ["MAX_SCHEDULE_IN_START", "json_safe", "optogenetic_start", "start_metadata"]

MAX_SCHEDULE_IN_START = 20_000
"""Visits; a bigger schedule is left out of the start document (``num_visits`` stays)."""

PLAN_TYPE = "generator"


def json_safe(value: Any) -> Any:
    """``value`` as something ``json.dumps(..., allow_nan=False)`` accepts, for plan_args.

    Numbers, strings, bools and None stay; lists, tuples and dicts are converted item by
    item; an array becomes a short summary (a mask must not put megabytes in the start
    document); anything else (devices, phases, the analyzer) becomes its repr, as
    bluesky's plans do with their detectors and motors. A non-finite float becomes its repr
    (``'nan'``): tiled stores metadata as strict JSON.
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, np.ndarray):
        summary: dict[str, Any] = {"shape": list(value.shape), "dtype": str(value.dtype)}
        if value.dtype == bool:
            summary["n_on"] = int(value.sum())
        return {"array": summary}
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return _described(value)


def _described(value: Any) -> str:
    """A repr without a memory address, so that equal calls give equal start documents.

    Objects with object's default repr (``<x.Y object at 0x...>``) are described by type
    and ``name`` if they have one; functions (decision callables) by qualified name.
    """
    if isinstance(value, types.FunctionType | types.MethodType):
        return f"{value.__module__}.{value.__qualname__}"
    if type(value).__repr__ is object.__repr__:
        name = getattr(value, "name", None)
        kind = type(value).__name__
        return f"{kind}(name={name!r})" if isinstance(name, str) else f"{kind}()"
    return repr(value)


def start_metadata(
    plan_name: str,
    *,
    plan_args: Mapping[str, Any],
    detectors: Sequence[Any],
    motors: Sequence[Any] = (),
    dimensions: Sequence[tuple[Sequence[str], str]] = ((("time",), Stream.PRIMARY),),
    md: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A start document's metadata in bluesky's shape; ``md`` (the user's) wins.

    Like ``bluesky.plans.count``: the plan's keys first, then ``md`` over them, then
    ``hints["dimensions"]`` only if ``md`` gave none (a copy: ``md`` is not modified).
    ``detectors``/``motors`` take devices (their ``name``) or names.
    """
    out: dict[str, Any] = {
        "plan_name": plan_name,
        "plan_type": PLAN_TYPE,
        "plan_args": json_safe(dict(plan_args)),
        "detectors": [getattr(d, "name", d) for d in detectors],
        "motors": [getattr(m, "name", m) for m in motors],
        **fields,
        "hints": {},
    }
    out.update(md or {})
    out["hints"] = dict(out["hints"] or {})
    out["hints"].setdefault("dimensions", [(list(f), stream) for f, stream in dimensions])
    return out


def optogenetic_start(plan: OptogeneticPlan) -> dict[str, Any]:
    """The start metadata of `optogenetic_plan` (what the run and its readers rely on).

    Besides bluesky's keys: ``experiment`` (the elements as JSON, rebuilt by
    `experiment_from_json`), ``phase_names``, ``fovs``, the schedule (``schedule``, up to
    `MAX_SCHEDULE_IN_START` visits) and its size (``num_visits``, ``num_points`` = frames,
    ``num_intervals``), and the options the plan was called with.
    """
    sched = plan.schedule
    elements = plan.elements
    phases = [p for p in plan._resolved(elements) if isinstance(p, Phase)]
    scope = plan.microscope
    num_points = sched.n_frames() if sched is not None else 0
    fields: dict[str, Any] = {
        "experiment": experiment_to_json(elements),
        "phase_names": sorted({p.name for p in phases}),
        "fovs": [list(xy) for xy in plan.fovs],
        "stim_mode": plan.stim_mode,
        "on_resume": plan.on_resume,
        "time_per_fov": plan.time_per_fov,
        "num_visits": len(sched) if sched else 0,
        "num_points": num_points,
        "num_intervals": max(num_points - 1, 0),
        "warnings": list(plan.warnings),
    }
    if sched is not None and len(sched) <= MAX_SCHEDULE_IN_START:
        fields["schedule"] = sched.to_json()
    if sched is not None:  # this process's status display reuses it (no second build)
        fields["schedule_key"] = share(sched)
    plan_args = {
        "fovs": [list(xy) for xy in plan.fovs],
        "phases": list(elements),
        "microscope": scope,
        "analyzer": plan.analyzer,
        "stim_mode": plan.stim_mode,
        "on_resume": plan.on_resume,
        "per_visit": list(plan.per_visit),
        "time_per_fov": plan.time_per_fov,
        "stim_mask": plan.stim_mask,
        "mask_timeout": plan.mask_timeout,
        "patterned_light": plan.light.name if plan.light is not None else None,
    }
    return start_metadata(
        "optogenetic_plan",
        plan_args=plan_args,
        detectors=[scope.camera, *plan.per_visit],
        motors=[scope.stage],
        dimensions=[((VisitField.T.value,), Stream.PRIMARY)],
        md=plan.md,
        **fields,
    )
