"""Re-analysis as a linked new run, the report PNG, and the replay/reanalyze/report CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from bluesky import RunEngine

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import (
    ErkKtrFeatures,
    FractionOfCells,
    OtsuSegmenter,
    SimpleFeatures,
)
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog, reanalyze, write_report

EXE = str(Path(sys.executable).parent / "faro-bluesky")
IMG = [Channel("miRFP", 5), Channel("ERKKTR", 5)]


@pytest.fixture(scope="module")
def closed_loop(tmp_path_factory):
    path = tmp_path_factory.mktemp("cat")
    catalog = Catalog.local(path)
    RE = RunEngine(context_managers=[], call_returns_result=True)
    sub = catalog.subscribe(RE)
    scope = sim_microscope(
        seed=4, data_dir=catalog.data_dir, image_shape=(128, 128), dmd_calibrated=True
    )
    analyzer = Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"),
        features=ErkKtrFeatures(channel="ERKKTR"),
        stimulator=FractionOfCells(0.5),
    )
    phases = [
        Phase("baseline", interval=0.05, n_frames=2, channels=IMG),
        Phase(
            "stim",
            interval=0.05,
            n_frames=3,
            channels=IMG,
            stim_channels=[Channel("Cyan", 20, power=20)],
            stim_frames=range(3),
        ),
    ]
    result = RE(optogenetic_plan([(0, 0), (300, 0)], phases, microscope=scope, analyzer=analyzer))
    assert result.exit_status == "success"
    analyzer.wait_idle(60)
    analyzer.close()
    sub.unsubscribe()
    scope.close()
    yield catalog, result.run_start_uids[0]
    catalog.close()


def test_reanalyze_records_a_linked_run_without_copying_images(closed_loop):
    catalog, uid = closed_loop
    original = catalog[uid]
    before = original.tracks()
    new = reanalyze(original, Analyzer(features=SimpleFeatures()), catalog)
    assert new.start["plan_name"] == "reanalyze"
    assert new.start["source_run"] == uid
    assert "SimpleFeatures" in new.start["pipeline"]["features"]
    assert catalog.search(plan="reanalyze")[-1].uid == new.uid
    assert catalog.search(phase="stim", plan="reanalyze")[-1].uid == new.uid
    tracks = new.tracks()
    assert set(zip(tracks["fov"], tracks["t"], strict=True)) == {
        (p, t) for p in range(2) for t in range(5)
    }
    assert "mean_intensity" in tracks and "cnr" not in tracks  # the new pipeline's columns
    events = new.tiled["analysis"].read()
    assert events.sizes["time"] == 10
    store = Path(new.start["analysis_store"])
    assert not (store / "camera").exists()  # raw frames stay in the original store
    assert "nuclei" in [p.name for p in (store / "labels").iterdir()]
    pd.testing.assert_frame_equal(original.tracks(), before)  # the original is untouched


def test_report_png_has_montage_traces_and_raster(closed_loop, tmp_path):
    catalog, uid = closed_loop
    path = write_report(catalog[uid], tmp_path / "r.png")
    image = plt.imread(path)
    assert image.shape[0] > 400 and image.shape[1] > 250
    rgb = image[..., :3]
    assert rgb.std() > 0.05
    cyan = (rgb[..., 0] < 0.4) & (rgb[..., 1] > 0.6) & (rgb[..., 2] > 0.7)
    assert cyan.sum() > 50  # stim masks / stimulated trace drawn
    # the latency panel: the closed loop's points in purple, from run.timing()
    assert len(catalog[uid].timing().latency) > 0
    purple = np.abs(rgb - np.array([0.58, 0.40, 0.74])).max(axis=-1) < 0.08  # tab:purple
    assert purple.sum() > 20
    with pytest.raises(ValueError, match=r"\.png"):
        write_report(catalog[uid], tmp_path / "r.jpg")


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it (one process per command)."""
    return subprocess.run(
        [EXE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250"},
    )


def _main(capsys, *args: str) -> tuple[int, str]:
    """The same command line in this process (no start-up cost per command)."""
    from faro_bluesky.cli import main

    rc = main(list(args))
    return rc, capsys.readouterr().out


def test_cli_replay_reanalyze_report(closed_loop, tmp_path, capsys):
    catalog, uid = closed_loop
    data = str(catalog.path)
    # one command as a user runs it (the console script, a process of its own) ...
    proc = _cli("report", uid[:8], "--data", data, "--out", str(tmp_path / "rep.png"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "rep.png").stat().st_size > 10_000
    # ... the others through the same entry point in this process (each new process
    # pays ~3 s of imports, and a catalog writer process of its own ~4 s more)
    rc, out = _main(capsys, "replay", uid[:8], "--data", data)
    assert rc == 0 and "replayed run" in out and "event" in out, out
    rc, out = _main(capsys, "reanalyze", uid[:8], "--data", data, "--erk", "")
    assert rc == 0 and "recorded as run" in out, out
    reopened = Catalog.local(data)
    assert reopened[-1].start["source_run"] == uid
    assert np.isfinite(reopened[-1].tracks()["x"]).all()
    reopened.close()


def test_cli_bad_input_is_a_message_not_a_traceback(closed_loop, tmp_path, capsys):
    catalog, uid = closed_loop
    data = str(catalog.path)
    for args, needle in (
        (("report", "zzzz", "--data", data), "no run with uid"),
        (("report", "-99", "--data", data), "out of range"),
        (("report", "-1", "--data", str(tmp_path / "none")), "not a catalog directory"),
        (("replay", uid[:8], "--data", data, "--speed", "0"), "--speed"),
        (("reanalyze", uid[:8], "--data", data, "--channel", "NOPE"), "NOPE"),
    ):
        rc, out = _main(capsys, *args)
        assert rc == 2 and needle in out, (args, out)


def test_report_of_a_reanalysis_uses_the_source_images(closed_loop, tmp_path, capsys):
    catalog, uid = closed_loop
    new = reanalyze(catalog[uid], Analyzer(segmenter=OtsuSegmenter(channel="miRFP")), catalog)
    rc, out = _main(
        capsys, "report", new.uid[:8], "--data", str(catalog.path), "--out", str(tmp_path / "n.png")
    )
    assert rc == 0, out
    assert plt.imread(tmp_path / "n.png")[..., :3].std() > 0.05


def test_cli_messages_are_not_hard_wrapped(tmp_path, capsys):
    # A path far longer than any terminal: the message must stay one line, whole.
    deep = tmp_path.joinpath(*(["a-rather-long-directory-name"] * 8), "none")
    rc, out = _main(capsys, "report", "-1", "--data", str(deep))
    line = next(line for line in out.splitlines() if "not a catalog directory" in line)
    assert rc == 2 and str(deep) in line, out
