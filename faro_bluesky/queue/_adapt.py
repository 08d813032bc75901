"""Plans as the queue server sees them: JSON arguments in, the session's microscope filled in.

A queue item is JSON (``{"name": "pulse_train", "kwargs": {...}}``), and the RE Manager
describes every plan from its signature: annotations it can rebuild with ``eval`` and
defaults that ``ast.literal_eval`` accepts, or the plan is refused. Our plans take
objects: experiment elements (`Phase`, `Wait`, `Parallel`), `Channel` presets, and the
`Microscope`, which is a container of devices (decision 0002), not a bluesky device the
queue can name. `queueable` wraps a plan so that

- a parameter typed `Microscope` disappears from the signature and receives the session's
  microscope (the one the plans default to anyway);
- a parameter typed with one of the experiment models takes its JSON form (a dict; the
  default shown as its dump) and is validated into the model when the plan is called;
- a parameter typed as a sequence of experiment elements takes a list of dicts in the
  form `experiment_to_json` writes (``"type"`` may be left out for a phase);
- string annotations (``from __future__ import annotations``) are resolved, so the RE
  Manager checks the types it can.

The wrapper is a generator function calling the plan with keywords: it runs exactly what
``RE(plan(...))`` would run in the shell.
"""

from __future__ import annotations

import inspect
import logging
import threading
import types
import typing
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

from bluesky.utils import is_plan

from ..devices import Microscope
from ..plans import OptogeneticPlan, Parallel, Phase, Wait, experiment_from_json
from ..plans._model import FaroModel  # the base of every experiment model

__all__ = ["experiment_arg", "queueable"]

logger = logging.getLogger(__name__)

_ELEMENTS = (Phase, Wait, Parallel)
_EMPTY = inspect.Parameter.empty


def experiment_arg(value: Any) -> list[Any]:
    """Experiment elements from a queue item: dicts (`experiment_to_json` form) or models.

    A dict without ``"type"`` is a phase, or a wait if its only key is ``"seconds"``.
    """
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise TypeError(f"phases must be a list of phases/waits (dicts), got {value!r}")
    out: list[Any] = []
    for i, item in enumerate(value):
        if isinstance(item, Mapping):
            item = dict(item)
            item.setdefault("type", "wait" if set(item) == {"seconds"} else "phase")
            out.extend(experiment_from_json([item]))
        elif isinstance(item, _ELEMENTS):
            out.append(item)
        else:
            raise TypeError(f"phases[{i}] is {item!r}: expected a dict or a Phase/Wait/Parallel")
    return out


def _options(hint: Any) -> tuple[Any, ...]:
    """The members of a union (``X | None``), or the hint alone."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _is_type(hint: Any, base: type) -> bool:
    return any(isinstance(h, type) and issubclass(h, base) for h in _options(hint))


def _model(hint: Any) -> type[FaroModel] | None:
    for h in _options(hint):
        if isinstance(h, type) and issubclass(h, FaroModel):
            return h
    return None


def _is_experiment(hint: Any) -> bool:
    """``Sequence[Element]`` and the like: a sequence whose items may be elements."""
    for h in _options(hint):
        origin = typing.get_origin(h)
        if isinstance(origin, type) and issubclass(origin, Sequence) and origin is not str:
            items = [a for arg in typing.get_args(h) for a in _options(arg)]
            if any(isinstance(a, type) and issubclass(a, _ELEMENTS) for a in items):
                return True
    return False


def _returns_plan(hint: Any) -> bool:
    """A return annotation of a generator of messages (``MsgGenerator``, `OptogeneticPlan`)."""
    origin = typing.get_origin(hint) or hint
    return isinstance(origin, type) and issubclass(origin, Generator)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # a name only a type checker sees: keep what can be kept
        logger.debug("cannot resolve the annotations of %r", fn, exc_info=True)
        return {}


class _Running:
    """The experiment plan the worker is running now, for `extend_experiment`."""

    def __init__(self) -> None:
        self._plan: OptogeneticPlan | None = None
        self._lock = threading.Lock()

    def set(self, plan: OptogeneticPlan) -> OptogeneticPlan:
        with self._lock:
            self._plan = plan
        return plan

    def clear(self, plan: OptogeneticPlan) -> None:
        with self._lock:
            if self._plan is plan:
                self._plan = None

    def get(self) -> OptogeneticPlan | None:
        with self._lock:
            return self._plan


RUNNING = _Running()


def extend_experiment(elements: list[dict[str, Any]]) -> int:
    """Append ``elements`` (the ``experiment_to_json`` form) to the running experiment.

    Run by the RE Manager's worker (``function_execute``) while a plan runs; returns the
    number of visits the experiment has now. Validated first, like `OptogeneticPlan.extend`.
    """
    plan = RUNNING.get()
    if plan is None:
        raise RuntimeError(
            "no optogenetic_plan is running in the queue's worker: nothing to extend"
        )
    plan.extend(*experiment_from_json(elements))
    schedule = plan.schedule
    return len(schedule) if schedule is not None else 0


def queueable(fn: Callable[..., Any], microscope: Microscope) -> Callable[..., Any] | None:
    """``fn`` as a plan the RE Manager can describe and call (see the module docstring).

    Returns None for what is not a plan (neither a generator function nor annotated to
    return a generator); a plan with ``*args``, ``**kwargs`` or positional-only
    parameters is returned as it is.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    kinds = {p.kind for p in signature.parameters.values()}
    if kinds & {
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
        inspect.Parameter.POSITIONAL_ONLY,
    }:
        return fn if is_plan(fn) else None
    hints = _hints(fn)
    if not (is_plan(fn) or _returns_plan(hints.get("return"))):
        return None  # a helper such as demo_phases, not a plan
    shown: list[inspect.Parameter] = []
    injected: dict[str, Any] = {}
    convert: dict[str, Callable[[Any], Any]] = {}
    for name, param in signature.parameters.items():
        hint = hints.get(name, _EMPTY if isinstance(param.annotation, str) else param.annotation)
        default = param.default
        if _is_type(hint, Microscope):
            injected[name] = microscope
            continue
        model = _model(hint)
        if model is not None and not _is_experiment(hint):
            optional = type(None) in _options(hint)
            hint = dict[str, Any] | None if optional else dict[str, Any]
            if isinstance(default, FaroModel):
                default = default.model_dump(mode="json")
            convert[name] = _model_arg(model)
        elif _is_experiment(hint):
            hint = list[dict[str, Any]]
            convert[name] = experiment_arg
        shown.append(param.replace(annotation=hint, default=default))
    new_signature = inspect.Signature(shown)

    def plan(*args: Any, **kwargs: Any) -> Any:
        bound = new_signature.bind(*args, **kwargs)
        values = {
            name: convert[name](value) if name in convert and value is not None else value
            for name, value in bound.arguments.items()
        }
        gen = fn(**values, **injected)
        token = RUNNING.set(gen) if isinstance(gen, OptogeneticPlan) else None
        try:
            return (yield from gen)
        finally:
            if token is not None:
                RUNNING.clear(gen)

    plan.__name__ = getattr(fn, "__name__", "plan")
    plan.__qualname__ = getattr(fn, "__qualname__", plan.__name__)
    plan.__module__ = getattr(fn, "__module__", __name__)
    plan.__doc__ = fn.__doc__
    plan.__signature__ = new_signature  # type: ignore[attr-defined]
    plan.__annotations__ = {p.name: p.annotation for p in shown if p.annotation is not _EMPTY}
    return plan


def _model_arg(model: type[FaroModel]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        return model.model_validate(value) if isinstance(value, Mapping) else value

    return convert
