"""Example optogenetic protocols: copy one, change the numbers, give it a new name."""

from __future__ import annotations

from collections.abc import Sequence

from bluesky.utils import MsgGenerator

from faro_bluesky.plans import Channel, Phase, optogenetic_plan, wait

NUCLEI = Channel("miRFP", 50)
"""The imaging channel of the protocols: nuclei, 50 ms."""
BLUE_10 = Channel("Cyan", 100, power=10)
"""The stimulation light of `pulse_train`: cyan, 100 ms at 10 %."""


def pulse_train(
    fovs: Sequence[Sequence[float]],
    *,
    pulses: int = 5,
    every: int = 4,
    interval: float = 5.0,
    baseline_frames: int = 6,
    recovery_frames: int = 12,
    imaging: Channel = NUCLEI,
    light: Channel = BLUE_10,
    md: dict | None = None,
) -> MsgGenerator:
    """Baseline, then ``pulses`` light pulses one every ``every`` frames, then recovery.

    One run; frames every ``interval`` s on each FOV (stage positions in µm).
    """
    return (
        yield from optogenetic_plan(
            fovs,
            [
                Phase("baseline", interval=interval, n_frames=baseline_frames, channels=[imaging]),
                Phase(
                    "pulses",
                    interval=interval,
                    n_frames=pulses * every,
                    channels=[imaging],
                    stim_channels=[light],
                    stim_frames=range(0, pulses * every, every),
                ),
                Phase("recovery", interval=interval, n_frames=recovery_frames, channels=[imaging]),
            ],
            md={"protocol": "pulse_train", **(md or {})},
        )
    )


def dose_response(
    fovs: Sequence[Sequence[float]],
    powers: Sequence[float] = (5.0, 20.0, 50.0),
    *,
    frames: int = 6,
    interval: float = 5.0,
    rest: float = 60.0,
    imaging: Channel = NUCLEI,
    light: str = "Cyan",
    md: dict | None = None,
) -> MsgGenerator:
    """A stimulation phase per light power (``powers``, %), each followed by ``rest`` s dark.

    One run; each phase lights every frame for ``frames`` frames every ``interval`` s.
    """
    phases: list = [Phase("baseline", interval=interval, n_frames=frames, channels=[imaging])]
    for power in powers:
        phases += [
            Phase(
                f"power-{power:g}",
                interval=interval,
                n_frames=frames,
                channels=[imaging],
                stim_channels=[Channel(light, 100, power=power)],
                stim_frames=range(frames),
            ),
            wait(rest),
        ]
    return (
        yield from optogenetic_plan(
            fovs, phases[:-1], md={"protocol": "dose_response", **(md or {})}
        )
    )
