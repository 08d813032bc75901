"""The frames table of a run and per-FOV (T, C, Y, X) views assembled through it.

The raw array holds frames in acquisition order; what each frame is lives in its event
(``visit-t``, ``visit-p``, ``visit-kind``, ``visit-c``, ``channel-config``, ...: the
`faro_bluesky.schema` fields, checked there: a stream whose visit fields do not match the
schema raises `SchemaError` instead of reading defaults). The table
has one row per frame event of the stream, and ``index`` is the frame's position in the
stream's array: events and frames are one to one and in the same order (one frame per
event, ``collections_per_event == 1``, as the camera enforces).
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd

from ..schema import FrameField, FrameKind, VisitField, VisitFields

FRAME_COLUMNS = ["index", "t", "p", "kind", "c", "channel", "phase", "time", "x", "y", "seq_num"]
_SOURCES = {
    "t": VisitField.T,
    "p": VisitField.P,
    "kind": VisitField.KIND,
    "c": VisitField.C,
    "channel": FrameField.CHANNEL,
    "phase": VisitField.PHASE,
    "x": FrameField.STAGE_X,
    "y": FrameField.STAGE_Y,
}


def frames_table(events: pd.DataFrame) -> pd.DataFrame:
    """One row per frame from a stream's events table (columns as tiled stores them).

    Runs made without visit tags (``bp.count``) still get a table: ``t`` is the frame
    index, ``p`` and ``c`` are 0, ``kind`` is ``"image"``.
    """
    VisitFields.check_keys(events.columns)  # all the visit fields, or none (a stock plan)
    n = len(events)
    events = events.sort_values("seq_num", kind="stable") if "seq_num" in events else events
    out = pd.DataFrame({"index": np.arange(n, dtype=np.int64)})
    defaults = {
        "t": np.arange(n, dtype=np.int64),
        "p": np.zeros(n, np.int64),
        "kind": np.full(n, FrameKind.IMAGE.value, dtype=object),
        "c": np.zeros(n, np.int64),
        "channel": np.full(n, "", dtype=object),
        "phase": np.full(n, "", dtype=object),
        "x": np.full(n, np.nan),
        "y": np.full(n, np.nan),
    }
    for column, source in _SOURCES.items():
        values = events[source].to_numpy() if source in events else defaults[column]
        out[column] = values
    for column in ("kind", "channel", "phase"):
        out[column] = out[column].astype(object)
    out["time"] = events["time"].to_numpy(dtype=float) if "time" in events else np.nan
    out["seq_num"] = (
        events["seq_num"].to_numpy(dtype=np.int64) if "seq_num" in events else out["index"] + 1
    )
    return out[FRAME_COLUMNS]


def frame_grid(frames: pd.DataFrame, fov: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Timepoints and the (T, C) grid of raw indices of FOV ``fov``'s ``kind`` frames.

    Rows are the sorted timepoints that have such a frame, columns the channel position
    ``c``; a missing frame is -1.
    """
    if kind not in tuple(FrameKind):
        raise ValueError(f"kind={kind!r} must be one of {tuple(k.value for k in FrameKind)}")
    fovs = sorted(int(p) for p in frames["p"].unique())
    if fov not in fovs:
        raise ValueError(f"fov={fov} has no frames in this run: choose one of {fovs}")
    sel = frames[(frames["p"] == fov) & (frames["kind"] == kind)]
    if sel.empty:
        kinds = sorted(frames.loc[frames["p"] == fov, "kind"].unique())
        raise ValueError(f"fov={fov} has no {kind!r} frames: it has {kinds}")
    ts = np.sort(sel["t"].unique())
    n_c = int(sel["c"].max()) + 1
    grid = np.full((len(ts), n_c), -1, dtype=np.int64)
    rows = np.searchsorted(ts, sel["t"].to_numpy())
    grid[rows, sel["c"].to_numpy()] = sel["index"].to_numpy()
    return ts, grid


def assemble(raw: da.Array, grid: np.ndarray) -> da.Array:
    """(T, C, Y, X) from raw frames (N, 1, Y, X) and a (T, C) index grid; -1 → zeros.

    Indices past the end of ``raw`` (events whose frames are not there) also give zeros.
    """
    n, _, h, w = raw.shape
    blank = da.zeros((h, w), dtype=raw.dtype, chunks=(h, w))
    planes = [
        [raw[i, 0] if 0 <= i < n else blank for i in row]
        for row in grid.tolist()  # plain ints: dask indexes faster with them
    ]
    if not planes:
        return da.zeros((0, grid.shape[1], h, w), dtype=raw.dtype)
    return da.stack([da.stack(row) for row in planes])
