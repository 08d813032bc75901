"""What an experiment is, as data: channels, phases, waits and parallel branches.

These are small frozen pydantic models (like useq-schema's) so that an experiment can be
written in a notebook, checked before anything moves, stored in the start document as JSON
and rebuilt from it. They say *what* to acquire; `schedule` (in ``_schedule.py``) turns a
list of them into timed visits, and the plans turn visits into bluesky messages.

An experiment is a plain list: ``[Phase(...), wait(60), parallel(a, b), Phase(...)]``.
Elements run one after the other on one clock; there is deliberately no ``+`` operator
(faro pinned this): a list is the sequential composition, `parallel` the concurrent one.
"""

from __future__ import annotations

import itertools
import json
import numbers
from collections.abc import Callable, Iterable, Sequence, Sized
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ._errors import ExperimentError
from ._limits import MAX_SECONDS, MAX_VISITS

if TYPE_CHECKING:
    import useq

__all__ = [
    "Channel",
    "Element",
    "FaroModel",
    "Parallel",
    "Phase",
    "Wait",
    "experiment_from_json",
    "experiment_to_json",
    "parallel",
    "wait",
]

_NO_ADD = (
    "experiment elements can't be added with '+': put them in a list ([a, b]) to run them "
    "one after the other, or use parallel(a, b) to run them at the same time on different FOVs"
)


class FaroModel(BaseModel):
    """Frozen, strict base of every experiment model.

    Frozen so that a phase can't change under a running plan; ``extra="forbid"`` so that a
    misspelt field is an error instead of being silently ignored; ``allow_inf_nan=False``
    because an infinite interval or a NaN exposure is never meant (it made every later
    visit unreachable). Edit with `replace`. Subclasses list in ``_positional`` the fields
    that may be given positionally.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False
    )
    _positional: ClassVar[tuple[str, ...]] = ()

    def __init__(self, /, *args: Any, **data: Any) -> None:
        cls = type(self)
        names = cls._positional
        if len(args) > len(names):
            raise TypeError(
                f"{cls.__name__}() takes at most {len(names)} positional argument(s) "
                f"({', '.join(names)}), got {len(args)}"
            )
        for name, value in zip(names, args, strict=False):
            if name in data:
                raise TypeError(f"{cls.__name__}() got multiple values for {name!r}")
            data[name] = value
        super().__init__(**data)

    def replace(self, **kwargs: Any) -> Self:
        """A copy with ``kwargs`` changed, validated again (unlike ``model_copy``)."""
        return type(self).model_validate({**self.model_dump(), **kwargs})

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # Only fields that differ from their default: keeps reprs of phases readable.
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if info.is_required() or value != info.get_default(call_default_factory=True):
                yield name, value


def _a_number(value: Any, info: ValidationInfo) -> Any:
    """Refuse a bool or a string where a number is meant (pydantic would coerce both).

    ``interval=True`` or ``n_frames="10"`` is a slip, not a number: coercing it would run an
    experiment nobody wrote. Sequences (a per-frame ``stim_exposure``) are checked item by
    item.
    """
    many = isinstance(value, Iterable) and not isinstance(value, str | bytes | dict)
    items = tuple(value) if many else (value,)  # a generator is read once, here
    for item in items:
        if isinstance(item, bool | np.bool_ | str | bytes):
            raise ValueError(f"{info.field_name}={value!r} is not a number: give a number")
    return items if many else value


class Channel(FaroModel):
    """One light path: a config-group preset, its exposure and optionally a light power.

    Positional arguments follow field order: ``Channel("miRFP", 50)``,
    ``Channel("Cyan", 100, 10)``. The device layer reads ``.config``, ``.exposure``,
    ``.power`` and ``.group``.
    """

    _positional = ("config", "exposure", "power", "group")

    config: str = Field(min_length=1)
    """Preset name in the config group (e.g. ``"miRFP"``)."""
    exposure: float = Field(gt=0)
    """Exposure time in milliseconds."""
    power: float | None = Field(default=None, ge=0)
    """Light-source power in device units; None leaves the hardware as it is."""
    group: str | None = None
    """Config group holding ``config``; None means the microscope's channel group."""

    _numbers = field_validator("exposure", "power", mode="before")(_a_number)


