"""Stimulation as useq events: ``MDAEvent.slm_image`` to and from a Phase's stim fields.

useq-schema 0.9 has no stimulation in an `MDASequence`; its only patterned-light field
is the event's ``slm_image`` (`useq.SLMImage`: the image, an SLM device name, an SLM
exposure), which pymmcore-plus's engine puts on the SLM for that event's exposure. So a
Phase's stimulation maps to events (decision 0044):

- `useq_events` turns an experiment into the events a useq engine runs open-loop: per
  visit the imaging channels, the reference channels, then each stim channel as an
  event whose ``slm_image`` is the mask (``True``: the whole field) and whose exposure is
  the stim exposure of that frame (faro's ``stim_mode="current"`` order);
- `stimulation_from_events` reads such events back into ``stim_channels``,
  ``stim_frames`` and ``stim_exposure``; `stim_mask_from_useq` returns their image for
  ``optogenetic_plan(stim_mask=...)`` (a Phase holds no mask: faro's masks come from the
  analyzer, or from the plan's one fixed ``stim_mask``).

No useq equivalent: channel ``power`` travels in ``event.metadata["faro"]``; the SLM
device name is not used (faro fires the microscope's DMD).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..schema import FrameKind
from ._model import Channel, Parallel, Phase, Wait
from ._schedule import schedule
from ._useq import FARO_KEY, faro_group

if TYPE_CHECKING:
    import useq
    from numpy.typing import NDArray

__all__ = ["stim_mask_from_useq", "stimulation_from_events", "useq_events"]


def useq_events(
    experiment: Sequence[Phase | Wait | Parallel],
    fovs: Sequence[Sequence[float]],
    *,
    stim_mask: bool | NDArray[np.bool_] = True,
    time_per_fov: float | None = None,
) -> list[useq.MDAEvent]:
    """Every event of ``experiment`` on ``fovs``, stimulation as ``slm_image`` events.

    Built from `schedule` (so waits, parallel branches and FOV batching are timed as the
    plan would): ``min_start_time`` is the visit's scheduled time (s), ``index`` holds
    ``t`` (global timepoint), ``p`` and ``c`` (imaging, then reference, then stim channels
    of the visit), and ``metadata["faro"]`` the phase name, frame, kind and power.
    ``stim_mask``: the SLM image of every stimulation (camera-sized bool array, or
    ``True`` for the whole field). Open loop: a closed-loop mask is decided while running.
    """
    import useq

    mask: Any = True if stim_mask is True else np.asarray(stim_mask, dtype=bool)
    out = []
    for v in schedule([tuple(xy) for xy in fovs], experiment, time_per_fov=time_per_fov):
        kinds = [
            (FrameKind.IMAGE, v.channels),
            (FrameKind.REF, v.ref_channels),
            (FrameKind.STIM, v.stim_channels),
        ]
        c = 0
        for kind, channels in kinds:
            for ch in channels:
                faro: dict[str, Any] = {"phase": v.phase, "frame": v.frame, "kind": kind.value}
                if ch.power is not None:
                    faro["power"] = ch.power
                channel = {"config": ch.config}
                if ch.group is not None:
                    channel["group"] = ch.group
                slm = None
                if kind is FrameKind.STIM:
                    slm = useq.SLMImage(data=mask, exposure=ch.exposure)
                out.append(
                    useq.MDAEvent(
                        index={"t": v.t, "p": v.p, "c": c},
                        channel=channel,
                        exposure=ch.exposure,
                        min_start_time=v.time,
                        x_pos=v.xy[0],
                        y_pos=v.xy[1],
                        slm_image=slm,
                        metadata={FARO_KEY: faro},
                    )
                )
                c += 1
    return out


def _stim_channel(event: useq.MDAEvent, problems: list[str]) -> Channel | None:
    where = f"event {dict(event.index)}"
    if event.channel is None:
        problems.append(f"{where} has an slm_image but no channel: give the stim channel")
        return None
    exposure = event.slm_image.exposure if event.slm_image else None
    exposure = exposure if exposure is not None else event.exposure
    if exposure is None:
        problems.append(f"{where} has an slm_image but no exposure (event or SLM): set one")
        return None
    power = event.metadata.get(FARO_KEY, {}).get("power")
    return Channel(event.channel.config, exposure, power, faro_group(event.channel))


def stimulation_from_events(
    events: Sequence[useq.MDAEvent], t0: int = 0, n_frames: int | None = None
) -> dict[str, Any]:
    """``stim_channels``, ``stim_frames`` and ``stim_exposure`` of a phase from events.

    The events with an ``slm_image`` whose ``t`` lies in ``t0 .. t0 + n_frames - 1`` are
    this phase's stimulation (frame ``t - t0``). faro fires the same stim channels on
    every FOV a stim frame images, and one exposure per frame if it varies, so events
    that say otherwise are refused with the reason (`ValueError`). No such event: ``{}``.
    """
    problems: list[str] = []
    fired: dict[int, dict[int, list[Channel]]] = {}
    imaged: dict[int, set[int]] = {}
    for ev in events:
        t = ev.index.get("t", 0) - t0
        if t < 0 or (n_frames is not None and t >= n_frames):
            continue
        if ev.slm_image is None:
            imaged.setdefault(t, set()).add(ev.index.get("p", 0))
            continue
        ch = _stim_channel(ev, problems)
        if ch is not None:
            fired.setdefault(t, {}).setdefault(ev.index.get("p", 0), []).append(ch)
    if problems:
        raise ValueError("; ".join(problems))
    if not fired:
        return {}
    frames = sorted(fired)

    def recipe(chs: list[Channel]) -> list[tuple[str, str | None, float | None]]:
        return [(c.config, c.group, c.power) for c in chs]

    first = fired[frames[0]][min(fired[frames[0]])]
    per_frame = []
    for t in frames:
        fovs = imaged.get(t) or set(fired[frames[0]])
        if set(fired[t]) != fovs:
            problems.append(
                f"frame {t}: stimulation on FOVs {sorted(fired[t])}, imaging on "
                f"{sorted(fovs)}: a phase stimulates every FOV it images on a stim frame; "
                "split the FOVs into phases (Phase(fovs=[...]), parallel())"
            )
        exposures = {tuple(c.exposure for c in chs) for chs in fired[t].values()}
        if any(recipe(chs) != recipe(first) for chs in fired[t].values()) or len(exposures) > 1:
            problems.append(
                f"frame {t}: stim channels {recipe(first)} first, here different ones or "
                "different exposures per FOV: a phase fires one recipe on every FOV"
            )
        per_frame.append(exposures.pop())
    if problems:
        raise ValueError("; ".join(problems))
    stim: dict[str, Any] = {"stim_channels": first, "stim_frames": frames}
    if any(e != per_frame[0] for e in per_frame):
        if any(len(set(e)) > 1 for e in per_frame):
            raise ValueError(
                "stim exposures change from frame to frame and differ between the stim "
                "channels of a frame: faro overrides all stim channels with one exposure "
                "per frame (stim_exposure); give the channels equal exposures"
            )
        stim["stim_exposure"] = [e[0] for e in per_frame]
    return stim


def stim_mask_from_useq(events: Sequence[useq.MDAEvent]) -> NDArray[np.bool_] | None:
    """The one SLM image of ``events``, for ``optogenetic_plan(stim_mask=...)``.

    None: no event has an ``slm_image``, or every one is a non-zero scalar (the whole
    field, the plan's default). A 2-D image is returned as a bool mask (non-zero = lit).
    Images that differ between events are refused: faro's changing masks come from the
    analyzer, a fixed ``stim_mask`` is one image.
    """
    images = [np.asarray(ev.slm_image) for ev in events if ev.slm_image is not None]
    if not images:
        return None
    if any(not np.array_equal(images[0], im) for im in images[1:]):
        raise ValueError(
            "the events' slm_images differ: faro fires one fixed stim_mask, or the masks "
            "its analyzer computes; use one image (or an analyzer)"
        )
    image = images[0]
    if image.ndim == 0:
        if not image.item():
            raise ValueError("slm_image 0 lights no mirror: drop those events instead")
        return None
    if image.ndim != 2:
        raise ValueError(f"slm_image of shape {image.shape}: faro masks are 2-D (camera)")
    return image != 0
