"""A three-phase optogenetic experiment, notebook style.

Run: ``uv run python docs/examples/three_phase_experiment.py``. Baseline imaging, a wait,
patterned stimulation of the left half of each field of view with a light power chosen from
the baseline images, recovery - on the simulated microscope, with the schedule inspected
before running. Each ``# %%`` cell can be pasted
into IPython.
"""

# %% A RunEngine first (ophyd-async devices connect on its loop), then the microscope
import tempfile

import numpy as np
from bluesky import RunEngine

from faro_bluesky.plans import (
    Channel,
    DecisionContext,
    Phase,
    calibrate_dmd,
    optogenetic_plan,
    schedule,
    wait,
)
from faro_bluesky.sim import sim_microscope

RE = RunEngine(call_returns_result=True)
data_dir = tempfile.mkdtemp(prefix="faro-example-")
scope = sim_microscope(seed=0, data_dir=data_dir, time_scale=10.0)

# %% Calibrate the DMD once per session (the simulated projector is misaligned)
affine = RE(calibrate_dmd(scope)).plan_result
print("camera -> DMD affine:\n", np.round(affine, 3))

# %% Describe the experiment: three phases and a wait
fovs = [(0, 0), (400, 0)]
imaging = [Channel("miRFP", 20), Channel("ERKKTR", 30)]


def stim_phase(power: float) -> Phase:
    """Stimulate at t = 0 and 2 of the phase with the Cyan light at ``power`` %."""
    return Phase(
        "stim",
        interval=1.0,
        n_frames=4,
        channels=imaging,
        stim_channels=[Channel("Cyan", 50, power=power)],
        stim_frames=range(0, 4, 2),
        metadata={"treatment": "left half", "power": power},
    )


phases = [
    Phase("baseline", interval=1.0, n_frames=3, channels=imaging),
    wait(2.0),
    stim_phase(power=20),
    Phase("recovery", interval=1.0, n_frames=3, channels=imaging),
]
print(schedule(fovs, phases).table())


# %% Decisions between phases are plain Python: a callable in the phase list runs when the
# run reaches it and returns what comes next. Here: a dim baseline gets more light.
def choose_power(ctx: DecisionContext) -> Phase:
    """The stim phase, with its power chosen from the last baseline frame."""
    frame = ctx.microscope.camera.frames.latest  # in memory: no disk round trip
    brightness = float(np.mean(frame.image))
    power = 20 if brightness > 150 else 40
    ctx.results["power"] = (brightness, power)
    return stim_phase(power)


adaptive = [phases[0], phases[1], choose_power, phases[3]]

# %% Left half of every field lit: a fixed mask in camera pixels
h, w = scope.dmd.camera_shape
left = np.zeros((h, w), bool)
left[:, : w // 2] = True

# %% Run it: Ctrl-C pauses at the next visit, RE.resume() continues
plan = optogenetic_plan(fovs, adaptive, microscope=scope, stim_mask=left, md={"sample": "sim"})
result = RE(plan)
print("decision: stim power", plan.elements[2].stim_channels[0].power)
print("run", result.run_start_uids[0], result.exit_status, "- frames under", data_dir)
