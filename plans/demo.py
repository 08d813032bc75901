"""The demo experiment: baseline, wait, closed-loop stimulation, recovery.

``faro-bluesky demo`` runs these phases (from the packaged copy of this profile).
"""

from __future__ import annotations

from typing import Any

from bluesky.utils import MsgGenerator

from faro_bluesky.plans import Channel, Phase, optogenetic_plan, wait


def demo_phases(frames: int = 4, interval: float = 1.0) -> list[Any]:
    """Baseline, a wait, stimulation of every frame, recovery.

    ``frames`` frames per phase (recovery twice as many), imaging nuclei (miRFP) and ERK
    activity (ERKKTR).
    """
    imaging = [Channel("miRFP", 20), Channel("ERKKTR", 30)]
    return [
        Phase("baseline", interval=interval, n_frames=frames, channels=imaging),
        wait(2 * interval),
        Phase(
            "stim",
            interval=interval,
            n_frames=frames,
            channels=imaging,
            stim_channels=[Channel("Cyan", 100, power=50)],
            stim_frames=range(frames),
            metadata={"stimulated": "half of the cells"},
        ),
        Phase("recovery", interval=interval, n_frames=2 * frames, channels=imaging),
    ]


def demo(
    fovs: int = 2, frames: int = 4, interval: float = 1.0, *, md: dict | None = None
) -> MsgGenerator:
    """The demo experiment over ``fovs`` fields of view 400 µm apart, one run.

    Stimulation uses the session analyzer's masks: set ``analyzer.stimulator`` (e.g.
    ``components.FractionOfCells(0.5)``) after calibrating the DMD, or every cell is lit.
    """
    positions = [(400.0 * i, 0.0) for i in range(fovs)]
    return (yield from optogenetic_plan(positions, demo_phases(frames, interval), md=md))
