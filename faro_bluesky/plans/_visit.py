"""One visit of the experiment plan: move, image, stimulate, reference (`visit`).

Separate from `_opto.py` (the run around the visits) so each reads on its own; both are
public through `faro_bluesky.plans`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bluesky.protocols import Readable
from bluesky.utils import MsgGenerator

from ..devices import FixedMask, MaskFacet, Microscope, PatternedLight
from ..schema import FrameKind
from ._ahead import NextVisit
from ._errors import DeviceFault
from ._schedule import Visit
from ._stimulate import Staged, stage_stimulation, stimulate
from ._stubs import (
    OpenEvent,
    Triggered,
    acquire,
    begin_set_channel,
    end_set_channel,
    fetch_mask,
    finish_trigger,
    move,
    record_mask,
    set_channel,
    trigger_and_read_complete,
)
from ._tags import PauseClock, VisitTag

__all__ = ["frame_readables", "prepare_visit", "visit"]


def visit(
    microscope: Microscope,
    v: Visit,
    *,
    masks: MaskFacet | None = None,
    mask_t: int | None = None,
    stim_mode: str = "current",
    tag: VisitTag | None = None,
    per_visit: Sequence[Readable] = (),
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
    light: PatternedLight | None = None,
    sequenced: bool = False,
    meanwhile: Callable[[bool], MsgGenerator[Any]] | None = None,
    then: NextVisit | None = None,
) -> MsgGenerator[None]:
    """One visit of FOV ``v.p`` at timepoint ``v.t``: move, image, stimulate, reference.

    Order: ``"current"``: imaging channels, ref channels (if due), then the mask of this
    frame is fetched and fired; ``"previous"``: the mask of this FOV's previous frame
    (``mask_t``; none on its first visit) fires first, then imaging and ref. The stage
    moves only when the FOV changes (``applied`` remembers it across visits). Masks are
    projected by ``light`` (a `PatternedLight`; default the microscope's, ``scope.dmd``).
    ``meanwhile(awaited)``: records the caller composes during the stimulation's exposure
    (after the mask's event; the experiment plan's analysis summaries), run at most once:
    not at all in a visit that does not stimulate. ``then``: where the next visit starts
    (its FOV, its first preset): the stage and preset go there as the stimulation ends.

    The stimulation's preset, and its pattern if the mask is out before the last imaging
    frame's exposure ends, are sent during that exposure to devices the camera's thread
    applies after it (decision 0069); the blank and ``then`` during the stim exposure.

    Yields
    ------
    msg : Msg
        Stage ``set`` if needed, frames in stream ``primary``, the mask in stream ``mask``,
        ``light`` ``set`` and blank around each stim exposure, ``per_visit`` readings in stream
        ``per_visit``.

    """
    applied = {} if applied is None else applied
    scope = microscope
    if applied.get("xy") != v.xy:
        yield from move(scope.stage, v.xy, clock=clock)
        applied["xy"] = v.xy
    light = scope.dmd if light is None else light
    readables = frame_readables(scope, light, tag)
    common = {"readables": readables, "tag": tag, "clock": clock, "applied": applied}
    state = {"clock": clock, "applied": applied}
    fixed = masks is not None and isinstance(masks.provider, FixedMask)  # known beforehand

    def known_mask() -> Any:
        """The pattern when no analysis decides it: a fixed mask, else the whole field."""
        return masks.as_fired(masks.provider.mask) if fixed else True

    staged: Staged | None = None

    def stage(exposing: Triggered) -> MsgGenerator[None]:
        # the last imaging frame exposes: its stimulation's preset and pattern go now
        nonlocal staged
        staged = yield from stage_stimulation(
            scope.camera,
            scope.channel,
            light,
            v.stim_channels[0],
            exposing,
            masks=masks,
            frame=(v.p, v.t),
            pattern=known_mask() if masks is None or fixed else None,
            clock=clock,
        )

    def _stim(source_t: int, unsaved: OpenEvent | None = None) -> MsgGenerator[None]:
        # ``unsaved``: the last imaging frame's event, read and not saved (a fixed mask's
        # stimulation); it is saved once the stimulation's devices are moving
        mask: Any = known_mask() if masks is None or fixed else None
        if staged is not None and staged.pattern is not None:
            mask = staged.pattern  # (on its way; a fixed mask is fetched after, as below)
        elif mask is None:
            if unsaved is not None and not masks.ready(v.p, source_t):
                yield from unsaved.save()  # the analyzer's mask may start from this event
            # the stim preset goes up while the analyzer works; only the pattern follows it
            preset = None
            if staged is None:
                preset = yield from begin_set_channel(scope.channel, v.stim_channels[0], **state)
            fetching = None
            if staged is not None and staged.fetch is not None:
                fetching = (staged.fetch, staged.pauses)  # asked while the image exposed
            mask = yield from fetch_mask(
                masks, v.p, source_t, clock=clock, record=False, started=fetching
            )
            yield from end_set_channel(scope.channel, preset, **state)

        recorded = False

        def record(awaited: bool = False) -> MsgGenerator[None]:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            if fixed:
                yield from fetch_mask(masks, v.p, source_t, clock=clock)
            elif masks is not None:
                if staged is not None and staged.fetch is not None and staged.pattern is not None:
                    # the mask came during the image's exposure: its trigger is done; waited
                    # for all the same (a group never waited stays in the RunEngine till the
                    # run ends: memory over a long run)
                    yield from finish_trigger(*staged.fetch)
                yield from record_mask(masks, awaited=awaited)
            if meanwhile is not None:
                yield from meanwhile(awaited)

        # the mask event (and the caller's records) are composed while the stimulation
        # exposes (off the latency path, decision 0066); a stimulation cut short by a
        # device fault still records the mask it used
        try:
            yield from stimulate(
                scope.camera,
                scope.channel,
                light,
                mask,
                v.stim_channels,
                unsaved=unsaved,
                while_exposing=None if fixed else lambda: record(awaited=True),
                staged=staged,
                then=then,
                stage=scope.stage,
                **common,
            )
        except DeviceFault:
            if unsaved is not None:  # (before the mask's own event)
                yield from unsaved.save()
            yield from record()
            raise
        yield from record()

    if v.stim and stim_mode == "previous" and mask_t is not None:
        yield from _stim(mask_t)
    stim_next = v.stim and stim_mode == "current"
    # The last imaging frame reads the channel and light (which the stimulation moves) at
    # once and the rest of its event while they move. An analyzer's mask not out yet may
    # start from that event: it then goes out first, the preset follows (decision 0068).
    unsaved = OpenEvent([scope.channel, light]) if stim_next else None
    try:
        yield from acquire(
            scope.camera,
            scope.channel,
            v.channels,
            kind=FrameKind.IMAGE,
            sequenced=sequenced,
            keep_open=None if v.ref else unsaved,
            while_last=stage if stim_next and v.stim_channels and not v.ref else None,
            **common,
        )
        if v.ref:
            yield from acquire(
                scope.camera,
                scope.channel,
                v.ref_channels,
                kind="ref",
                keep_open=unsaved,
                while_last=stage if stim_next and v.stim_channels else None,
                **common,
            )
        if stim_next:
            yield from _stim(v.t, unsaved)
    except Exception:
        if unsaved is not None:  # a frame taken is never lost, even when the stim fails
            yield from unsaved.save()
        raise
    if per_visit:
        yield from trigger_and_read_complete([*per_visit, tag] if tag else per_visit, "per_visit")


def frame_readables(
    microscope: Microscope, light: PatternedLight | None = None, tag: VisitTag | None = None
) -> list[Any]:
    """What each frame's event reads besides the camera, in order (``light``: the DMD's).

    Every frame's event says when it was exposed and what the light showed meanwhile (the
    timestamp of its reading: when the pattern went up): latency from documents alone.
    The settings come first (channel and light, which a stimulation moves, then stage
    and tags): `acquire` reads them while the frame is exposed; the camera's timing
    last, with the camera (`frame_devices`), once the frame is taken.
    """
    light = microscope.dmd if light is None else light
    readables: list[Any] = [microscope.channel] + ([light] if light is not None else [])
    readables += [microscope.stage] + ([tag] if tag is not None else [])
    return [*readables, microscope.camera.timing]


def prepare_visit(
    microscope: Microscope,
    v: Visit,
    *,
    stim_mode: str = "current",
    clock: PauseClock | None = None,
    applied: dict[str, Any],
    sequenced: bool = False,
) -> MsgGenerator[None]:
    """Move the stage to visit ``v``'s FOV and apply its first imaging preset.

    Done before the visit is due, so that its first exposure starts on schedule. In
    ``"previous"`` mode a stimulating visit begins with the stimulation, whose channel is
    set with the DMD pattern, so only the stage moves then. ``applied`` is shared with
    `visit`, which then skips what is already in place. ``sequenced``: a running camera
    sequence switches the presets (a later visit of a multi-channel burst): none is set.
    """
    if applied.get("xy") != v.xy:
        yield from move(microscope.stage, v.xy, clock=clock)
        applied["xy"] = v.xy
    if v.channels and not sequenced and not (v.stim and stim_mode == "previous"):
        yield from set_channel(microscope.channel, v.channels[0], clock=clock, applied=applied)
