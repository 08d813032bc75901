"""The stateful steps of one visit on the analysis thread: track it, settle its mask.

They run in acquisition order per FOV (`VisitPipeline` sees to it) and sit on the closed
loop's latency path when the visit's mask is awaited (docs/decisions/0030), so each does
its one thing with no copy it can avoid. Functions of their inputs, apart from the mask
board they publish on, so that they can be read and tested without the pipeline around
them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from ..schema import MaskTimes
from ._board import MaskBoard
from ._documents import FrameRef
from ._protocols import Tracker
from ._records import ErrorLog, Visit
from ._setup import Setup


def track(tracker: Tracker | None, cells: pd.DataFrame, head: FrameRef) -> pd.DataFrame:
    """``cells`` of visit ``head`` with ``particle`` and the visit's columns (fov, t...)."""
    fov, t = head.fov, head.t
    if tracker is not None:
        cells = tracker.track(fov, t, cells)
    elif "particle" not in cells:
        cells = cells.assign(particle=cells["label"])
    # the visit's columns in one new frame (``assign`` inserts them one by one: ~3x
    # slower, and this is on the latency path of a tracked mask)
    columns: dict[str, Any] = {name: cells[name].array for name in cells.columns}
    columns.update(
        fov=fov,
        t=t,
        frame=head.frame,
        phase=head.phase,
        time=head.time,
        scheduled=head.scheduled,
        stim=head.stim,
    )
    return pd.DataFrame(columns, index=cells.index, copy=False)


def stimulate(setup: Setup, errors: ErrorLog, visit: Visit, tracks: pd.DataFrame) -> None:
    """Compute the visit's mask and publish it (the end of the latency path).

    Published with its `MaskTimes` (pixels in hand, inputs ready, components' compute),
    which the plan records with the mask: the latency's stages from the documents alone.
    A stimulator that fails, or returns a mask of the wrong shape, is recorded as the
    visit's error and its mask skipped: the plan fires blank at once instead of waiting.
    """
    fov, t = visit.key
    labels = visit.result.labels
    visit.labels_at = started = time.time()  # its inputs are ready: the "labels" stage ends
    try:
        mask = setup.stimulator.mask(labels, tracks, visit.image, visit.info)
        ended = time.time()
        visit.compute_ms += (ended - started) * 1000.0
        if visit.spans:  # a mask from the segmenter's plane: its steps end here
            visit.spans[-1] = (visit.spans[-1][0], ended)
        if mask is None or mask is False:
            mask, fraction = False, 0.0
        elif mask is True:
            fraction = 1.0
        else:
            mask = np.asarray(mask) != 0
            if mask.shape != labels.shape:
                raise ValueError(
                    f"mask shape {mask.shape} is not the frame's {labels.shape}: a "
                    "stimulator returns a mask in camera pixels (or True/False)"
                )
            fraction = float(np.count_nonzero(mask)) / mask.size
    except Exception as exc:
        visit.errors.append(str(errors.record("stimulator", exc, fov, t)))
        skip_mask(setup.board, visit)
        return
    times = MaskTimes(visit.pixels_at, visit.labels_at, visit.compute_ms, tuple(visit.spans))
    setup.board.put(fov, t, mask, times)
    visit.masked, visit.mask, visit.mask_fraction = True, mask, fraction
    visit.mask_ms = (time.monotonic() - visit.arrived) * 1000.0


def skip_mask(board: MaskBoard, visit: Visit) -> None:
    """Tell the plan no mask will come for ``visit``, if one is awaited and unsettled."""
    if visit.needs_mask and not visit.masked:
        board.skip(*visit.key)
        visit.masked = True
