"""FOV batching: when one interval can't hold every FOV, run them in batches.

A visit of one FOV takes ``time_per_fov`` seconds (move, image, stimulate), so one interval
has room for ``interval // time_per_fov`` FOVs ("slots"). More FOVs than slots run in
batches: all frames of batch 0, then all frames of batch 1, and so on. Within a batch, FOVs
are staggered by one slot each so that every FOV's own interval stays exact and the lag
of each visit against its scheduled time means something (faro [F]). Unlike faro [M], t
indices are not shifted per batch: every FOV keeps frames 0..n-1 (no empty t slabs).
"""

from __future__ import annotations

__all__ = ["check_fov_batching", "fov_time_offsets", "n_parallel"]


def n_parallel(n_fovs: int, interval: float, time_per_fov: float | None) -> int:
    """FOVs that fit in one interval: ``max(1, interval // time_per_fov)``.

    Without ``time_per_fov``, or for an interval of 0 (one frame), every FOV shares the
    single batch.
    """
    if time_per_fov is None or time_per_fov <= 0 or interval <= 0:
        return max(1, n_fovs)
    return max(1, int(interval // time_per_fov))


def fov_time_offsets(
    n_fovs: int, n_frames: int, interval: float, time_per_fov: float | None
) -> list[float]:
    """Seconds added to every visit of the FOV of each rank (FOVs sorted by index).

    Rank ``r`` is in batch ``b = r // k`` at slot ``s = r % k`` (``k`` = `n_parallel`) and
    gets ``b * batch_duration + s * time_per_fov``, where ``batch_duration = (n_frames - 1)
    * interval + k * time_per_fov``. Without ``time_per_fov`` every offset is 0.
    """
    if time_per_fov is None:
        return [0.0] * n_fovs
    k = n_parallel(n_fovs, interval, time_per_fov)
    batch_duration = (n_frames - 1) * interval + k * time_per_fov
    return [(r // k) * batch_duration + (r % k) * time_per_fov for r in range(n_fovs)]


def check_fov_batching(n_fovs: int, interval: float, time_per_fov: float) -> tuple[bool, str]:
    """Whether ``n_fovs`` fit in one interval, and a sentence saying so (faro's wording)."""
    k = n_parallel(n_fovs, interval, time_per_fov)
    if n_fovs <= k:
        return True, f"Parallelisation OK: {n_fovs} FOV(s) fit in {k} parallel slot(s)."
    n_batches = -(-n_fovs // k)
    return False, (
        f"Parallelisation NOT possible in one batch: {n_fovs} FOV(s) need {n_batches} "
        f"batch(es) of up to {k} ({interval:g} s interval / {time_per_fov:g} s per FOV). "
        f"schedule(..., time_per_fov={time_per_fov:g}) runs the batches one after another, "
        f"or lengthen the interval, or use fewer FOVs."
    )
