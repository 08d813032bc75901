"""A simulated optogenetic microscope on pymmcore-plus's pure-Python unicore devices."""

from ._incubator import SimIncubator
from ._render import GroundTruth
from ._sample import SampleParams, SimSample
from ._scope import CHANNEL_GROUP, POWER_PROPERTIES, SimHandle, SimOptions, sim_core, sim_microscope
from ._world import Faults, SimulatedFault, SimWorld

__all__ = [
    "CHANNEL_GROUP",
    "POWER_PROPERTIES",
    "Faults",
    "GroundTruth",
    "SampleParams",
    "SimHandle",
    "SimIncubator",
    "SimOptions",
    "SimSample",
    "SimWorld",
    "SimulatedFault",
    "sim_core",
    "sim_microscope",
]
