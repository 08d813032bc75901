"""The session's terminal feedback: bluesky's BestEffortCallback, rate-limited, plots off."""

from __future__ import annotations

import itertools
import re

import bluesky.plans as bp
from ophyd.sim import det

from faro_bluesky.cli._feedback import LiveFeedback


def table_rows(out: str) -> list[int]:
    """The seq_nums of the printed table rows."""
    return [int(m.group(1)) for m in re.finditer(r"^\|\s+(\d+) \|", out, re.MULTILINE)]


def test_a_burst_prints_a_bounded_number_of_rows_the_last_always(RE, capsys):
    feedback = LiveFeedback(row_interval_s=0.5, clock=lambda: 0.0)  # time stands still
    RE.subscribe(feedback)
    RE(bp.count([det], 300))
    out = capsys.readouterr().out
    assert "Transient Scan ID: 1" in out  # bluesky's heading
    assert table_rows(out) == [1, 300]
    assert "(298 of 300 rows not shown" in out


def test_rows_print_when_the_interval_has_passed(RE, capsys):
    ticks = itertools.count(step=0.3)  # every event 0.3 s later: every second row is due
    RE.subscribe(LiveFeedback(row_interval_s=0.5, clock=lambda: next(ticks)))
    RE(bp.count([det], 5))
    out = capsys.readouterr().out
    assert table_rows(out) == [1, 3, 5]
    assert "(2 of 5 rows not shown" in out


def test_experiment_runs_print_heading_and_baseline_but_no_table(RE, capsys):
    RE.subscribe(LiveFeedback(clock=lambda: 0.0))
    RE(bp.count([det], 3, md={"num_visits": 3}))  # a faro experiment declares its visits
    out = capsys.readouterr().out
    assert "Persistent Unique Scan ID" in out
    assert table_rows(out) == []
    assert "rows not shown" not in out


def test_plots_are_off(RE):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    RE.subscribe(LiveFeedback())
    RE(bp.count([det], 3))  # BestEffortCallback's default would open "det vs time"
    assert plt.get_fignums() == before
