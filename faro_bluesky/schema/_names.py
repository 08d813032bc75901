"""The names: streams, device prefixes, event keys and frame kinds, and `SchemaError`."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Stream:
    """Names of the event streams a faro-bluesky run records (plain ``str`` constants).

    Plain strings rather than an enum: they go into documents, which must hold exact
    ``str`` for every serializer on the way (tiled, the raw document log).
    """

    PRIMARY: Final = "primary"
    """Camera frames, one event per frame, tagged with the `VisitField` fields."""
    MASK: Final = "mask"
    """The mask each stimulation used (`MaskField`), once its light went out."""
    MISSED: Final = "missed"
    """A visit a device fault cost: its `VisitField` tag and `MissedField` fields."""
    ANALYSIS: Final = "analysis"
    """Per-visit analysis summaries (`SUMMARY_FIELDS`, keys ``analysis-<name>``)."""
    LABELS: Final = "labels"
    """The analyzer's label images, one row per camera frame (external: the store's
    ``labels/<name>/0`` arrays, keys ``labels-<name>``); written by storage at the stop."""
    TRACKS: Final = "tracks"
    """The analyzer's tracks table, one event per row (keys ``tracks-<column>``); written
    by storage at the stop."""
    PER_VISIT: Final = "per_visit"
    """The plan's ``per_visit`` readers, once per visit, with the visit tag."""
    CALIBRATION: Final = "calibration"
    """`calibrate_dmd`'s fit (points and residuals)."""
    LOCATE: Final = "locate"
    """`calibrate_dmd`'s stripe frames (which part of the DMD the camera sees)."""


class SchemaError(ValueError):
    """An event does not match this schema (a field missing or unknown).

    Its own type so that callbacks which must never raise into the RunEngine can catch
    it and report it in their status, where other bugs still surface as exceptions.
    """


class FrameKind(StrEnum):
    """What a camera frame of a visit is (``visit-kind``)."""

    IMAGE = "image"
    """An imaging channel: the frames the analysis segments."""
    STIM = "stim"
    """The readout frame of a stimulation exposure (the DMD showing the mask)."""
    REF = "ref"
    """A reference channel, measured after the mask (not used to compute it)."""


VISIT: Final = "visit"
"""Name of the plan's `VisitTag`: the prefix of the `VisitField` keys."""
MISSED: Final = "missed"
"""Name of the plan's `MissedVisit`: the prefix of the `MissedField` keys."""
MASK: Final = "mask"
"""Name of the plan's `MaskFacet`: the prefix of the `MaskField` keys."""


class VisitField(StrEnum):
    """Keys of the visit tag read with every frame (and with ``missed``/``per_visit``)."""

    T = "visit-t"
    """Global timepoint, counted across phases."""
    P = "visit-p"
    """FOV index into the start document's ``fovs``."""
    FRAME = "visit-frame"
    """Frame index within the phase."""
    INDEX = "visit-index"
    """Visit number in run order (the schedule's row)."""
    PHASE = "visit-phase"
    """Phase name."""
    KIND = "visit-kind"
    """A `FrameKind`; empty in events that are no frame (``per_visit``, ``missed``)."""
    C = "visit-c"
    """The channel's position within its kind."""
    N = "visit-n"
    """Channels of that kind in the visit (its stack is complete at ``n`` frames)."""
    STIM = "visit-stim"
    """Whether the visit stimulates."""
    REF = "visit-ref"
    """Whether the visit takes reference channels."""
    METADATA = "visit-metadata"
    """The phase metadata as JSON."""
    SCHEDULED = "visit-scheduled"
    """The visit's scheduled start (epoch s, after any pause shift)."""


class MissedField(StrEnum):
    """Keys of `MissedVisit` (stream ``missed``)."""

    DEVICE = "missed-device"
    """The device that failed the visit."""
    REASON = "missed-reason"
    """How it failed."""


class MaskField(StrEnum):
    """Keys of the plan's `MaskFacet` (stream ``mask``)."""

    MASK = "mask-mask"
    """The mask (uint8 0/1, camera pixels)."""
    FOV = "mask-fov"
    """FOV of the frame it was computed from."""
    T = "mask-t"
    """Timepoint of the frame it was computed from."""
    MISSED = "mask-missed"
    """True when the mask came too late (or failed) and a blank one fired."""
    WAIT_MS = "mask-wait_ms"
    """How long the plan waited for it (ms)."""
    PIXELS_AT = "mask-pixels_at"
    """When the analyzer had the source visit's pixels (epoch s; NaN: the mask source
    does not say, or the mask missed). With the timing fields below, the closed loop's
    latency can be split from the documents alone (`MaskTimes`)."""
    LABELS_AT = "mask-labels_at"
    """When the stimulator's inputs were ready: the visit segmented and, if the
    stimulator needs them, its cells tracked (epoch s; NaN as above)."""
    COMPUTE_MS = "mask-compute_ms"
    """Time the analysis components (segmentation, measurements before the mask,
    tracking, the stimulator) computed between the source's exposure end and the mask
    (ms; NaN as above): the rest of that span is the framework's."""
    SEGMENT_START = "mask-segment_start"
    """For a mask computed from the segmenter's plane, before its visit's last exposure
    ended (docs/decisions/0061): when its segmentation started (epoch s; NaN for a mask
    that followed the whole visit, whose ``mask-compute_ms`` says it all). Only the part of
    this and the next spans after that exposure's end is on the latency path, which the
    source cannot know when it publishes the mask."""
    SEGMENT_END = "mask-segment_end"
    """... when it ended ..."""
    STEPS_START = "mask-steps_start"
    """... when positions, tracking and the stimulator started (one after the other) ..."""
    STEPS_END = "mask-steps_end"
    """... and when the stimulator ended (epoch s; NaN as above)."""


class FrameField(StrEnum):
    """Readings of the default-named `Microscope` devices that readers rely on."""

    CHANNEL = "channel-config"
    """The channel preset a frame was taken with."""
    STAGE_X = "stage-x"
    """Stage x (µm)."""
    STAGE_Y = "stage-y"
    """Stage y (µm)."""
    TIMING_START = "camera-timing-start"
    """Exposure start (epoch s)."""
    TIMING_END = "camera-timing-end"
    """Exposure end (epoch s)."""
    DMD_FRACTION = "dmd-fraction"
    """Fraction of DMD pixels on; its timestamp is when the pattern went up."""
