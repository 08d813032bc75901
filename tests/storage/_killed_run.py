"""Run a long experiment into the catalog at argv[1]; the test kills this process mid-run."""

import sys

from bluesky import RunEngine

from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog

catalog = Catalog.local(sys.argv[1])
RE = RunEngine(context_managers=[])
scope = sim_microscope(seed=4, data_dir=catalog.data_dir, image_shape=(128, 128))
catalog.subscribe(RE)
phase = Phase(
    "long",
    interval=0.05,
    n_frames=500,
    channels=[Channel("miRFP", 5), Channel("ERKKTR", 5)],
    stim_channels=[Channel("Cyan", 5, power=10)],
    stim_frames=range(1, 500, 3),
)
RE(optogenetic_plan([(0.0, 0.0), (400.0, 0.0)], [phase], microscope=scope))
