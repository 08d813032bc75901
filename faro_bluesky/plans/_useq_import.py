"""useq `MDASequence` to Phases: what maps is in ``_useq.py``; here, what is refused.

Refused on import, because faro would silently not do them: z and grid plans, an
autofocus plan, a ``setup`` event, per-position sub-sequences, a channel with a z offset,
its own camera or no exposure. Everything else maps as ``_useq.py`` tabulates, and what
`phases_to_useq` stored under ``metadata["faro"]`` is restored (decision 0044).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._model import Channel, Phase
from ._useq import FARO_KEY, USEQ_DEFAULT_GROUP, faro_group
from ._useq_events import stimulation_from_events

if TYPE_CHECKING:
    import useq

__all__ = ["fovs_from_useq", "phase_from_useq", "phases_from_useq"]


def _unsupported(seq: useq.MDASequence) -> list[str]:
    """What ``seq`` asks for that a Phase can't do (refused, never silently dropped)."""
    problems = []
    if seq.z_plan is not None or seq.grid_plan is not None:
        problems.append("z and grid plans are not supported by Phase: remove them")
    if seq.autofocus_plan is not None:
        problems.append("autofocus_plan is not supported by Phase: remove it")
    if seq.setup is not None:
        problems.append("a setup event is not supported by Phase: remove it")
    for i, pos in enumerate(seq.stage_positions):
        if getattr(pos, "sequence", None) is not None:
            problems.append(
                f"stage_positions[{i}] has its own sequence: every FOV of a Phase runs the "
                "same recipe; make it a separate Phase with fovs=[...]"
            )
    order = [a for a in seq.axis_order if a in "tpc"]
    if "c" in order and any(order.index("c") < order.index(a) for a in "tp" if a in order):
        problems.append(
            f"axis_order={''.join(seq.axis_order)!r} loops channels outside t/p: faro takes "
            "every channel of a visit together; put 'c' after 't' and 'p'"
        )
    return problems


def _channels(
    seq: useq.MDASequence, problems: list[str]
) -> tuple[list[Channel], list[Channel], int]:
    """Imaging channels, reference channels and their ``acquire_every`` (1 if none)."""
    imaging: list[Channel] = []
    ref: list[Channel] = []
    every = {ch.acquire_every for ch in seq.channels if ch.acquire_every > 1}
    if len(every) > 1:
        problems.append(
            f"useq channels use acquire_every {sorted(every)}: a Phase has one set of "
            "reference frames, so give every such channel the same acquire_every"
        )
    for ch in seq.channels:
        name = f"useq channel {ch.config!r}"
        if ch.exposure is None:
            problems.append(
                f"{name} has no exposure: set it in the MDASequence or pass channels=[Channel(...)]"
            )
            continue
        if ch.z_offset:
            problems.append(f"{name}: z_offset is not supported (faro does not move focus)")
        if ch.camera is not None:
            problems.append(f"{name}: camera={ch.camera!r} is not supported (one camera)")
        channel = Channel(ch.config, ch.exposure, group=faro_group(ch))
        if ch.acquire_every > 1:
            ref.append(channel)
        elif ref:
            problems.append(
                f"{name} is acquired every frame but comes after a channel with "
                "acquire_every > 1: faro takes reference channels after the imaging "
                "channels, so list those last"
            )
        else:
            imaging.append(channel)
    return imaging, ref, max(every, default=1)


def _restored(
    channels: list[Channel], powers: list[Any] | None, groups: list[Any] | None
) -> list[Channel]:
    """``channels`` with the powers and unset groups `phases_to_useq` stored.

    Only lists that still match the channels are used (the sequence may have been edited
    since), and a stored None group only where useq now says its default group (JSON
    writes defaults out; an edit to another group is kept).
    """
    if powers is not None and len(powers) == len(channels):
        channels = [c.replace(power=w) for c, w in zip(channels, powers, strict=True)]
    if groups is not None and len(groups) == len(channels):
        channels = [
            c.replace(group=None) if g is None and c.group == USEQ_DEFAULT_GROUP else c
            for c, g in zip(channels, groups, strict=True)
        ]
    return channels


def _timing(plan: Any, k: int, problems: list[str]) -> tuple[float, int]:
    """(interval s, timepoints) of one single-phase useq time plan."""
    import useq

    if plan is None:
        return 0.0, 1
    if isinstance(plan, useq.TDurationLoops):
        seconds = plan.duration.total_seconds()
        return (seconds / (plan.loops - 1) if plan.loops > 1 else 0.0), plan.loops
    interval = plan.interval.total_seconds()
    if isinstance(plan, useq.TIntervalDuration) and interval <= 0:
        problems.append(f"time plan {k}: interval 0 with a duration never ends: give loops")
        return 0.0, 1
    return interval, int(plan.num_timepoints())


