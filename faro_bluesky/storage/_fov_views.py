"""Each run's images as standard OME-Zarr per FOV, built from the run's documents.

The raw array interleaves FOVs, channels and stimulation readouts (decision 0016); a
viewer opening it shows one misleading time series. What each frame is lives in its event
(the frames table: t, p, kind, c, channel per raw index), so storage turns that table into
one ``(t, c, y, x)`` image per FOV (`FovView`) and the devices layer links the raw chunks
into ``<store>/fovs/<p>`` (`faro_bluesky.devices.write_fov_views`): no pixel is written
twice, and tiled keeps serving the raw array from the documents.

- ``t`` is the run's timepoint (counted across phases): every FOV has the same ``T``, and
  its scale is the interval of the phase that covers the most timepoints; the real time
  of every plane is in the view's ``faro`` attributes and in the OME-XML (decision 0057).
- ``c`` is one channel per (kind, position, preset) seen in the run: imaging channels,
  then reference channels, then stimulation readouts; a cell never acquired reads as 0.

`FovViewBuilder` (in every catalog `Recorder`) builds them after each run's stop on its own
thread; ``run.fov_store()`` builds them on demand (a run rebuilt from its log, or recorded
before this existed) and waits for a build under way.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from ..devices import FOVS, FovView, ViewChannel, write_fov_views
from ..schema import FrameKind
from ._store import RunStore

_KIND_ORDER = {FrameKind.IMAGE: 0, FrameKind.REF: 1, FrameKind.STIM: 2}
_IMAGE_COLORS = ("00FF00", "FF00FF", "FFFF00", "FF0000", "0000FF", "FFFFFF")
_KIND_COLORS = {FrameKind.REF: "FFFFFF", FrameKind.STIM: "00FFFF"}


# ------------------------------------------------------------ the views
def fov_views(
    frames: pd.DataFrame, start: Mapping[str, Any], *, pixel_size_um: float = 1.0
) -> list[FovView]:
    """One `FovView` per FOV of a run's frames table (`frames_table`)."""
    if frames.empty:
        return []
    channels = _channels(frames)
    column = {(ch.kind, ch.c, ch.config): i for i, ch in enumerate(channels)}
    n_t = int(frames["t"].max()) + 1
    t0 = float(start.get("time", np.nanmin(frames["time"])))
    intervals = phase_intervals(start.get("experiment") or [])
    views = []
    for p, sel in frames.groupby("p", sort=True):
        cols = [column[k] for k in zip(sel["kind"], sel["c"], sel["channel"], strict=True)]
        rows = sel["t"].to_numpy(np.int64)
        grid = np.full((n_t, len(channels)), -1, np.int64)
        grid[rows, cols] = sel["index"].to_numpy(np.int64)
        times = np.full(grid.shape, np.nan)
        times[rows, cols] = sel["time"].to_numpy(float) - t0
        phases, interval = _time_axis(sel, intervals)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a timepoint never taken here
            per_t = np.nanmin(times, axis=1)
        xy = sel[["x", "y"]].dropna()
        views.append(
            FovView(
                fov=int(p),
                raw_index=grid,
                channels=tuple(channels),
                t_interval_s=interval,
                pixel_size_um=pixel_size_um,
                plane_time_s=times,
                name=f"fov {int(p)}",
                stage_um=(float(xy.iloc[0]["x"]), float(xy.iloc[0]["y"])) if len(xy) else None,
                extra={"time_s": [_json(v) for v in per_t], "phases": phases},
            )
        )
    return views


