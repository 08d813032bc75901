"""The README's main command and the package's import contract, as a user meets them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from faro_bluesky.storage import Catalog


def test_demo_runs_the_closed_loop_story_into_the_catalog(tmp_path):
    script = Path(sys.executable).parent / "faro-bluesky"
    shot = tmp_path / "widget.png"
    args = ["demo", "--data", str(tmp_path / "cat"), "--fovs", "1", "--frames", "2"]
    proc = subprocess.run(
        [str(script), *args, "--interval", "0.4", "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250", "QT_QPA_PLATFORM": "offscreen"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Where everything went" in out
    assert "DMD calibrated" in out
    catalog = Catalog.local(tmp_path / "cat")
    assert [r.start["plan_name"] for r in catalog] == ["calibrate_dmd", "optogenetic_plan"]
    run = catalog[-1]
    assert run.uid in out and run.exit_status == "success"
    assert run.start["phase_names"] == ["baseline", "recovery", "stim"]
    tracks = run.tracks()
    assert {"cnr", "lit", "particle"} <= set(tracks.columns)
    report = tmp_path / "cat" / "reports" / f"{run.uid[:8]}.png"
    assert str(report) in out.replace("\n", "")
    views = run.store_path / "fovs"  # per-FOV OME-Zarr, built by the catalog (decision 0057)
    assert str(views) in out.replace("\n", "") and (views / "0" / "zarr.json").is_file()
    for png in (report, shot):
        image = plt.imread(png)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # not blank
        assert len(np.unique(image[..., :3].reshape(-1, 3), axis=0)) > 20
    catalog.close()


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
