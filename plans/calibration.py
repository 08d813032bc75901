"""Calibration plans for this setup."""

from __future__ import annotations

from collections.abc import Sequence

from bluesky.utils import MsgGenerator

from faro_bluesky.devices import Microscope
from faro_bluesky.plans import calibrate_dmd


def calibrate_away(
    scope: Microscope,
    fovs: Sequence[Sequence[float]] = ((0.0, 0.0),),
    *,
    fields_away: float = 3.0,
    channel: object = None,
) -> MsgGenerator:
    """Calibrate the camera→DMD mapping ``fields_away`` field heights below every FOV.

    Calibration shines light spots on the sample, and light stimulates the cells it
    reaches, so it runs where no experiment will look. Returns the affine matrix (also
    stored on ``scope.dmd``); the run is in the catalog like any other.
    """
    height = scope.field_of_view_um()[1]
    x = min(float(p[0]) for p in fovs)
    y = min(float(p[1]) for p in fovs) - fields_away * height
    return (yield from calibrate_dmd(scope, channel=channel, position=(x, y)))