def _channels(frames: pd.DataFrame) -> list[ViewChannel]:
    """The run's channels: imaging, then reference, then stimulation; by position, seen."""
    keys = frames.drop_duplicates(["kind", "c", "channel"])
    keys = keys.assign(rank=[_KIND_ORDER.get(k, len(_KIND_ORDER)) for k in keys["kind"]])
    keys = keys.sort_values(["rank", "c", "index"], kind="stable")
    rows = list(zip(keys["kind"], keys["c"], keys["channel"], strict=True))
    labels = [
        (str(config) or f"{kind} {c}") + ("" if kind == FrameKind.IMAGE else f" ({kind})")
        for kind, c, config in rows
    ]
    counts = Counter(labels)
    out, n_image = [], 0
    for label, (kind, c, config) in zip(labels, rows, strict=True):
        color = _KIND_COLORS.get(kind, _IMAGE_COLORS[n_image % len(_IMAGE_COLORS)])
        n_image += kind == FrameKind.IMAGE
        unique = label if counts[label] == 1 else f"{label} #{c}"
        out.append(
            ViewChannel(unique, str(kind), int(c), str(config), color, kind != FrameKind.STIM)
        )
    return out


def phase_intervals(experiment: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Phase name → interval (s) from a start document's ``experiment`` (first wins)."""
    out: dict[str, float] = {}
    for item in experiment:
        if item.get("type") == "parallel":
            for branch in item.get("branches", []):
                for name, interval in phase_intervals(branch).items():
                    out.setdefault(name, interval)
        elif item.get("type") == "phase" and item.get("interval"):
            out.setdefault(str(item["name"]), float(item["interval"]))
    return out


def _time_axis(
    sel: pd.DataFrame, intervals: Mapping[str, float]
) -> tuple[list[dict[str, Any]], float]:
    """A FOV's phases as timepoint ranges, and the time axis' scale (s).

    NGFF 0.5 has one scale per axis: it is the interval of the phase with the most
    timepoints (the first such); a phase not in the experiment (chosen at run time) gets
    its measured median spacing. Without any, 1 s.
    """
    per_t = sel.groupby("t").agg(time=("time", "min"), phase=("phase", "first")).sort_index()
    block = (per_t["phase"] != per_t["phase"].shift()).cumsum()
    phases: list[dict[str, Any]] = []
    for _, part in per_t.groupby(block, sort=False):
        name = str(part["phase"].iloc[0])
        interval = intervals.get(name) or _measured(part)
        phases.append(
            {
                "phase": name,
                "t_start": int(part.index[0]),
                "t_stop": int(part.index[-1]) + 1,
                "interval_s": interval,
            }
        )
    known = [p for p in phases if p["interval_s"]]
    if known:
        return phases, float(max(known, key=lambda p: p["t_stop"] - p["t_start"])["interval_s"])
    return phases, _measured(per_t) or 1.0


def _measured(per_t: pd.DataFrame) -> float | None:
    """Median seconds per timepoint, from the frames' times; None if not measurable."""
    valid = per_t["time"].dropna()
    if len(valid) < 2:
        return None
    steps = np.diff(valid.to_numpy()) / np.diff(valid.index.to_numpy())
    value = float(np.median(steps))
    return value if value > 0 else None


def _json(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def pixel_size(store: Path) -> float:
    """The raw image's pixel size (µm), from its NGFF scale; 1 if it has none."""
    try:
        ome = zarr.open_group(store, mode="r").attrs["ome"]
        dataset = ome["multiscales"][0]["datasets"][0]
        return float(dataset["coordinateTransformations"][0]["scale"][-1])
    except (FileNotFoundError, KeyError, IndexError, TypeError):
        return 1.0


def build_fov_views(
    store: Path, frames: pd.DataFrame, start: Mapping[str, Any], *, array_name: str = "camera"
) -> Counter[str]:
    """Build ``<store>/fovs`` from a run's frames table and start document."""
    views = fov_views(frames, start, pixel_size_um=pixel_size(store))
    return write_fov_views(store, views, array_name=array_name) if views else Counter()


def views_current(store: RunStore) -> bool:
    """Whether the store's views were built over all the frames its raw array holds."""
    try:
        built = zarr.open_group(store.path / FOVS, mode="r").attrs.asdict()
        frames = zarr.open_array(store.path / store.array_name, mode="r").shape[0]
    except FileNotFoundError:
        return False
    return "ome" in built and built.get("faro", {}).get("frames") == frames
