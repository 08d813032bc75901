"""The instruments of this setup: what ``faro-bluesky shell`` loads (a beamline-style profile).

Edit these files to describe your microscope. ``instruments(setup)`` builds the devices
and returns the names they get in the shell's namespace; ``scope`` (a `Microscope`) is
required, everything else is yours to add: one line per instrument below. Each builder
also says what the session does with its devices: read them as baseline (stream
``baseline``, at the start and end of every run), watch them with a suspender, label them
for ``%wa``/``%ct``. docs/decisions/0042-instrument-profile.md describes how a session
finds this directory.
"""

from __future__ import annotations

from faro_bluesky.cli import Setup

from .environment import incubator
from .microscope import microscope


def instruments(setup: Setup) -> dict[str, object]:
    """Build this setup's instruments; the returned names go into the shell's namespace."""
    scope = microscope(setup)
    return {
        "scope": scope,
        # the parts under their own names, as beamlines do: %mov focus 5, %wa, %ct
        "stage": scope.stage,
        "focus": scope.focus,
        "camera": scope.camera,
        "channel": scope.channel,
        "incubator": incubator(setup),
    }
