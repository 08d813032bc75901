"""The experiment plans of this setup: plain bluesky plan functions to edit, copy and add to.

Every name listed in ``__all__`` appears in ``faro-bluesky shell``'s namespace, so
``RE(demo())`` or ``RE(pulse_train(fovs))`` work as typed. The plans are built from
faro-bluesky's public pieces (`Phase`, `Channel`, `wait`, `optogenetic_plan`,
`calibrate_dmd`) and any bluesky plan; devices come in as arguments, the bluesky way, and
the experiment plans use the session's microscope and analyzer by default.
"""

from .calibration import calibrate_away
from .demo import demo, demo_phases
from .protocols import dose_response, pulse_train

__all__ = ["calibrate_away", "demo", "demo_phases", "dose_response", "pulse_train"]
