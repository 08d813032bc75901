"""Schedule lag and closed-loop latency of a run, from its documents alone.

Every frame's event carries its exposure's start and end (``camera-timing-start``/``-end``),
the visit's scheduled start (``visit-scheduled``) and the DMD's reading, whose timestamp is
when its current pattern went up (``dmd-fraction``); every mask event says which frame it
was computed from (``mask-fov``, ``mask-t``), by its timestamp when the plan had it, and,
from the analyzer (`faro_bluesky.schema.MaskTimes`), when the source's pixels and labels
were ready and how long the components computed on the way (``mask-pixels_at``,
``mask-labels_at``, ``mask-compute_ms``). So a stored run, a replay and a live stream of
documents give the same tables.

Columns are named as tiled stores events: data keys as they are, their timestamps as
``ts_<key>``; `events_table` builds the same from live event documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from ..schema import FrameField, FrameKind, MaskField, VisitField, VisitFields

START, END, SCHEDULED = FrameField.TIMING_START, FrameField.TIMING_END, VisitField.SCHEDULED
DMD = FrameField.DMD_FRACTION
T, P, KIND, C = VisitField.T, VisitField.P, VisitField.KIND, VisitField.C

CHAIN: Final = (
    ("exposure_end", "pixels_ready", "pixels"),
    ("pixels_ready", "labels_ready", "labels"),
    ("labels_ready", "mask_ready", "mask"),
    ("mask_ready", "dmd_shown", "dmd"),
    ("dmd_shown", "stim_start", "stim"),
)
"""The closed loop's consecutive stages: (from, to, stage name); they add up to ``total``.

