"""``faro-bluesky report UID``: one PNG that shows what an optogenetic run did.

Three panels a microscopist checks first: each FOV at key timepoints with the stimulation
mask that fired drawn over the nuclei, the activity (ERK-KTR ``cnr``) of stimulated against
unstimulated cells over time, and the stimulation raster (which FOV was lit when).
Everything is read back from the catalog and the run's store, so it works on any stored run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..schema import FrameKind
from ._run import Run

_LIT = 0.5  # a cell counts as stimulated when the masks lit more than half of it on average


def _key_timepoints(ts: np.ndarray, n: int) -> list[int]:
    if len(ts) <= n:
        return list(range(len(ts)))
    return sorted({round(i) for i in np.linspace(0, len(ts) - 1, n)})


def _stim_mask_at(run: Run, frames: pd.DataFrame, fov: int, t: int) -> np.ndarray | None:
    """The mask that fired at visit (fov, t), or None if it did not stimulate."""
    if "stim_mask" not in run.label_names:
        return None
    rows = frames[(frames["p"] == fov) & (frames["t"] == t) & (frames["kind"] == FrameKind.STIM)]
    if rows.empty:
        return None
    labels = run.store.labels("stim_mask")
    index = int(rows["index"].iloc[0])
    if index >= labels.shape[0]:
        return None
    return np.asarray(labels[index, 0]) > 0


def _groups(tracks: pd.DataFrame) -> pd.Series:
    """'stimulated' / 'unstimulated' per (fov, particle), from the tracks' ``lit``."""
    if "lit" not in tracks or tracks["lit"].isna().all():
        return pd.Series(dtype=object)
    lit = tracks.groupby(["fov", "particle"])["lit"].mean()
    return lit.map(lambda v: "stimulated" if v > _LIT else "unstimulated")


LATENCY_COLOURS = {"lag": "tab:orange", "total": "tab:purple", "framework": "tab:grey"}


def _latency_panel(ax: Any, run: Run) -> None:
    """Schedule lag per visit and exposure end -> stim exposure per stimulation (ms).

    With the framework's share of the latter (minus the analysis components' compute), when
    the mask events record it. From the run's documents alone (`Run.timing`), so a stored
    run shows what it lived.
    """
    timing = run.timing()
    lag, latency = timing.lag, timing.latency
    if not len(lag) and not len(latency):
        ax.text(0.5, 0.5, "no timing recorded", ha="center", va="center", transform=ax.transAxes)
        return
    if len(lag):
        p50 = float(np.nanmedian(lag["lag_ms"]))
        ax.plot(
            lag["t"],
            lag["lag_ms"],
            ".",
            color=LATENCY_COLOURS["lag"],
            label=f"lag: scheduled -> exposure (p50 {p50:.1f} ms)",
        )
    if len(latency):
        p50 = float(np.nanmedian(latency["total"]))
        ax.plot(
            latency["t"],
            latency["total"],
            "s",
            color=LATENCY_COLOURS["total"],
            label=f"closed loop: exposure end -> stim exposure (p50 {p50:.1f} ms)",
        )
        framework = latency["framework"]
        if framework.notna().any():
            p50 = float(np.nanmedian(framework))
            ax.plot(
                latency["t"],
                framework,
                "x",
                color=LATENCY_COLOURS["framework"],
                label=f"of which the framework (p50 {p50:.1f} ms)",
            )
    ax.set_ylabel("ms")
    ax.set_xlabel("timepoint t")
    ax.legend(loc="upper right")


def write_report(
    run: Run,
    path: str | Path,
    *,
    key_frames: int = 4,
    max_fovs: int = 4,
    tracks: pd.DataFrame | None = None,
) -> Path:
    """Draw the report of ``run`` into the PNG ``path``; return the path.

    ``tracks`` replaces the run's own tracks (e.g. those of a re-analysis of it).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"report path {path}: give a .png file name")
    frames = run.frames
    if frames.empty:
        raise ValueError(f"run {run.uid[:8]} has no frames to report on")
    fovs = sorted(int(p) for p in frames["p"].unique())[:max_fovs]
    tracks = run.tracks() if tracks is None else tracks
    fig = plt.figure(figsize=(3.0 * key_frames, 2.6 * len(fovs) + 7.5), dpi=80)
    grid = fig.add_gridspec(
        len(fovs) + 3, key_frames, height_ratios=[1] * len(fovs) + [1.1, 0.7, 0.8]
    )
    fig.suptitle(f"run {run.uid[:8]} - {run.start.get('plan_name', '')} - {run.exit_status}")

    for row, fov in enumerate(fovs):
        ts = run.timepoints(fov)
        stack = run.images(fov)
        for col, i in enumerate(_key_timepoints(ts, key_frames)):
            ax = fig.add_subplot(grid[row, col])
            image = np.asarray(stack[i, 0], dtype=float)
            lo, hi = np.percentile(image, (1, 99.5))
            ax.imshow(image, cmap="gray", vmin=lo, vmax=max(hi, lo + 1))
            mask = _stim_mask_at(run, frames, fov, int(ts[i]))
            if mask is not None and mask.any():
                overlay = np.zeros((*mask.shape, 4))
                overlay[mask] = (0.0, 0.8, 1.0, 0.35)
                ax.imshow(overlay)
            ax.set_title(f"FOV {fov}  t={int(ts[i])}" + ("  stim" if mask is not None else ""))
            ax.axis("off")

    ax = fig.add_subplot(grid[len(fovs), :])
    groups = _groups(tracks)
    if "cnr" in tracks and not groups.empty:
        tracks = tracks.join(groups.rename("group"), on=["fov", "particle"])
        for name, colour in (("stimulated", "tab:cyan"), ("unstimulated", "tab:gray")):
            sel = tracks[tracks["group"] == name]
            if sel.empty:
                continue
            trace = sel.groupby("t")["cnr"].agg(["mean", "std"])
            ax.plot(trace.index, trace["mean"], color=colour, label=f"{name} ({len(sel)} rows)")
            ax.fill_between(
                trace.index,
                trace["mean"] - trace["std"],
                trace["mean"] + trace["std"],
                color=colour,
                alpha=0.2,
            )
        ax.legend(loc="upper right")
        ax.set_ylabel("ERK-KTR c/n ratio")
    else:
        ax.text(
            0.5,
            0.5,
            "no activity in the tracks (no ERK-KTR features or no stimulation)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("timepoint t")

    ax = fig.add_subplot(grid[len(fovs) + 1, :])
    stim = frames[frames["kind"] == FrameKind.STIM].drop_duplicates(["p", "t"])
    imaged = frames[frames["kind"] == FrameKind.IMAGE].drop_duplicates(["p", "t"])
    ax.scatter(imaged["t"], imaged["p"], marker="|", color="0.7", label="imaged")
    ax.scatter(stim["t"], stim["p"], marker="s", color="tab:cyan", label="stimulated")
    ax.set_ylabel("FOV")
    ax.set_yticks(fovs)
    ax.set_xlabel("timepoint t")
    ax.legend(loc="upper right")

    _latency_panel(fig.add_subplot(grid[len(fovs) + 2, :]), run)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
