"""Run a long experiment into the catalog at argv[1]; the test kills this process mid-run.

With ``analyze`` as argv[2] a closed-loop analyzer (segmentation, ERK-KTR features,
tracking, a mask from half the cells) analyses it live and writes labels and tracks.
"""

import sys

from bluesky import RunEngine

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import ErkKtrFeatures, FractionOfCells, OtsuSegmenter
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog

analyze = sys.argv[2:] == ["analyze"]
catalog = Catalog.local(sys.argv[1])
RE = RunEngine(context_managers=[])
scope = sim_microscope(
    seed=4, data_dir=catalog.data_dir, image_shape=(128, 128), dmd_calibrated=analyze
)
catalog.subscribe(RE)
phase = Phase(
    "long",
    interval=0.05,
    n_frames=500,
    channels=[Channel("miRFP", 5), Channel("ERKKTR", 5)],
    stim_channels=[Channel("Cyan", 5, power=10)],
    stim_frames=range(1, 500, 3),
)
analyzer = (
    Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"),
        features=ErkKtrFeatures(channel="ERKKTR"),
        stimulator=FractionOfCells(0.5, seed=1),
    )
    if analyze
    else None
)
RE(optogenetic_plan([(0.0, 0.0), (400.0, 0.0)], [phase], microscope=scope, analyzer=analyzer))
