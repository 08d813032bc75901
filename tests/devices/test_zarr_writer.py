"""The zarr frame writer holds frames for the camera's next exposure, never past a flush."""

from __future__ import annotations

import numpy as np
import zarr

from faro_bluesky.devices._zarr_store import ZarrFrameWriter


def writer(tmp_path, hold_s: float) -> ZarrFrameWriter:
    w = ZarrFrameWriter(tmp_path / "run.zarr", "camera", (8, 8), np.uint16)
    w.hold_s = hold_s
    return w


def written(w: ZarrFrameWriter, n: int) -> bool:
    """Wait (bounded, a failure bound only) until ``n`` frames are on disk, no flush asked."""
    with w._done:
        return w._done.wait_for(lambda: w.written >= n, timeout=30)


def frames(n: int) -> list[np.ndarray]:
    return [np.full((8, 8), i + 1, np.uint16) for i in range(n)]


def test_a_held_frame_is_written_when_the_camera_starts_exposing(tmp_path):
    w = writer(tmp_path, hold_s=3600)  # without an exposure it would wait an hour
    (f,) = frames(1)
    assert w.submit(f) == 0
    w.welcome()  # the camera's next exposure starts: the plan only waits now
    assert written(w, 1)
    np.testing.assert_array_equal(
        zarr.open_array(tmp_path / "run.zarr" / "camera", mode="r")[0, 0], f
    )
    w.close()


def test_a_flush_writes_held_frames_at_once(tmp_path):
    w = writer(tmp_path, hold_s=3600)
    for f in frames(3):
        w.submit(f)
    assert w.flush(timeout=30)
    assert w.written == 3
    assert w.close(timeout=30)
    stored = zarr.open_array(tmp_path / "run.zarr" / "camera", mode="r")
    np.testing.assert_array_equal(stored[:, 0], np.stack(frames(3)))


def test_a_frame_waits_for_an_exposure_at_most_hold_s(tmp_path):
    w = writer(tmp_path, hold_s=0.01)
    for f in frames(2):
        w.submit(f)
    assert written(w, 2)  # no exposure, no flush: written once held long enough
    w.close()


def test_a_full_queue_writes_at_once(tmp_path):
    w = ZarrFrameWriter(tmp_path / "run.zarr", "camera", (8, 8), np.uint16, max_queued=2)
    w.hold_s = 3600
    for f in frames(5):  # the third submit finds the queue full and waits for the disk
        w.submit(f)
    assert w.backpressure >= 1
    assert written(w, 3)
    w.close()


def test_an_exposure_a_mask_is_computed_in_is_the_masks(tmp_path, monkeypatch):
    """Decision 0069: while the closed loop computes a mask, the exposure that starts is
    left to it; held frames go with the next one (or at most `hold_s` later)."""
    from faro_bluesky.devices import EXPOSURES, _exposures

    w = writer(tmp_path, hold_s=3600)
    (f,) = frames(1)
    w.submit(f)
    EXPOSURES.mask_started()
    try:
        w.welcome()  # the exposure during which the mask is computed
        assert EXPOSURES.mask_pending and not w.may_write
    finally:
        EXPOSURES.mask_out()
    assert not EXPOSURES.mask_pending
    w.welcome()  # the next exposure (the stimulation's): written now
    assert w.may_write or w.written == 1
    assert written(w, 1)
    w.close()
    # a mask that never comes holds writes at most MASK_HOLD_S
    monkeypatch.setattr(_exposures, "MASK_HOLD_S", 0.0)
    EXPOSURES.mask_started()
    assert not EXPOSURES.mask_pending