def phases_from_useq(
    seq: useq.MDASequence,
    *,
    names: Sequence[str] | None = None,
    events: Iterable[useq.MDAEvent] | None = None,
) -> list[Phase]:
    """The phases of ``seq``: one per phase of a ``MultiPhaseTimePlan``, else one.

    Times match useq's: a later phase's first frame is one of its intervals after the
    last frame before it, and useq's repeated boundary frame is not taken twice (a later
    phase of ``loops=1`` adds no frame and no Phase). Names: ``names``, else the ones
    `phases_to_useq` stored, else ``phase0``, ``phase1``... ``events`` with an
    ``slm_image`` are the stimulation (see `useq_events`; their t is useq's global t).
    Stage positions are not used: give them to the plan (`fovs_from_useq`).
    """
    phases = _phases(seq, events, {})
    if names is not None:
        if len(names) != len(phases):
            raise ValueError(f"names has {len(names)} names for {len(phases)} phases")
        phases = [p.replace(name=n) for p, n in zip(phases, names, strict=True)]
    return phases


def _phases(
    seq: useq.MDASequence, events: Iterable[useq.MDAEvent] | None, overrides: dict[str, Any]
) -> list[Phase]:
    import useq

    problems = _unsupported(seq)
    tp = seq.time_plan
    plans = list(tp.phases) if isinstance(tp, useq.MultiPhaseTimePlan) else [tp]
    stored = seq.metadata.get(FARO_KEY, {}).get("phases", [])
    extras = stored if len(stored) == len(plans) else [{} for _ in plans]
    imaging, ref, every = _channels(seq, problems)
    order = "".join(a for a in seq.axis_order if a in "tp")
    common = {k: v for k, v in seq.metadata.items() if k != FARO_KEY}
    events = list(events or ())
    phases: list[Phase] = []
    t0 = 0
    for k, (plan, extra) in enumerate(zip(plans, extras, strict=True)):
        interval, loops = _timing(plan, k, problems)
        n = loops if k == 0 else loops - 1  # useq repeats the boundary frame: skipped
        if n < 1 or problems:
            continue
        extra = dict(extra)
        name = extra.pop("name", None) or (f"phase{k}" if len(plans) > 1 else "phase")
        channels = _restored(imaging, extra.pop("powers", None), extra.pop("groups", None))
        fields: dict[str, Any] = {
            "interval": interval,
            "n_frames": n,
            "channels": channels,
            "axis_order": order if order in ("tp", "pt") else "tp",
        }
        ref_frames = range((-t0) % every, n, every)
        if ref and len(ref_frames):
            fields.update(ref_channels=ref, ref_frames=ref_frames)
        fields.update(extra)
        if events:  # given explicitly: wins over what the metadata stored
            fields.update(stimulation_from_events(events, t0, n))
        fields.update(overrides)
        fields["metadata"] = {
            **common,
            **extra.get("metadata", {}),
            **overrides.get("metadata", {}),
        }
        phases.append(Phase(name, **fields))
        t0 += n
    if problems:
        raise ValueError("; ".join(problems))
    return phases


def phase_from_useq(
    seq: useq.MDASequence,
    name: str | None = None,
    *,
    events: Iterable[useq.MDAEvent] | None = None,
    **overrides: Any,
) -> Phase:
    """The one phase of ``seq`` (`Phase.from_useq`); ``overrides`` set any Phase field."""
    import useq

    if isinstance(seq.time_plan, useq.MultiPhaseTimePlan):
        raise ValueError(
            "a MultiPhaseTimePlan is several phases: use phases_from_useq(seq), which "
            "returns one Phase per time plan"
        )
    if "channels" in overrides:  # the sequence's channels are replaced: not checked
        seq = seq.replace(channels=[])
    (phase,) = _phases(seq, events, overrides)
    return phase.replace(name=name) if name else phase


def fovs_from_useq(seq: useq.MDASequence) -> list[tuple[float, float]]:
    """The (x, y) stage positions of ``seq``, for the plan's ``fovs`` argument."""
    out = []
    for i, pos in enumerate(seq.stage_positions):
        if pos.x is None or pos.y is None:
            raise ValueError(f"stage_positions[{i}] has no x/y: every FOV needs both")
        out.append((float(pos.x), float(pos.y)))
    return out
