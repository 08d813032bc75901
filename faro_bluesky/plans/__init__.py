"""Experiment description and plans: phases, waits, schedules, closed-loop visits.

``RE(optogenetic_plan(fovs, phases))`` runs a whole multi-phase, multi-FOV experiment as
one bluesky run; the stubs it is built from (`visit`, `acquire`, `stimulate`,
`fetch_mask`, `wait_until`) are public, for users' own plans.
``start_background(RE, plan)`` runs a plan on a worker thread and returns a `RunHandle`
(pause/resume/stop/wait, extend) at once, for notebooks.
"""

from ._batching import check_fov_batching
from ._calibrate import calibrate_dmd
from ._errors import ExperimentError
from ._handle import RunHandle, RunState, start_background
from ._model import (
    Channel,
    Parallel,
    Phase,
    Wait,
    experiment_from_json,
    experiment_to_json,
    parallel,
    wait,
)
from ._opto import DecisionContext, OptogeneticPlan, optogenetic_plan, visit
from ._schedule import Schedule, Visit, schedule
from ._schedule import shared as shared_schedule
from ._session import clear_session, set_session
from ._stimulate import stimulate
from ._stubs import acquire, fetch_mask, wait_until
from ._suspenders import V1SignalAdapter, as_v1_signal, suspend_outside
from ._tags import PauseClock, VisitTag
from ._useq import phases_to_useq
from ._useq_events import stim_mask_from_useq, useq_events
from ._useq_import import fovs_from_useq, phases_from_useq

__all__ = [
    "Channel",
    "DecisionContext",
    "ExperimentError",
    "OptogeneticPlan",
    "Parallel",
    "PauseClock",
    "Phase",
    "RunHandle",
    "RunState",
    "Schedule",
    "V1SignalAdapter",
    "Visit",
    "VisitTag",
    "Wait",
    "acquire",
    "as_v1_signal",
    "calibrate_dmd",
    "check_fov_batching",
    "clear_session",
    "experiment_from_json",
    "experiment_to_json",
    "fetch_mask",
    "fovs_from_useq",
    "optogenetic_plan",
    "parallel",
    "phases_from_useq",
    "phases_to_useq",
    "schedule",
    "set_session",
    "shared_schedule",
    "start_background",
    "stim_mask_from_useq",
    "stimulate",
    "suspend_outside",
    "useq_events",
    "visit",
    "wait",
    "wait_until",
]
