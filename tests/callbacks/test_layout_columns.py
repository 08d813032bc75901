"""The status layout built from a schedule's columns equals the one built row by row."""

from __future__ import annotations

import numpy as np
import pytest

from faro_bluesky.callbacks import RunLayout
from faro_bluesky.plans import Channel, Phase, parallel, schedule, wait

IMG = [Channel("miRFP", 20), Channel("ERKKTR", 20)]
STIM = [Channel("Cyan", 50, power=10)]


def experiments():
    fovs = [(0.0, 0.0), (400.0, 0.0), (0.0, 400.0)]
    yield (
        fovs,
        [
            Phase("base", interval=1, n_frames=3, channels=IMG),
            wait(5),
            Phase(
                "stim",
                interval=1,
                n_frames=4,
                channels=IMG,
                stim_channels=STIM,
                stim_frames=(1, 3),
                ref_channels=[Channel("BF", 5)],
                ref_frames=(0, 2),
            ),
            Phase("pt", interval=0.5, n_frames=2, channels=IMG, axis_order="pt", fovs=[2, 0]),
        ],
    )
    yield (
        fovs,
        [
            parallel(
                [
                    Phase(
                        "a",
                        interval=1,
                        n_frames=3,
                        channels=IMG,
                        fovs=[0],
                        stim_channels=STIM,
                        stim_frames=(0,),
                    )
                ],
                [Phase("b", interval=0.7, n_frames=4, channels=IMG, fovs=[1, 2])],
            ),
            Phase("a", interval=2, n_frames=2, channels=IMG),
        ],
    )


@pytest.mark.parametrize("stim_mode", ["current", "previous"])
@pytest.mark.parametrize("case", range(2))
def test_columns_and_rows_give_the_same_layout(case, stim_mode):
    fovs, phases = list(experiments())[case]
    sched = schedule(fovs, phases)
    waits = [3 * 3] if case == 0 else []
    kw = {"fovs": fovs, "waits_before": waits, "stim_mode": stim_mode}
    by_rows = RunLayout.from_visits("u", sched.rows(), **kw)
    by_cols = RunLayout.from_columns("u", sched.columns(), [p.name for p in sched.phases], **kw)
    for name in ("cells", "visit_cell", "times", "frames", "phase"):
        np.testing.assert_array_equal(getattr(by_cols, name), getattr(by_rows, name), name)
    assert by_cols.phase_names == by_rows.phase_names
    assert by_cols.path == by_rows.path and by_cols.fovs == by_rows.fovs
    # and the columns say what the visits say
    cols = sched.columns()
    visits = list(sched)
    assert cols["stim"].tolist() == [v.stim for v in visits]
    assert cols["n_ref"].tolist() == [len(v.ref_channels) for v in visits]
    assert sched.n_frames() == sum(len(v.channels) + len(v.ref_channels) for v in visits)
