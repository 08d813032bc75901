"""`Run`'s analysis outputs (tracks, labels) and phases, from the store or from tiled.

The analyzer writes into the run's zarr store; at the run's stop storage adds them to the
run as streams ``labels`` and ``tracks`` (`_analysis`), which tiled serves to any client.
``via="auto"`` reads the store when it is on this machine (also while the run is still being
analysed), else tiled: the same tables and arrays either way.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import pandas as pd

from ..schema import FrameKind, Stream
from ._analysis import LABEL_PREFIX, TRACK_PREFIX
from ._frames import frame_grid
from ._phases import NAMESPACE, PHASES
from ._store import empty_tracks

if TYPE_CHECKING:
    from ._run import Run

_VIA = ("auto", "zarr", "tiled")
_CHUNK_BYTES = 1 << 24  # label rows read from tiled per request, at most 16 MB


class RunOutputs:
    """Mixed into `Run`: what the analysis found, and the phases the run ran."""

    @property
    def phases(self: Run) -> list[str]:
        """Every phase of the run: those planned at its start, then those chosen as it ran.

        Read from the catalog (storage records the phase of each new first frame); a run
        recorded before that gives its start's ``phase_names``.
        """
        recorded = self.tiled.metadata.get(NAMESPACE, {}).get(PHASES)
        return list(recorded if recorded is not None else self.start.get("phase_names", []))

    def _via(self: Run, via: str) -> str:
        """``zarr`` or ``tiled`` for ``via``; auto: the store if this machine has it."""
        if via not in _VIA:
            raise ValueError(f"via={via!r} must be one of {list(_VIA)}")
        if via != "auto":
            return via
        try:
            path = self.store.path
        except ValueError:  # no store recorded: only tiled can have them
            return "tiled"
        return "zarr" if Path(path).is_dir() else "tiled"

    def _served(self: Run, stream: str) -> Any:
        if stream not in self.streams:
            raise ValueError(
                f"run {self.uid[:8]} has no {stream!r} stream in the catalog: it is added when "
                "the run stops (a running run's are in its store: via='zarr'), and only if "
                "the analysis wrote into the run's store"
            )
        return self.tiled[stream]

    # -------------------------------------------------------------- tracks
    def tracks(self: Run, fov: int | None = None, *, via: str = "auto") -> pd.DataFrame:
        """The analyzer's tracks of FOV ``fov`` (all if None), sorted by fov, t, particle.

        Empty (standard columns) if there are none yet. ``via`` as in `labels`.
        """
        if self._via(via) == "zarr":
            return self.store.tracks(fov)
        if Stream.TRACKS not in self.streams:
            return empty_tracks()
        stream = self._served(Stream.TRACKS)
        table = stream.base["internal"].read()
        specs = stream.metadata.get("data_keys", {})
        columns = [c for c in table.columns if c.startswith(TRACK_PREFIX)]
        out = table[columns].rename(columns=lambda c: c[len(TRACK_PREFIX) :])
        for key in columns:  # the dtypes the table had (tiled's table widens some)
            spec = specs.get(key, {})
            dtype = str if spec.get("dtype") == "string" else spec.get("dtype_numpy")
            if dtype is not None:
                name = key[len(TRACK_PREFIX) :]
                out[name] = out[name].astype(dtype)
        if fov is not None and "fov" in out:
            out = out[out["fov"] == fov]
        order = [c for c in ("fov", "t", "particle") if c in out]
        return out.sort_values(order, kind="stable", ignore_index=True)

    # -------------------------------------------------------------- labels
    def _label_names(self: Run, via: str = "auto") -> list[str]:
        if self._via(via) == "zarr":
            return self.store.label_names()
        if Stream.LABELS not in self.streams:
            return []
        keys = self._served(Stream.LABELS).metadata.get("data_keys", {})
        return [
            k[len(LABEL_PREFIX) :]
            for k, spec in keys.items()
            if k.startswith(LABEL_PREFIX) and spec.get("external")
        ]

    @property
    def label_names(self: Run) -> list[str]:
        """Names of the label images the analyzer wrote."""
        return self._label_names()

    def labels(self: Run, name: str, fov: int | None = None, *, via: str = "auto") -> da.Array:
        """Label image ``name``: (N, 1, H, W) like the raw array, or for one FOV (T, Y, X).

        Per FOV, row i is the label image of its i-th timepoint (`timepoints` with
        kind="image"): a visit's labels sit at one plane of the visit, so the maximum
        over the visit's planes is that label image. ``via``: ``"zarr"`` (the store on
        disk), ``"tiled"`` (the catalog's ``labels`` stream, from any machine) or
        ``"auto"`` (the store if it is on this machine, else tiled).
        """
        labels = self._label_array(name, self._via(via))
        if fov is None:
            return labels
        frames = self.frames
        ts, _ = frame_grid(frames, fov, FrameKind.IMAGE)
        sel = frames[frames["p"] == fov]
        n, _, h, w = labels.shape
        planes = []
        for t in ts:
            idx = [int(i) for i in sel.loc[sel["t"] == t, "index"] if i < n]
            if idx:
                planes.append(labels[idx, 0].max(axis=0))
            else:  # not written yet (label arrays grow as the analyzer writes)
                planes.append(da.zeros((h, w), dtype=labels.dtype, chunks=(h, w)))
        return da.stack(planes)

    def _label_array(self: Run, name: str, via: str) -> da.Array:
        if via == "zarr":
            return self.store.labels(name)
        names = self._label_names("tiled")
        if name not in names:
            self._served(Stream.LABELS)  # says why there are none
            raise ValueError(f"name={name!r} is not a label image of run {self.uid[:8]}: {names}")
        array = self.tiled[Stream.LABELS][LABEL_PREFIX + name]
        shape = tuple(array.shape)
        # one request per chunk: a few MB of mostly-zero frames each, not one per frame
        rows = max(1, _CHUNK_BYTES // (array.dtype.itemsize * math.prod(shape[1:])))
        labels = da.from_array(array, chunks=(rows, *shape[1:]), name=False)
        if self.stream in self.streams:  # rows past the served ones hold no label: zeros
            missing = len(self.frames) - shape[0]
            if missing > 0:
                pad = da.zeros((missing, *shape[1:]), dtype=labels.dtype, chunks=(1, *shape[1:]))
                labels = da.concatenate([labels, pad])
        return labels