def _check_channels(value: Any, info: ValidationInfo) -> Any:
    """Reject what is not a Channel or a dict with a message that says what to write."""
    if isinstance(value, Channel):
        return (value,)
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(
            f"{info.field_name} must be a list of Channel, got {value!r}: "
            f"write [Channel('config', exposure_ms)]"
        )
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, Channel | dict):
            raise ValueError(
                f"{info.field_name}[{i}]={item!r} is not a Channel: "
                f"write Channel({item!r}, exposure_ms) (or a dict with config and exposure)"
            )
    return tuple(items)


def _frame_spec(value: Any, info: ValidationInfo) -> Any:
    """Normalise an int, set, list, tuple or range of frame indices to a list of ints."""
    if value is None:
        return []
    items = [value] if isinstance(value, numbers.Integral) else value
    if isinstance(items, str | bytes | dict) or not isinstance(items, Iterable):
        raise ValueError(
            f"{info.field_name} must be a frame index, a set/list/tuple of them or a range; "
            f"got {value!r}"
        )
    # Bounded before iterating: range(10**12) or an endless generator must not hang here.
    limit = 2 * MAX_VISITS  # frames lie in -n..n-1 and n_frames <= MAX_VISITS
    if isinstance(items, Sized) and len(items) > limit:
        raise ValueError(
            f"{info.field_name} holds {len(items):,} frame indices, more than any phase "
            f"can have (n_frames <= {MAX_VISITS:,}): give the frames of this phase only"
        )
    out = []
    for k in itertools.islice(items, limit + 1):
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise ValueError(f"{info.field_name} holds {k!r}, which is not an integer frame index")
        out.append(int(k))
    if len(out) > limit:
        raise ValueError(
            f"{info.field_name} holds more than {limit:,} frame indices: give the frames of "
            "this phase only"
        )
    return out


