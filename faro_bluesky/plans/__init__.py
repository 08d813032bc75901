"""Experiment description and plans: phases, waits, schedules, closed-loop visits.

``RE(optogenetic_plan(fovs, phases))`` runs a whole multi-phase, multi-FOV experiment as
one bluesky run; the stubs it is built from (`visit`, `acquire`, `stimulate`,
`fetch_mask`, `wait_until`) are public, for users' own plans.
"""

from ._batching import check_fov_batching
from ._calibrate import calibrate_dmd
from ._errors import ExperimentError
from ._model import (
    Channel,
    Parallel,
    Phase,
    Wait,
    experiment_from_json,
    experiment_to_json,
    fovs_from_useq,
    parallel,
    wait,
)
from ._opto import DecisionContext, OptogeneticPlan, optogenetic_plan, visit
from ._schedule import Schedule, Visit, schedule
from ._session import clear_session, set_session
from ._stubs import acquire, fetch_mask, stimulate, wait_until
from ._tags import PauseClock, VisitTag

__all__ = [
    "Channel",
    "DecisionContext",
    "ExperimentError",
    "OptogeneticPlan",
    "Parallel",
    "PauseClock",
    "Phase",
    "Schedule",
    "Visit",
    "VisitTag",
    "Wait",
    "acquire",
    "calibrate_dmd",
    "check_fov_batching",
    "clear_session",
    "experiment_from_json",
    "experiment_to_json",
    "fetch_mask",
    "fovs_from_useq",
    "optogenetic_plan",
    "parallel",
    "schedule",
    "set_session",
    "stimulate",
    "visit",
    "wait",
    "wait_until",
]
