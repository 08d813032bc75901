"""Stage, focus and channel read the core in connect(), and follow changes made by others.

Another client of the same core (napari-micromanager, a script) moves the stage or sets a
preset directly on the core, from its own thread; the readbacks must show it without
any bluesky move. A position event is relayed onto the RunEngine's loop before the
mover's call returns, so a read scheduled afterwards sees it; a preset change is re-read
through the core's worker, so the test waits on the signal with a deadline.
"""

from __future__ import annotations

import gc
import threading
from unittest.mock import Mock

import bluesky.plan_stubs as bps
import pytest
from bluesky.run_engine import call_in_bluesky_event_loop
from ophyd_async.core import NotConnectedError, init_devices, wait_for_value
from pymmcore_plus import CMMCorePlus

from faro_bluesky.devices import ChannelPresets, Focus, LightSetting, XYStage
from faro_bluesky.devices._worker import CoreWorker


def in_thread(fn, *args):
    """Call ``fn(*args)`` from a plain thread, as another client of the core would."""
    errors = []

    def run():
        try:
            fn(*args)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive() and not errors, errors


def value(signal):
    return call_in_bluesky_event_loop(signal.get_value())


def wait_value(signal, expected, timeout=5.0):
    call_in_bluesky_event_loop(wait_for_value(signal, expected, timeout=timeout))


def slots(core, *names):
    return {n: len(getattr(core.events, n)) for n in names}


SIGNALS = ("XYStagePositionChanged", "stagePositionChanged", "configSet", "propertyChanged")


def test_mock_mode_builds_and_moves_without_any_core_call(RE):
    core = Mock(spec=CMMCorePlus)  # records every call; has no events to subscribe to
    with init_devices(mock=True):
        stage = XYStage(core, limits=((-100, 100), (-100, 100)))
        focus = Focus(core, limits=(-5, 5))
        channel = ChannelPresets(core, power_properties={"Cyan": ("LED", "Cyan_Level")})
    assert (stage.name, focus.name, channel.name) == ("stage", "focus", "channel")
    assert stage.mocked and focus.mocked and channel.mocked

    RE(bps.mv(stage, (10, -20), focus, 2.5, channel, LightSetting("Cyan", power=7)))
    RE(bps.mv(stage.x, 30))
    assert RE(bps.rd(stage.x)).plan_result == 30
    assert RE(bps.rd(stage.y)).plan_result == -20
    assert value(focus.readback) == 2.5
    assert (value(channel.config), value(channel.power)) == ("Cyan", 7)
    # limits and the power mapping are the device's own: still checked in mock mode
    with pytest.raises(ValueError, match=r"stage\.x=500 µm is outside"):
        RE(bps.mv(stage, (500, 0)))
    with pytest.raises(ValueError, match="no power property"):
        channel.check_value(LightSetting("BF", power=3))

    assert core.mock_calls == []
    CoreWorker.for_core(core).shutdown()


def test_an_unconnected_device_says_to_connect_it(RE):
    core = Mock(spec=CMMCorePlus)
    stage, channel = XYStage(core), ChannelPresets(core)
    with pytest.raises(NotConnectedError, match=r"XYStage is not connected: connect it first"):
        stage.set((0, 0))
    with pytest.raises(NotConnectedError, match="connect it first"):
        channel.check_value("Cyan")
    assert channel.presets() == ()
    assert core.mock_calls == []
    CoreWorker.for_core(core).shutdown()


def test_connect_reads_label_position_and_presets(RE, scope):
    core = scope.core
    in_thread(core.setXYPosition, 40.0, 60.0)
    core.waitForDevice("XY")
    with init_devices():
        stage = XYStage(core)
        focus = Focus(core)
        channel = ChannelPresets(core)
    assert stage._label == "XY" and focus._label == "Z" and channel.group == "Channel"
    assert (value(stage.x.readback), value(stage.y.readback)) == (40.0, 60.0)
    assert "Cyan" in channel.presets()
    assert value(channel.config) == core.getCurrentConfig("Channel")
    for device in (stage, focus, channel):
        device.close()


