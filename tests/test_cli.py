"""The README's main command and the package's import contract, as a user meets them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import zarr


def test_demo_runs_and_says_where_the_data_went(tmp_path):
    script = Path(sys.executable).parent / "faro-bluesky"
    args = ["demo", "--data-dir", str(tmp_path), "--fovs", "2", "--timepoints", "2"]
    proc = subprocess.run(
        [str(script), *args, "--interval", "0.2"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Where the data went" in proc.stdout
    stores = list(tmp_path.glob("*.zarr"))
    assert len(stores) == 1
    assert str(stores[0]) in proc.stdout
    array = zarr.open_array(stores[0] / "camera", mode="r")
    assert array.shape == (2 * 2 * 2, 1, 512, 512)  # FOVs x channels x timepoints


def test_import_does_not_import_qt():
    code = (
        "import sys, faro_bluesky, faro_bluesky.devices, faro_bluesky.sim, faro_bluesky.cli;"
        "bad = [m for m in sys.modules if m.split('.')[0] in"
        " ('PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'qtpy', 'napari')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_console_script_is_declared():
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'faro-bluesky = "faro_bluesky.cli:main"' in text


def test_a_script_using_the_sim_exits_cleanly(tmp_path):
    # a UniMMCore still holding Python devices at exit aborts the process (exit 134)
    code = (
        "from bluesky import RunEngine; import bluesky.plans as bp;"
        "from faro_bluesky import sim_microscope;"
        f"RE = RunEngine(); scope = sim_microscope(data_dir={str(tmp_path)!r});"
        "RE(bp.count([scope.camera]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