class Phase(FaroModel):
    """A stretch of time-lapse with one imaging/stimulation recipe, on some or all FOVs.

    ``Phase("stim", interval=10, n_frames=30, channels=[Channel("miRFP", 50)],
    stim_channels=[Channel("Cyan", 100, 10)], stim_frames=range(5, 30, 5))``.
    Frame specs (``stim_frames``, ``ref_frames``) are phase-relative; they accept an int, a
    set/list/tuple or a range, negative indices counting from the end (-1 is the last
    frame). They are resolved when the phase is made, to a sorted tuple of unique frames.
    """

    _positional = ("name",)

    name: str = Field(min_length=1)
    """Name shown in the schedule, the documents and the stored data."""
    interval: float = Field(ge=0)
    """Seconds between the starts of consecutive frames of a FOV; 0 = as fast as possible
    (one FOV and one channel: a burst through one camera sequence)."""
    """Seconds between frame starts (0 only for a single frame)."""
    n_frames: int = Field(ge=1)
    """Number of frames (timepoints) per FOV."""
    channels: tuple[Channel, ...] = Field(min_length=1)
    """Imaging channels acquired at every frame, in this order."""
    stim_channels: tuple[Channel, ...] = ()
    """Channels fired through the stimulation mask on ``stim_frames``."""
    stim_frames: tuple[int, ...] = ()
    """Frames with stimulation (resolved: sorted, unique, non-negative)."""
    stim_exposure: (
        Annotated[float, Field(gt=0)] | tuple[Annotated[float, Field(gt=0)], ...] | None
    ) = None
    """ms: one number overrides every stim channel's exposure; a sequence maps onto the
    sorted ``stim_frames``, one exposure per stim frame; None keeps each channel's."""
    ref_channels: tuple[Channel, ...] = ()
    """Reference channels acquired after the imaging channels on ``ref_frames``."""
    ref_frames: tuple[int, ...] = ()
    """Frames with reference acquisition (resolved like ``stim_frames``)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """JSON-able values given to every visit of the phase (e.g. for the analyzer)."""
    fovs: tuple[int, ...] | None = None
    """Indices into the experiment's FOV list this phase runs on; None = all FOVs."""
    axis_order: Literal["tp", "pt"] = "tp"
    """``"tp"``: every FOV at each frame; ``"pt"``: each FOV's frames, FOV after FOV."""

    _check_channel_lists = field_validator(
        "channels", "stim_channels", "ref_channels", mode="before"
    )(_check_channels)
    _normalise_frames = field_validator("stim_frames", "ref_frames", mode="before")(_frame_spec)
    _numbers = field_validator("interval", "n_frames", "stim_exposure", mode="before")(_a_number)

    @field_validator("n_frames", mode="after")
    @classmethod
    def _frames_bounded(cls, n: int) -> int:
        if n > MAX_VISITS:
            raise ValueError(
                f"n_frames={n:,} is more than the {MAX_VISITS:,} visits one experiment may "
                "schedule (docs/reliability.md): split the experiment into several runs"
            )
        return n

    @field_validator("interval", mode="after")
    @classmethod
    def _interval_bounded(cls, interval: float) -> float:
        if interval > MAX_SECONDS:
            raise ValueError(
                f"interval={interval:g} s is longer than a year ({MAX_SECONDS:g} s): "
                "give the interval in seconds"
            )
        return interval

    @field_validator("stim_frames", "ref_frames", mode="after")
    @classmethod
    def _resolve_frames(cls, frames: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        n = info.data.get("n_frames")
        if n is None:  # n_frames itself was invalid; that error is reported
            return frames
        bad = sorted({k for k in frames if not -n <= k < n})
        if bad:
            raise ValueError(
                f"{info.field_name} {bad} out of range for n_frames={n}: valid frames are "
                f"-{n}..{n - 1} (negative counts from the end)"
            )
        return tuple(sorted({k % n for k in frames}))

    @field_validator("stim_exposure", mode="before")
    @classmethod
    def _exposure_seq(cls, value: Any) -> Any:
        if isinstance(value, Iterable) and not isinstance(value, str | bytes | dict):
            return tuple(value)
        return value

    @field_validator("metadata", mode="after")
    @classmethod
    def _json_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"metadata must be JSON-serialisable, without NaN or inf (it goes into the "
                f"run documents): {exc}"
            ) from None
        return value

    @field_validator("fovs", mode="before")
    @classmethod
    def _fov_set(cls, value: Any) -> Any:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return (int(value),)
        if isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
            return value  # None, or refused by the type check with its own message
        if isinstance(value, Sized) and len(value) > MAX_VISITS:
            raise ValueError(
                f"fovs holds {len(value):,} indices, more than the {MAX_VISITS:,} visits one "
                "experiment may schedule: give the indices of the FOVs this phase images"
            )
        items = list(itertools.islice(value, MAX_VISITS + 1))
        if len(items) > MAX_VISITS:
            raise ValueError(f"fovs holds more than {MAX_VISITS:,} indices: give fewer")
        for i in items:
            if isinstance(i, bool) or not isinstance(i, numbers.Integral):
                raise ValueError(
                    f"fovs holds {i!r}, which is not an index into the plan's FOV list: "
                    "give integers, e.g. fovs=[0, 2]"
                )
        return tuple(sorted(int(i) for i in items))

    @field_validator("fovs", mode="after")
    @classmethod
    def _fovs_valid(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("fovs=() runs the phase on no FOV: use None for all FOVs")
        if any(i < 0 for i in value):
            raise ValueError(f"fovs {value} holds a negative index: FOV indices are 0, 1, ...")
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = []
        for kind in ("stim", "ref"):
            frames, channels = getattr(self, f"{kind}_frames"), getattr(self, f"{kind}_channels")
            if frames and not channels:
                problems.append(f"{kind}_frames given but {kind}_channels is empty")
            if channels and not frames:
                problems.append(f"{kind}_channels given but {kind}_frames is empty")
        exp = self.stim_exposure
        if exp is not None and not self.stim_frames:
            problems.append("stim_exposure given but stim_frames is empty")
        elif isinstance(exp, tuple) and len(exp) != len(self.stim_frames):
            problems.append(
                f"stim_exposure length ({len(exp)}) must match stim_frames length "
                f"({len(self.stim_frames)}; resolved frames {list(self.stim_frames)})"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame of one FOV (without batching)."""
        return (self.n_frames - 1) * self.interval

    def stim_channels_at(self, frame: int) -> tuple[Channel, ...]:
        """The stim channels fired at ``frame`` (empty if none), exposure override applied.

        Power and group are kept: only the exposure is replaced (faro lost the power here).
        """
        frame = frame % self.n_frames if -self.n_frames <= frame < 0 else frame
        if frame not in self.stim_frames:
            return ()
        exp = self.stim_exposure
        if exp is None:
            return self.stim_channels
        if isinstance(exp, tuple):
            exp = exp[self.stim_frames.index(frame)]
        return tuple(ch.model_copy(update={"exposure": float(exp)}) for ch in self.stim_channels)

    @classmethod
    def from_useq(
        cls,
        seq: useq.MDASequence,
        name: str | None = None,
        *,
        events: Iterable[useq.MDAEvent] | None = None,
        **overrides: Any,
    ) -> Phase:
        """A phase from a useq `MDASequence` (time plan, channels, axis order).

        The mapping, and which fields have no useq equivalent, is in ``_useq.py``
        (decision 0044). Stage positions are not used: give FOVs to the plan separately
        (`fovs_from_useq`). No time plan means one frame. ``events`` with an
        ``slm_image`` give the stimulation; ``overrides`` set or replace any Phase
        field. A ``MultiPhaseTimePlan`` is several phases: `phases_from_useq`.
        """
        from ._useq_import import phase_from_useq

        return phase_from_useq(seq, name, events=events, **overrides)

    def to_useq(self, fovs: Sequence[Sequence[float]] | None = None) -> useq.MDASequence:
        """The phase as a useq `MDASequence`; ``Phase.from_useq`` rebuilds it equal.

        What useq has no field for (name, powers, stimulation, reference frames, fovs,
        metadata) is kept in ``metadata["faro"]``; ``fovs`` (µm) become stage positions.
        """
        from ._useq import phases_to_useq

        return phases_to_useq([self], fovs)

    def __add__(self, other: object) -> Any:
        raise TypeError(_NO_ADD)

    __radd__ = __add__


class Wait(FaroModel):
    """A pause of ``seconds`` between elements: adds time, claims no frames and no t index.

    The element after a wait starts exactly when it ends (no interval is added).
    """

    _positional = ("seconds",)

    seconds: float = Field(gt=0)
    """Seconds of real rest after the previous element's last visit (or the start).

    Real: if the run is late when the wait begins, the wait still lasts ``seconds`` and
    every later visit moves by the lateness (docs/decisions/0035-input-bounds-and-real-waits.md).
    """

    _numbers = field_validator("seconds", mode="before")(_a_number)

    @field_validator("seconds", mode="after")
    @classmethod
    def _bounded(cls, seconds: float) -> float:
        if seconds > MAX_SECONDS:
            raise ValueError(
                f"seconds={seconds:g} is longer than a year ({MAX_SECONDS:g} s): give the wait "
                "in seconds"
            )
        return seconds

    def __add__(self, other: object) -> Any:
        raise TypeError(_NO_ADD)

    __radd__ = __add__


def wait(seconds: float) -> Wait:
    """Make a `Wait` of ``seconds``: real rest between two phases of an experiment list.

    At least ``seconds`` pass between the last visit before it and the first after it,
    even if the run is late when the wait begins (later visits then move).
    """
    return Wait(seconds)


def _branch_kind(value: Any) -> str:
    if isinstance(value, Wait) or (isinstance(value, dict) and "seconds" in value):
        return "wait"
    return "phase"


BranchItem = Annotated[
    Annotated[Phase, Tag("phase")] | Annotated[Wait, Tag("wait")], Discriminator(_branch_kind)
]


class Parallel(FaroModel):
    """Branches that run at the same time on disjoint FOV sets, sharing one clock.

    Build it with `parallel`, which checks the rules (`problems`); `schedule` checks them
    again for a Parallel made directly.
    """

    branches: tuple[tuple[BranchItem, ...], ...]
    """Each branch: phases and waits run one after the other on that branch's FOVs."""

    @field_validator("branches", mode="before")
    @classmethod
    def _untag(cls, value: Any) -> Any:
        # Accept experiment_to_json's tagged items ({"type": "phase", ...}).
        if isinstance(value, list | tuple):
            return [
                [_strip_type(i) for i in b] if isinstance(b, list | tuple) else b for b in value
            ]
        return value

    def phases(self) -> list[Phase]:
        """Every Phase, branch by branch (the order of `Schedule.phases`)."""
        return [p for b in self.branches for p in b if isinstance(p, Phase)]

    def problems(self) -> list[str]:
        """Every broken rule: >= 2 branches, explicit disjoint fovs, matching channels."""
        problems = []
        if len(self.branches) < 2:
            problems.append(f"parallel() needs at least 2 branches, got {len(self.branches)}")
        owner: dict[int, int] = {}
        ref: Phase | None = None
        for b, branch in enumerate(self.branches):
            if not any(isinstance(p, Phase) for p in branch):
                problems.append(f"parallel() branch {b} has no Phase")
            mine: set[int] = set()
            for p in branch:
                if not isinstance(p, Phase):
                    continue
                if p.fovs is None:
                    problems.append(
                        f"parallel() branch {b}: phase {p.name!r} has no fovs: give each "
                        f"phase in a parallel branch its FOVs, e.g. Phase(..., fovs=[0, 1])"
                    )
                else:
                    mine |= set(p.fovs)
                configs = [c.config for c in p.channels]
                if ref is None:
                    ref = p
                elif configs != (first := [c.config for c in ref.channels]):
                    problems.append(
                        f"parallel() requires matching imaging channels in every phase (one "
                        f"channel set is stored for all FOVs); got {first} (phase {ref.name!r})"
                        f" vs {configs} (phase {p.name!r})"
                    )
            for i in sorted(mine):
                if i in owner:
                    problems.append(
                        f"parallel() branches {owner[i]} and {b} both use FOV {i}: "
                        f"branches must run on disjoint FOVs"
                    )
                else:
                    owner[i] = b
        return problems

    def __add__(self, other: object) -> Any:
        raise TypeError(_NO_ADD)

    __radd__ = __add__


def parallel(*branches: Phase | Wait | Sequence[Phase | Wait]) -> Parallel:
    """Run ``branches`` at the same time on disjoint FOVs (a branch: a Phase, Wait or list).

    Every phase needs explicit ``fovs``, different branches must use different FOVs, and all
    phases must image the same channels in the same order (one store for all FOVs). Raises
    `ExperimentError` listing every broken rule.
    """
    problems: list[str] = []
    items: list[list[Any]] = []
    for b, branch in enumerate(branches):
        seq = list(branch) if isinstance(branch, list | tuple) else [branch]
        for i, el in enumerate(seq):
            if isinstance(el, Parallel):
                problems.append(f"parallel() branch {b}: nested parallel() is not supported")
            elif not isinstance(el, Phase | Wait):
                problems.append(f"parallel() branch {b}[{i}]={el!r} is not a Phase or a wait()")
        items.append([el for el in seq if isinstance(el, Phase | Wait)])
    result = Parallel(branches=tuple(tuple(b) for b in items))
    ExperimentError.raise_if(problems + result.problems())
    return result


Element = Phase | Wait | Parallel
"""One item of an experiment list."""


def _strip_type(item: Any) -> Any:
    return {k: v for k, v in item.items() if k != "type"} if isinstance(item, dict) else item


def _tagged(el: Phase | Wait) -> dict[str, Any]:
    kind = "phase" if isinstance(el, Phase) else "wait"
    return {"type": kind, **el.model_dump(mode="json")}


def experiment_to_json(phases: Sequence[Element | Callable[..., Any]]) -> list[dict[str, Any]]:
    """The experiment as JSON-able dicts, each tagged ``"type"``: phase, wait or parallel.

    A decision callable (allowed by the plan) is recorded as ``{"type": "decision",
    "name": ...}``; it can't be rebuilt from JSON.
    """
    out: list[dict[str, Any]] = []
    for el in phases:
        if isinstance(el, Phase | Wait):
            out.append(_tagged(el))
        elif isinstance(el, Parallel):
            branches = [[_tagged(p) for p in b] for b in el.branches]
            out.append({"type": "parallel", "branches": branches})
        elif callable(el):
            out.append({"type": "decision", "name": getattr(el, "__qualname__", repr(el))})
        else:
            raise TypeError(f"{el!r} is not a Phase, Wait or Parallel")
    return out


def experiment_from_json(data: Iterable[dict[str, Any]]) -> list[Element]:
    """Rebuild an experiment from `experiment_to_json` output."""
    kinds: dict[str, type[FaroModel]] = {"phase": Phase, "wait": Wait, "parallel": Parallel}
    out: list[Element] = []
    for i, item in enumerate(data):
        kind = item.get("type")
        if kind == "decision":
            raise ValueError(f"item {i} is a decision callable ({item.get('name')!r}): not JSON")
        if kind not in kinds:
            raise ValueError(f"item {i} has type {kind!r}: expected one of {sorted(kinds)}")
        out.append(kinds[kind].model_validate(_strip_type(item)))  # type: ignore[arg-type]
    return out
