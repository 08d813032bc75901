"""Start documents carry bluesky's conventional keys, as bluesky.plans.count/scan write them."""

from __future__ import annotations

import json

import numpy as np
from ophyd.sim import SynAxis, SynGauss

import faro_bluesky.plans as faro_plans
from faro_bluesky.plans import Channel, Phase, optogenetic_plan, wait
from faro_bluesky.plans._metadata import json_safe, start_metadata

IMG = [Channel("miRFP", 10)]


def as_json(value):
    return json.loads(json.dumps(value, allow_nan=False))


def choose(ctx):
    """A decision callable: the experiment continues with nothing more."""
    return None


def test_optogenetic_start_has_bluesky_keys_and_a_json_safe_call(RE, docs, calibrated_scope):
    scope = calibrated_scope
    motor = SynAxis(name="motor")
    det = SynGauss("det", motor, "motor", center=0, Imax=1)
    mask = np.zeros(scope.dmd.camera_shape, bool)
    mask[:10, :10] = True
    phases = [
        Phase("base", interval=0.05, n_frames=2, channels=IMG),
        wait(0.05),
        Phase(
            "stim",
            interval=0.05,
            n_frames=1,
            channels=IMG,
            stim_channels=[Channel("Cyan", 5)],
            stim_frames=0,
        ),
        choose,
    ]
    hints = {"gridding": "rectilinear"}
    plan = optogenetic_plan(
        [(0.0, 0.0), (400.0, 0.0)],
        phases,
        microscope=scope,
        stim_mask=mask,
        per_visit=[det],
        md={"sample": "HeLa", "hints": hints},
    )
    assert RE(plan).exit_status == "success"
    (start,) = docs.of("start")  # also valid against event-model's schema (DocCollector)

    # called directly, the RunEngine would say plan_type="OptogeneticPlan"; wrapped,
    # "generator": the plan fixes it, so both give the same
    assert (start["plan_name"], start["plan_type"]) == ("optogenetic_plan", "generator")
    assert start["detectors"] == [scope.camera.name, "det"]
    assert start["motors"] == [scope.stage.name]
    # the user's hints are kept; dimensions added as bluesky's plans do (setdefault)
    assert as_json(start["hints"]) == {
        "gridding": "rectilinear",
        "dimensions": [[["visit-t"], "primary"]],
    }
    assert hints == {"gridding": "rectilinear"}  # the caller's dict is not modified
    assert start["sample"] == "HeLa"
    assert start["num_points"] == 6 and start["num_intervals"] == 5

    args = start["plan_args"]
    assert as_json(args) == args  # strict JSON as it is, no tuple, no NaN, no array
    assert args["fovs"] == [[0.0, 0.0], [400.0, 0.0]]
    assert args["stim_mask"] == {"array": {"shape": list(mask.shape), "dtype": "bool", "n_on": 100}}
    assert args["per_visit"] == [repr(det)]
    assert args["microscope"] == f"Microscope(name={scope.name!r})"
    assert args["stim_mode"] == "current" and args["mask_timeout"] is None
    assert "md" not in args
    # each element's repr rebuilds it, as bluesky's reprs of devices name them
    namespace = vars(faro_plans)
    assert [eval(r, namespace) for r in args["phases"][:3]] == phases[:3]
    assert args["phases"][3] == f"{__name__}.choose"


def test_start_metadata_lets_md_win_and_json_safe_summarises():
    md = start_metadata(
        "p", plan_args={"x": 1}, detectors=["cam"], md={"plan_name": "mine", "hints": None}
    )
    assert md["plan_name"] == "mine"  # the user's md wins, as in bluesky
    assert md["hints"] == {"dimensions": [(["time"], "primary")]}

    class Thing:
        name = "thing"

    got = json_safe(
        {
            "nan": float("nan"),
            "n": np.float32(2.5),
            "i": np.int64(3),
            "t": (1, (2, 3)),
            "r": range(0, 4, 2),
            "a": np.ones((2, 3), np.uint16),
            "o": Thing(),
            7: None,
        }
    )
    assert got == {
        "nan": "nan",
        "n": 2.5,
        "i": 3,
        "t": [1, [2, 3]],
        "r": "range(0, 4, 2)",
        "a": {"array": {"shape": [2, 3], "dtype": "uint16"}},
        "o": "Thing(name='thing')",  # no memory address: equal calls, equal documents
        "7": None,
    }
