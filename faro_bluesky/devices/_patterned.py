"""`PatternedLight`: what plans, validation and calibration ask of a patterned light.

ARCHITECTURE decision 13: plans address patterned-light devices through one protocol,
never by name (``scope.dmd``). A microscope may carry several (two SLMs on two light
paths, a DMD and a galvo scanner...); `optogenetic_plan`, its stubs, its validation and
`calibrate_dmd` take any one of them, so a new kind of device is one class that
satisfies this protocol, not an edit in five files. `DMD` satisfies it; the bare `SLM`
does not (it knows SLM pixels, not the camera's).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from bluesky.protocols import Movable, Readable, Stageable, Status, Stoppable
from numpy.typing import NDArray


@runtime_checkable
class PatternedLight(Readable, Movable[Any], Stageable, Stoppable, Protocol):
    """Light shaped by a mask given in camera pixels.

    Besides bluesky's verbs (``read``/``describe``: a cheap summary of what is shown,
    whose timestamp is when it went up; ``stage``/``unstage``/``stop``: go dark), plans
    and validation use the members below. A device is checked against this protocol once,
    where it is plugged in (`Microscope.add_patterned_light`,
    ``optogenetic_plan(patterned_light=...)``).
    """

    shape: tuple[int, int]
    """``(height, width)`` of the device's own pixels (what `calibrate_dmd` projects)."""
    camera_shape: tuple[int, int]
    """``(height, width)`` of the camera image: the shape of a mask."""
    affine: NDArray[np.float64] | None
    """The camera->device affine (3x3 on ``(x, y)``), or None; `calibrate_dmd` sets it."""

    @property
    def is_calibrated(self) -> bool:
        """Whether masks can be projected (``True``/``False`` need no calibration)."""
        ...

    def check_value(self, value: Any) -> None:
        """Raise ValueError/TypeError, with the fix, if ``set(value)`` would refuse it.

        Called before a run opens; nothing moves.
        """
        ...

    def set(self, value: Any) -> Status:
        """Show ``value``; a bad one raises before anything moves.

        ``value``: a mask in camera pixels (bool or unsigned, non-zero = light),
        ``CameraMask(mask)`` (the same, by reference), ``True`` (everything lit),
        ``False``/``None`` (dark) or ``DMDPattern(image)`` (an image in device pixels,
        as `calibrate_dmd` projects).
        """
        ...

    def blank(self) -> Status:
        """Go dark."""
        ...