def test_connect_fails_when_the_core_has_no_such_device(RE, scope):
    bare = CMMCorePlus()  # nothing loaded: no XY stage, no focus, no channel group
    for device, message in [
        (XYStage(bare), "no XY stage: pass label="),
        (Focus(bare), "no focus device: pass label="),
        (ChannelPresets(bare), "no channel group: pass group="),
    ]:
        with pytest.raises(ValueError, match=message):
            call_in_bluesky_event_loop(device.connect())
        assert not device._events.connected  # nothing left subscribed after a failure
    CoreWorker.for_core(bare).shutdown()


def test_stage_readback_follows_a_move_by_another_client(RE, scope):
    stage, core = scope.stage, scope.core
    in_thread(core.setXYPosition, 150.0, -250.0)
    assert value(stage.x.readback) == 150.0
    assert RE(bps.rd(stage.y)).plan_result == -250.0
    core.waitForDevice("XY")
    # an axis move keeps the other axis where the other client left it
    RE(bps.mv(stage.x, 10))
    assert core.getXYPosition() == pytest.approx((10.0, -250.0))
    assert (value(stage.x.readback), value(stage.y.readback)) == pytest.approx((10, -250))


def test_stage_stopped_by_another_client_reads_where_it_stopped(RE, tmp_path):
    from faro_bluesky.sim import sim_microscope

    scope = sim_microscope(data_dir=tmp_path, image_shape=(64, 64), stage_speed_um_s=200.0)
    in_thread(scope.core.setXYPosition, 2000.0, 0.0)
    in_thread(scope.core.stop, "XY")
    x, _ = scope.core.getXYPosition()
    assert 0 <= x < 2000
    assert value(scope.stage.x.readback) == pytest.approx(x)
    scope.close()


def test_focus_readback_follows_another_client(RE, scope):
    in_thread(scope.core.setPosition, 12.5)
    assert value(scope.focus.readback) == 12.5
    assert RE(bps.rd(scope.focus.readback)).plan_result == 12.5


def test_channel_follows_presets_and_power_set_by_another_client(RE, scope):
    channel, core = scope.channel, scope.core
    in_thread(core.setProperty, "LED", "Cyan_Level", 42.0)  # not the current preset's
    in_thread(core.setConfig, "Channel", "Cyan")
    assert value(channel.config) == "Cyan"  # from the configSet event itself
    wait_value(channel.power, 42.0)  # re-read through the worker
    in_thread(core.setProperty, "LED", "Cyan_Level", 17.0)
    wait_value(channel.power, 17.0)
    in_thread(core.setProperty, "Filter", "Label", "miRFP")  # a preset by its property
    wait_value(channel.config, "miRFP")
    assert RE(bps.rd(channel.config)).plan_result == "miRFP"


def test_own_moves_do_not_trigger_rereads(RE, scope):
    """Our own commands' events are not relayed: the hot path gains no core call."""
    RE(bps.mv(scope.channel, LightSetting("Cyan", 50, 20), scope.stage, (100, 100)))
    RE(bps.mv(scope.focus, 3))
    assert scope.channel._reader is None
    assert value(scope.channel.power) == 20
    assert (value(scope.stage.x.readback), value(scope.focus.readback)) == (100, 3)


def test_close_and_garbage_collection_disconnect_from_the_core(RE, scope):
    core = scope.core
    with_scope = slots(core, *SIGNALS)
    extra = XYStage(core, name="extra")
    call_in_bluesky_event_loop(extra.connect())
    call_in_bluesky_event_loop(extra.connect())  # cached by ophyd-async: nothing new
    call_in_bluesky_event_loop(extra.connect(force_reconnect=True))  # subscribes afresh
    assert slots(core, *SIGNALS)["XYStagePositionChanged"] == (
        with_scope["XYStagePositionChanged"] + 1
    )
    del extra
    gc.collect()
    assert slots(core, *SIGNALS) == with_scope  # nothing kept the device alive

    scope.close()
    assert set(slots(core, *SIGNALS).values()) == {0}
    in_thread(core.setXYPosition, 5.0, 5.0)  # nobody listens; nothing fails


