"""The queue tests' plan: a profile protocol taking the scope, a device and a `Channel`."""

from __future__ import annotations

from bluesky.protocols import Readable
from bluesky.utils import MsgGenerator

from faro_bluesky.devices import Microscope
from faro_bluesky.plans import Channel, Phase, optogenetic_plan

__all__ = ["gated_snaps"]

NUCLEI = Channel("miRFP", 5)


def gated_snaps(
    scope: Microscope, gate: Readable, frames: int = 2, imaging: Channel = NUCLEI
) -> MsgGenerator:
    """``frames`` frames of ``imaging`` at (0, 0) every 0.1 s, reading ``gate`` per visit."""
    phase = Phase("snap", interval=0.1, n_frames=frames, channels=[imaging])
    return (yield from optogenetic_plan([(0.0, 0.0)], [phase], microscope=scope, per_visit=[gate]))
