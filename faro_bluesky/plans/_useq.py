"""Phases to and from useq-schema's `MDASequence`, the experiment format of pymmcore-plus.

A sequence written in napari-micromanager or a YAML file runs here, and a faro
experiment can be handed to any useq consumer. The mapping (decision 0044):

====================  ===============================================================
Phase                 useq ``MDASequence``
====================  ===============================================================
interval, n_frames    ``time_plan=TIntervalLoops(interval, loops=n_frames)`` (useq keeps
                      time as a timedelta: the interval to the microsecond)
channels              ``channels`` (config, exposure in ms, group; faro's group None is
                      useq's group left unset)
axis_order tp / pt    ``axis_order`` "tpc" / "ptc"
phases in a row       one ``MultiPhaseTimePlan`` (`phases_to_useq`, `phases_from_useq`):
                      both start a phase one of *its* intervals after the last frame of
                      the one before, and useq's later phases repeat that last frame
                      (``loops = n_frames + 1``)
stimulation           per event only: ``MDAEvent.slm_image`` (`useq_events`)
====================  ===============================================================

No useq field holds the rest, so it is kept under ``metadata["faro"]["phases"]`` (one
dict per phase, non-default values only): ``name``, channel ``power`` (``powers``),
which channels had no group (``groups``: useq's JSON writes its default out),
``stim_channels``, ``stim_frames``, ``stim_exposure``, ``ref_channels``, ``ref_frames``,
``fovs`` (indices into the plan's FOV list) and the phase's own ``metadata``. On import a
useq channel with ``acquire_every=k`` becomes a reference channel on every k-th frame
(by useq's global t, as useq skips it). Import, and what it refuses: ``_useq_import.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._model import Channel, Phase

if TYPE_CHECKING:
    import useq

__all__ = ["FARO_KEY", "faro_group", "phases_to_useq"]

FARO_KEY = "faro"
"""The key of ``MDASequence.metadata`` (and ``MDAEvent.metadata``) holding faro's fields."""
USEQ_DEFAULT_GROUP = "Channel"

_EXTRA_FIELDS = {
    "stim_channels",
    "stim_frames",
    "stim_exposure",
    "ref_channels",
    "ref_frames",
    "fovs",
    "metadata",
}


def faro_group(channel: Any) -> str | None:
    """The faro group of a useq channel: its group if written, else None.

    Unset, useq's group is "Channel", which pymmcore-plus's engine uses as it is;
    faro's None means the microscope's channel group. An explicit group is kept.
    """
    return channel.group if "group" in channel.model_fields_set else None


# ----------------------------------------------------------------- export
def _useq_channel(ch: Channel) -> useq.Channel:
    import useq

    if ch.group is None:  # unset: "the microscope's channel group", as faro's None
        return useq.Channel(config=ch.config, exposure=ch.exposure)
    return useq.Channel(config=ch.config, exposure=ch.exposure, group=ch.group)


def _extras(phase: Phase) -> dict[str, Any]:
    """The phase's fields that have no useq equivalent (non-default values only)."""
    out: dict[str, Any] = {"name": phase.name}
    if any(c.power is not None for c in phase.channels):
        out["powers"] = [c.power for c in phase.channels]
    if any(c.group is None for c in phase.channels):  # JSON writes useq's default group
        out["groups"] = [c.group for c in phase.channels]
    out.update(phase.model_dump(mode="json", include=_EXTRA_FIELDS, exclude_defaults=True))
    return out


def phases_to_useq(
    phases: Sequence[Phase], fovs: Sequence[Sequence[float]] | None = None
) -> useq.MDASequence:
    """One `MDASequence` for consecutive ``phases`` (a ``MultiPhaseTimePlan`` if several).

    They must image the same channels in the same axis order (a sequence has one channel
    list); what differs (stimulation, reference frames, names, powers) goes into
    ``metadata["faro"]``. ``fovs`` (the plan's (x, y) positions, µm) become the stage
    positions. A `wait` or `parallel` has no useq equivalent and is refused.
    """
    import useq

    phases = list(phases)
    if not phases:
        raise ValueError("phases is empty: give at least one Phase")
    problems = [
        f"phases[{i}]={p!r} is not a Phase: waits and parallel() have no useq equivalent "
        "(a MultiPhaseTimePlan runs its phases back to back)"
        for i, p in enumerate(phases)
        if not isinstance(p, Phase)
    ]
    if problems:
        raise ValueError("; ".join(problems))
    first = phases[0]

    def imaging(p: Phase) -> list[tuple[str, float, str | None]]:
        return [(c.config, c.exposure, c.group) for c in p.channels]

    for p in phases[1:]:
        if imaging(p) != imaging(first):
            problems.append(
                f"phase {p.name!r} images {imaging(p)} but phase {first.name!r} images "
                f"{imaging(first)}: one MDASequence has one channel list (powers may differ)"
            )
        if p.axis_order != first.axis_order:
            problems.append(
                f"phase {p.name!r} has axis_order={p.axis_order!r}, phase {first.name!r} "
                f"{first.axis_order!r}: one MDASequence has one axis order"
            )
    if problems:
        raise ValueError("; ".join(problems))
    plans = [
        useq.TIntervalLoops(interval=p.interval, loops=p.n_frames + (k > 0))
        for k, p in enumerate(phases)
    ]
    positions = [useq.Position(x=float(x), y=float(y)) for x, y in fovs or ()]
    return useq.MDASequence(
        axis_order=f"{first.axis_order}c",
        channels=[_useq_channel(c) for c in first.channels],
        time_plan=plans[0] if len(plans) == 1 else useq.MultiPhaseTimePlan(phases=plans),
        stage_positions=positions,
        metadata={FARO_KEY: {"phases": [_extras(p) for p in phases]}},
    )