def test_events_arrive_with_the_qt_signal_backend(RE, tmp_path, monkeypatch):
    """With a Qt app, pymmcore-plus emits through Qt signals; they must reach us too.

    A plain Qt connection made from the RunEngine's thread would queue every event to that
    thread, which runs no Qt event loop: the readbacks would never change.
    """
    pytest.importorskip("qtpy.QtCore")
    from faro_bluesky.sim import sim_microscope

    monkeypatch.setenv("PYMM_SIGNALS_BACKEND", "qt")  # Qt signals without a QApplication
    scope = sim_microscope(data_dir=tmp_path, image_shape=(64, 64))
    assert type(scope.core.events).__name__ == "QCoreSignaler"
    in_thread(scope.core.setXYPosition, 100.0, 50.0)
    assert value(scope.stage.x.readback) == 100.0
    in_thread(scope.core.setConfig, "Channel", "Cyan")
    wait_value(scope.channel.config, "Cyan")
    RE(bps.mv(scope.channel, "miRFP"))  # own command: filtered in the emitting thread
    assert value(scope.channel.config) == "miRFP"
    scope.close()
    in_thread(scope.core.setXYPosition, 5.0, 5.0)  # disconnected: nothing fails
    # unload now, while Qt still exists: at interpreter exit the signaler is gone first
    scope.core.unloadAllDevices()


def test_slm_and_dmd_read_the_core_in_connect_and_mock_without_it(RE, scope):
    from faro_bluesky.devices import DMD, SLM

    core = Mock(spec=CMMCorePlus)
    with init_devices(mock=True):
        dmd = DMD(core, affine=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert dmd.shape == (600, 800) and dmd.camera_shape == (600, 800)

    # mock: only the signals change (set directly: a RunEngine stops, i.e. blanks, every
    # device it moved when its plan ends)
    async def show_all():
        await dmd.set(True)

    call_in_bluesky_event_loop(show_all())
    assert value(dmd.n_on) == 600 * 800
    assert core.mock_calls == []
    CoreWorker.for_core(core).shutdown()

    unconnected = SLM(scope.core, label="DMD")  # built without asking the core anything
    with pytest.raises(NotConnectedError, match="connect it first"):
        _ = unconnected.shape
    call_in_bluesky_event_loop(unconnected.connect())
    assert unconnected.shape == (scope.core.getSLMHeight("DMD"), scope.core.getSLMWidth("DMD"))

    bare = CMMCorePlus()
    with pytest.raises(ValueError, match="no SLM: pass label="):
        call_in_bluesky_event_loop(SLM(bare).connect())
    CoreWorker.for_core(bare).shutdown()


def test_a_snap_by_another_client_wakes_no_device_it_does_not_concern(RE, scope):
    """A snap opens and closes the shutter (autoshutter); relaying that to the channel
    woke the event loop twice per frame, as the exposure began and ended (decision 0069).
    The relay asks the device first, in the emitting thread."""
    from faro_bluesky.devices._core_device import CoreSubscriptions

    class Recorder:
        def __init__(self):
            self.calls = []

        def on_property(self, *args):
            self.calls.append(args)

    class Loop:  # records what would have been handed to the event loop
        def __init__(self):
            self.handed = []

        def call_soon_threadsafe(self, fn, *args):
            self.handed.append(args)

    recorder, loop = Recorder(), Loop()
    subscriptions = CoreSubscriptions()
    subscriptions.connect(
        recorder,
        scope.core,
        loop,
        {"propertyChanged": recorder.on_property},
        {"propertyChanged": scope.channel._concerns},
    )
    try:
        in_thread(scope.core.snapImage)
        assert loop.handed == []  # the shutter's State: not the channel's concern
        in_thread(scope.core.setProperty, "Filter", "Label", "ERKKTR")
        assert {args[1][:2] for args in loop.handed} == {("Filter", "Label"), ("Filter", "State")}
    finally:
        subscriptions.close()
