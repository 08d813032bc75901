"""Schedule lag and closed-loop latency of a run, from its documents alone.

Every frame's event carries its exposure's start and end (``camera-timing-start``/``-end``),
the visit's scheduled start (``visit-scheduled``) and the DMD's reading, whose timestamp is
when its current pattern went up (``dmd-fraction``); every mask event says which frame it
was computed from (``mask-fov``, ``mask-t``) and, by its timestamp, when it was ready. So a
stored run, a replay and a live stream of documents give the same tables.

Columns are named as tiled stores events: data keys as they are, their timestamps as
``ts_<key>``; `events_table` builds the same from live event documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..schema import FrameField, FrameKind, MaskField, VisitField, VisitFields

START, END, SCHEDULED = FrameField.TIMING_START, FrameField.TIMING_END, VisitField.SCHEDULED
DMD = FrameField.DMD_FRACTION
T, P, KIND, C = VisitField.T, VisitField.P, VisitField.KIND, VisitField.C
LATENCY_STAGES = ("pixels_to_mask", "mask_to_dmd", "dmd_to_stim", "total")


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

    Stages (ms): ``pixels_to_mask`` (source frame's exposure end -> mask ready),
    ``mask_to_dmd`` (-> pattern shown on the DMD), ``dmd_to_stim`` (-> the stim exposure
    starts) and ``total``. The source frame is the last imaging frame of the mask's visit.
    """
    cols = ["t", "p", "source_t", "exposure_end", "mask_ready", "dmd_shown", "stim_start"]
    if primary.empty or masks.empty or START not in primary:
        return pd.DataFrame(columns=[*cols, *LATENCY_STAGES])
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
                    "mask_ready": float(mask.get(f"ts_{MaskField.MISSED}", mask["time"])),
                    "dmd_shown": float(stim.get(f"ts_{DMD}", np.nan)),
                    "stim_start": float(stim[START]),
                }
            )
    out = pd.DataFrame(rows, columns=cols)
    out["pixels_to_mask"] = (out["mask_ready"] - out["exposure_end"]) * 1000.0
    out["mask_to_dmd"] = (out["dmd_shown"] - out["mask_ready"]) * 1000.0
    out["dmd_to_stim"] = (out["stim_start"] - out["dmd_shown"]) * 1000.0
    out["total"] = (out["stim_start"] - out["exposure_end"]) * 1000.0
    return out.sort_values(["t", "p"], ignore_index=True)


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