- ``pixels``: the source frame's exposure end -> the analyzer has the visit's pixels (from
  the camera's memory): readout, the frame's event, the analyzer's intake;
- ``labels``: -> segmentation (the rest of it, when it started with an earlier plane) and,
  if the stimulator needs them, tracking are done: the stimulator's inputs are ready;
- ``mask``: -> the plan has the mask (the stimulator, the hand-off to the plan's loop);
- ``dmd``: -> the pattern is shown on the DMD;
- ``stim``: -> the stimulation exposure starts.

A mask computed from the segmenter's plane (docs/decisions/0061) may be ready before the
source frame's exposure ends: its ``pixels`` and ``labels`` are then 0 and its ``compute``
only the part of its spans (``mask-segment_*``, ``mask-steps_*``) after that end.
"""
LATENCY_STAGES: Final = (
    *(stage for _, _, stage in CHAIN),
    "total",
    "pixels_to_mask",
    "compute",
    "framework",
)
"""The latency columns (ms) `RunTiming.summary` describes: the `CHAIN` stages; ``total``
(exposure end -> stim exposure start); ``pixels_to_mask`` (exposure end -> the plan has the
mask: ``pixels + labels + mask``, also known when the mask source records no times, e.g. a
remote analyzer or a run recorded before them); ``compute`` (the components' compute in
that span, from the mask event) and ``framework`` (``total - compute``: plan, devices,
documents and hand-offs)."""
_TIMES: Final = ("exposure_end", *(to for _, to, _ in CHAIN))


def events_table(events: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Event documents as a table like tiled's: data keys plus ``ts_<key>``, ``time``."""
    rows = []
    for e in events:
        row = {"seq_num": e["seq_num"], "time": e["time"], **e["data"]}
        row.update({f"ts_{k}": v for k, v in e["timestamps"].items()})
        rows.append(row)
    return pd.DataFrame(rows)


def lag_table(primary: pd.DataFrame) -> pd.DataFrame:
    """One row per visit: scheduled start, its first exposure's start, lag (ms)."""
    if primary.empty or START not in primary or SCHEDULED not in primary:
        return pd.DataFrame(columns=["t", "p", "scheduled", "exposure_start", "lag_ms"])
    first = primary.sort_values("seq_num").groupby([T, P], sort=False).head(1)
    out = pd.DataFrame(
        {
            "t": first[T].to_numpy(),
            "p": first[P].to_numpy(),
            "scheduled": first[SCHEDULED].to_numpy(float),
            "exposure_start": first[START].to_numpy(float),
        }
    )
    out["lag_ms"] = (out["exposure_start"] - out["scheduled"]) * 1000.0
    return out


def latency_table(primary: pd.DataFrame, masks: pd.DataFrame) -> pd.DataFrame:
    """One row per stimulation frame: from its mask's source exposure to the stim exposure.

    The times (epoch s) of each step of the closed loop, then the `LATENCY_STAGES` (ms).
    The source frame is the last imaging frame of the mask's visit. A mask that missed (a
    blank one fired) or whose source gives no `MaskTimes` has NaN for the analyzer's
    times, and so for ``pixels``, ``labels``, ``mask``, ``compute`` and ``framework``.
    """
    cols = ["t", "p", "source_t", *_TIMES, "compute"]
    if primary.empty or masks.empty or START not in primary:
        return pd.DataFrame(columns=[*cols[:-1], *LATENCY_STAGES])
    primary = primary.sort_values("seq_num")
    images = primary[primary[KIND] == FrameKind.IMAGE]
    source_end = images.groupby([P, T])[END].max()
    masks = masks.sort_values("seq_num")
    stims = primary[(primary[KIND] == FrameKind.STIM) & (primary[C] == 0)]
    rows = []
    # the k-th mask event of a FOV fired the k-th stimulation of that FOV
    for p, group in stims.groupby(P, sort=False):
        fov_masks = masks[masks[MaskField.FOV] == p]
        for (_, stim), (_, mask) in zip(group.iterrows(), fov_masks.iterrows(), strict=False):
            src_t = int(mask[MaskField.T])
            rows.append(
                {
                    "t": int(stim[T]),
                    "p": int(p),
                    "source_t": src_t,
                    "exposure_end": float(source_end.get((p, src_t), np.nan)),
                    "pixels_ready": float(mask.get(MaskField.PIXELS_AT, np.nan)),
                    "labels_ready": float(mask.get(MaskField.LABELS_AT, np.nan)),
                    "mask_ready": float(mask.get(f"ts_{MaskField.MISSED}", mask["time"])),
                    "dmd_shown": float(stim.get(f"ts_{DMD}", np.nan)),
                    "stim_start": float(stim[START]),
                    "compute": float(mask.get(MaskField.COMPUTE_MS, np.nan)),
                    "spans": [
                        float(mask.get(k, np.nan))
                        for k in (
                            MaskField.SEGMENT_START,
                            MaskField.SEGMENT_END,
                            MaskField.STEPS_START,
                            MaskField.STEPS_END,
                        )
                    ],
                }
            )
    out = pd.DataFrame(rows, columns=[*cols, "spans"])
    _on_the_path(out)
    out = out.drop(columns="spans")
    for before, after, stage in CHAIN:
        out[stage] = (out[after] - out[before]) * 1000.0
    out["total"] = (out["stim_start"] - out["exposure_end"]) * 1000.0
    out["pixels_to_mask"] = (out["mask_ready"] - out["exposure_end"]) * 1000.0
    out["compute"] = out.pop("compute")  # with the stages, in `LATENCY_STAGES` order
    out["framework"] = out["total"] - out["compute"]
    return out.sort_values(["t", "p"], ignore_index=True)


def _on_the_path(out: pd.DataFrame) -> None:
    """Count only what happened after the source's exposure ended (in place).

    A mask known before the visit (fixed) is ready at the exposure's end: its ``dmd``
    stage is the way from that end to the pattern shown, its ``pixels_to_mask`` 0.

    A mask computed from the segmenter's plane may be ready before the visit's last
    exposure ends (``mask-segment_*``, ``mask-steps_*``), and the plan may have it then
    (it asks during that exposure, decision 0069): its times before that end are clamped
    to it (those stages took no time on the path) and its compute is the part of its
    spans between that end and the plan having the mask.
    """
    end = out["exposure_end"].to_numpy(float)
    # a mask recorded after its pattern went up was known before the visit (a fixed mask,
    # e.g. whole field: the plan fires it at once and records it after the stimulation)
    ready, shown = out["mask_ready"].to_numpy(float), out["dmd_shown"].to_numpy(float)
    out["mask_ready"] = np.where(ready > shown, np.minimum(end, shown), ready)
    for column in ("pixels_ready", "labels_ready", "mask_ready"):
        values = out[column].to_numpy(float)
        out[column] = np.where(np.isfinite(values) & (values < end), end, values)
    for i, spans in enumerate(out["spans"]):
        pairs = np.asarray(spans, dtype=float).reshape(-1, 2)
        pairs = pairs[np.isfinite(pairs).all(axis=1)]
        if not len(pairs):
            continue
        lo, hi = end[i], float(out["mask_ready"].iat[i])
        overlap = np.clip(np.minimum(pairs[:, 1], hi) - np.maximum(pairs[:, 0], lo), 0, None)
        out.loc[out.index[i], "compute"] = float(overlap.sum()) * 1000.0


@dataclass(frozen=True)
class RunTiming:
    """A run's lag (per visit) and latency (per stimulation) tables, in ms."""

    lag: pd.DataFrame
    latency: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        """p50 / p95 / p99 / max of lag and of each latency stage (ms)."""
        series = {"lag": self.lag["lag_ms"]} | {s: self.latency[s] for s in LATENCY_STAGES}
        rows = {}
        for name, values in series.items():
            v = pd.to_numeric(values, errors="coerce").dropna().to_numpy()
            rows[name] = (
                {q: float(np.percentile(v, int(q[1:]))) for q in ("p50", "p95", "p99")}
                | {"max": float(v.max()), "n": len(v)}
                if len(v)
                else {"p50": np.nan, "p95": np.nan, "p99": np.nan, "max": np.nan, "n": 0}
            )
        return pd.DataFrame(rows).T


def run_timing(primary: pd.DataFrame, masks: pd.DataFrame) -> RunTiming:
    """`RunTiming` from a run's ``primary`` and ``mask`` event tables."""
    VisitFields.check_keys(primary.columns)
    return RunTiming(lag_table(primary), latency_table(primary, masks))
