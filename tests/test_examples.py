"""The documented examples run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"


def test_three_phase_example_runs_waits_and_decides():
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "three_phase_experiment.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # The schedule table shows the wait: stim starts 2 s after the baseline's last frame.
    assert "baseline  2      2.000" in out
    assert "stim      0      4.000" in out
    assert "decision: stim power" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("run ") and " success " in last, out[-2000:]
