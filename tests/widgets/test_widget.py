"""ExperimentStatusWidget on real runs: it follows them, and its buttons steer them."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor, QImage

from faro_bluesky.callbacks import RunLayout, StatusCallback
from faro_bluesky.plans import Channel, Phase, optogenetic_plan, schedule, wait
from faro_bluesky.widgets import ExperimentStatusWidget, QtDuringTask, add_to_napari
from faro_bluesky.widgets._strip import column_codes
from faro_bluesky.widgets._theme import KIND_HUES

FOVS = [(0.0, 0.0), (400.0, 0.0), (800.0, 0.0), (0.0, 400.0)]
IMG = [Channel("miRFP", 5)]
LONG = [
    Phase("base", interval=0.5, n_frames=3, channels=IMG),
    wait(1.5),  # longer than the lag the stage moves build up: a real wait
    Phase(
        "stim",
        interval=0.25,
        n_frames=40,
        channels=IMG,
        stim_channels=[Channel("Cyan", 10, 10)],
        stim_frames=range(0, 40, 2),
    ),
]
TIMEOUT_MS = 20_000


def shots_dir(tmp_path: Path) -> Path:
    """Screenshots go to FARO_SCREENSHOT_DIR when set (to look at them), else tmp_path."""
    return Path(os.environ.get("FARO_SCREENSHOT_DIR", tmp_path))


def image_stats(img: QImage) -> tuple[float, int]:
    """Pixel variance and number of distinct colours of a grabbed widget."""
    img = img.convertToFormat(QImage.Format.Format_RGB32)
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    arr = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)
    rgb = arr[:, : img.width(), :3].reshape(-1, 3)
    return float(rgb.var()), len(np.unique(rgb, axis=0))


class Runner:
    """Calls ``RE(plan)`` on a worker thread (the RunEngine has no SIGINT handler)."""

    def __init__(self, RE, plan) -> None:
        self.outcome: list[object] = []
        self.thread = threading.Thread(target=self._run, args=(RE, plan), daemon=True)
        self.thread.start()

    def _run(self, RE, plan) -> None:
        try:
            self.outcome.append(RE(plan))
        except RunEngineInterrupted:
            self.outcome.append("paused")


@pytest.fixture
def status(RE):
    st = StatusCallback(RE=RE, tick_s=0.05)
    RE.subscribe(st)
    yield st
    st.close()


@pytest.fixture
def widget(qtbot, status, RE):
    w = ExperimentStatusWidget(status, RE, poll_ms=50)
    qtbot.addWidget(w)
    w.resize(440, 560)
    w.show()
    return w


def test_widget_follows_the_run_and_its_buttons_pause_resume_and_stop_it(
    qtbot, widget, status, RE, scope, docs, tmp_path
):
    runner = Runner(RE, optogenetic_plan(FOVS, LONG, microscope=scope))
    # It follows: chip, strip cursor, FOV map, stats.
    qtbot.waitUntil(lambda: widget.state_chip.text() == "RUNNING", timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: widget.state_chip.text().startswith("WAITING"), timeout=TIMEOUT_MS)
    assert widget.legend["wait"].active and not widget.legend["image"].active
    assert widget.strip.cursor == 12  # 3 timepoints x 4 FOVs, then the wait cell
    qtbot.waitUntil(lambda: status.snapshot.visits_done >= 16, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: widget.strip.cursor > 13, timeout=TIMEOUT_MS)
    assert widget.strip.n_cells == 12 + 1 + 160
    assert widget.fov_map.current in range(4)
    assert widget.values["visit"].text().split("/")[1].startswith("172")
    assert widget.values["lag"].text().endswith(("ms", " s"))
    assert widget.pause_button.text() == "Pause" and widget.pause_button.isEnabled()

    # A screenshot mid-run, not blank.
    path = shots_dir(tmp_path) / "status_widget_running.png"
    assert widget.grab().save(str(path))
    variance, colours = image_stats(QImage(str(path)))
    assert variance > 100 and colours > 20, (variance, colours)

    # Pause: the run really pauses (RE(...) returns with RunEngineInterrupted).
    qtbot.mouseClick(widget.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: RE.state == "paused", timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: widget.state_chip.text() == "PAUSED", timeout=TIMEOUT_MS)
    runner.thread.join(timeout=10)
    assert runner.outcome == ["paused"]
    assert widget.pause_button.text() == "Resume" and widget.pause_button.isEnabled()
    frames_at_pause = status.snapshot.frames_received

    # Resume: it runs again (on a worker thread: RE has no SIGINT handler) and takes frames.
    qtbot.mouseClick(widget.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: RE.state == "running", timeout=TIMEOUT_MS)
    assert widget.control.mode == "thread" and widget.control.worker is not None
    qtbot.waitUntil(
        lambda: status.snapshot.frames_received > frames_at_pause + 2, timeout=TIMEOUT_MS
    )
    qtbot.waitUntil(lambda: widget.pause_button.text() == "Pause", timeout=TIMEOUT_MS)

    # Stop: the run ends now, successfully, with what it has.
    qtbot.mouseClick(widget.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.state_chip.text() == "DONE", timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: RE.state == "idle", timeout=TIMEOUT_MS)
    (stop,) = docs.of("stop")
    assert stop["exit_status"] == "success"
    snap = status.snapshot
    assert snap.visits_done < snap.visits_total  # stopped early
    assert not widget.pause_button.isEnabled() and not widget.stop_button.isEnabled()


def test_stop_button_ends_a_paused_run(qtbot, widget, status, RE, scope, docs):
    runner = Runner(RE, optogenetic_plan(FOVS, LONG, microscope=scope))
    qtbot.waitUntil(lambda: status.snapshot.frames_received >= 2, timeout=TIMEOUT_MS)
    qtbot.mouseClick(widget.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.state_chip.text() == "PAUSED", timeout=TIMEOUT_MS)
    runner.thread.join(timeout=10)
    qtbot.mouseClick(widget.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.state_chip.text() == "DONE", timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: RE.state == "idle", timeout=TIMEOUT_MS)
    assert [d["exit_status"] for d in docs.of("stop")] == ["success"]


def test_re_on_the_main_thread_with_qt_during_task(qtbot, scope_factory):
    """RE(...) blocks the GUI thread: QtDuringTask keeps Qt running; buttons still work.

    bluesky's default context managers (SIGINT handler) need the main thread, so Resume
    calls ``RE.resume()`` on the GUI thread, where QtDuringTask keeps events flowing.
    """
    RE = RunEngine(during_task=QtDuringTask(), call_returns_result=True)
    scope = scope_factory()
    status = StatusCallback(RE=RE, tick_s=0.05)
    RE.subscribe(status)
    stops: list[dict] = []
    RE.subscribe(lambda name, doc: stops.append(doc) if name == "stop" else None)
    widget = ExperimentStatusWidget(status, RE, poll_ms=50)
    qtbot.addWidget(widget)
    widget.show()
    assert widget.control.mode == "gui"
    ticks = []
    ticker = QTimer()
    ticker.timeout.connect(lambda: ticks.append(time.monotonic()))
    ticker.start(20)

    def click_pause_when_running() -> None:
        if status.snapshot.frames_received >= 2:
            widget.pause_button.click()
        else:
            QTimer.singleShot(20, click_pause_when_running)

    QTimer.singleShot(20, click_pause_when_running)
    with pytest.raises(RunEngineInterrupted):
        RE(optogenetic_plan(FOVS, LONG, microscope=scope))  # blocks here, Qt keeps going
    assert len(ticks) > 5  # the GUI was live during RE(...)
    assert RE.state == "paused"
    qtbot.waitUntil(lambda: widget.pause_button.text() == "Resume", timeout=TIMEOUT_MS)

    def click_stop_after_more_frames(n: int) -> None:
        if status.snapshot.frames_received > n + 2:
            widget.stop_button.click()
        else:
            QTimer.singleShot(20, lambda: click_stop_after_more_frames(n))

    n = status.snapshot.frames_received
    QTimer.singleShot(20, lambda: click_stop_after_more_frames(n))
    widget.pause_button.click()  # Resume: blocks in a nested Qt loop until Stop ends it
    qtbot.waitUntil(lambda: widget.state_chip.text() == "DONE", timeout=TIMEOUT_MS)
    assert RE.state == "idle"
    assert [d["exit_status"] for d in stops] == ["success"]
    ticker.stop()
    status.close()


def test_strip_of_100000_visits_renders_in_well_under_a_second(qtbot, status):
    fovs = [(float(x * 200), float(y * 200)) for x in range(10) for y in range(10)]
    phases = [
        Phase("base", interval=60, n_frames=300, channels=IMG),
        wait(600),
        Phase(
            "stim",
            interval=60,
            n_frames=400,
            channels=IMG,
            stim_channels=[Channel("Cyan", 10, 10)],
            stim_frames=range(0, 400, 7),
        ),
        Phase("recovery", interval=60, n_frames=300, channels=IMG),
    ]
    sched = schedule(fovs, phases)
    assert len(sched) == 100_000
    waits = [30_000]
    rows = sched.rows()
    t0 = time.perf_counter()
    layout = RunLayout.from_visits("big", rows, fovs=fovs, waits_before=waits)
    t_layout = time.perf_counter() - t0

    widget = ExperimentStatusWidget(status, None, poll_ms=10_000)
    qtbot.addWidget(widget)
    widget.resize(600, 560)
    widget.show()
    snap = status.snapshot
    from dataclasses import replace

    running = replace(snap, state="running", run_uid="big", layout=layout, cell=0, p=0, time=1e12)
    t0 = time.perf_counter()
    widget.show_status(running)
    img = widget.grab()  # paints everything, strip included
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for cell in range(0, 100_001, 10_000):  # cursor moves: two blits each
        widget.show_status(replace(running, cell=cell, time=running.time + cell))
        widget.strip.repaint()
    t_moves = (time.perf_counter() - t0) / 11
    print(
        f"\n100k visits: layout {t_layout * 1000:.0f} ms, first render {t_first * 1000:.1f} ms,"
        f" cursor move {t_moves * 1000:.2f} ms"
    )
    assert widget.strip.n_cells == 100_001
    assert t_first < 1.0
    assert t_moves < 0.1
    assert not img.isNull()
    # Stimulated visits (1 in 7 frames) stay visible however many visits share a pixel.
    cols = column_codes(layout.cells, 500)
    assert set(np.unique(cols)) == {0, 1, 3}  # image, stim, wait


def test_fov_map_draws_positions_path_and_current(qtbot):
    from faro_bluesky.widgets._fovmap import FovMap

    fmap = FovMap()
    qtbot.addWidget(fmap)
    fmap.resize(300, 200)
    fmap.show()
    line = [(0.0, 0.0), (500.0, 0.0), (1000.0, 0.0)]
    fmap.set_fovs(line, path=(0, 1, 2))
    pts = fmap.positions()
    assert len({round(p.y(), 3) for p in pts}) == 1  # a line of FOVs stays a line
    assert pts[0].x() < pts[1].x() < pts[2].x()
    assert pts[1].x() - pts[0].x() == pytest.approx(pts[2].x() - pts[1].x())
    fmap.set_current(2, "stim")
    img = fmap.grab().toImage()
    centre = pts[2]
    colour = QColor(img.pixel(round(centre.x()), round(centre.y())))
    assert colour.name() == KIND_HUES["stim"]
    assert QColor(img.pixel(round(pts[0].x()), round(pts[0].y()))).name() != KIND_HUES["stim"]

    square = [(0.0, 0.0), (100.0, 0.0), (0.0, 100.0), (100.0, 100.0)]
    fmap.set_fovs(square, path=(0, 1, 2, 3))
    pts = fmap.positions()
    width = pts[1].x() - pts[0].x()
    height = pts[2].y() - pts[0].y()
    assert width == pytest.approx(height)  # equal aspect
    assert fmap.current is None  # new FOVs, nothing highlighted yet


def test_each_new_run_rebinds_strip_and_map(qtbot, widget, status, RE, scope):
    short = [Phase("a", interval=0.05, n_frames=2, channels=IMG)]
    RE(optogenetic_plan(FOVS[:2], short, microscope=scope))  # blocks; Qt catches up below
    qtbot.waitUntil(lambda: widget.state_chip.text() == "DONE", timeout=TIMEOUT_MS)
    assert widget.strip.n_cells == 4 and len(widget.fov_map.positions()) == 2
    first = status.snapshot.run_uid
    RE(optogenetic_plan(FOVS[:3], [*short, wait(0.05), *short], microscope=scope))
    qtbot.waitUntil(lambda: widget.strip.n_cells == 13, timeout=TIMEOUT_MS)
    assert status.snapshot.run_uid != first
    assert len(widget.fov_map.positions()) == 3
    qtbot.waitUntil(lambda: widget.strip.cursor == 12, timeout=TIMEOUT_MS)


def test_colours_follow_the_palette(qtbot, status):
    from qtpy.QtGui import QPalette

    widget = ExperimentStatusWidget(status)
    qtbot.addWidget(widget)
    widget.resize(400, 500)
    dark = QPalette()
    roles = QPalette.ColorRole
    for role, colour in [
        (roles.Window, "#202124"),
        (roles.WindowText, "#e8eaed"),
        (roles.Base, "#26272a"),
        (roles.AlternateBase, "#303134"),
        (roles.Text, "#e8eaed"),
        (roles.Button, "#303134"),
        (roles.ButtonText, "#e8eaed"),
        (roles.Mid, "#5f6368"),
    ]:
        dark.setColor(role, QColor(colour))
    widget.setPalette(dark)
    widget.show()
    img = widget.grab().toImage()
    panel = widget.fov_map.geometry().center()
    assert QColor(img.pixel(panel.x(), panel.y() - 40)).name() == "#303134"
    gray = img.convertToFormat(QImage.Format.Format_Grayscale8)
    ptr = gray.constBits()
    ptr.setsize(gray.sizeInBytes())
    assert np.frombuffer(ptr, np.uint8).mean() < 90  # a dark theme stays dark


def test_add_to_napari_docks_the_widget(qtbot, status):
    napari = pytest.importorskip("napari")
    viewer = napari.Viewer(show=False)
    try:
        dock = add_to_napari(viewer, status)
        widget = dock.widget()
        assert isinstance(widget, ExperimentStatusWidget)
        assert widget.control is None  # no RunEngine given: view only
        assert not widget.pause_button.isEnabled()
    finally:
        viewer.close()
