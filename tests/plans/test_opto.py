"""optogenetic_plan on the simulated microscope: order, stimulation, extra instruments."""

from __future__ import annotations

import asyncio
import gc
import threading

import bluesky.preprocessors as bpp
import numpy as np
import pytest
import zarr
from bluesky.utils import RunEngineInterrupted
from ophyd.sim import SynAxis, SynGauss

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import OtsuSegmenter, WholeField
from faro_bluesky.plans import Channel, ExperimentError, Phase, optogenetic_plan, wait

FOVS = [(0.0, 0.0), (400.0, 0.0)]
IMG = [Channel("miRFP", 10)]
STIM = [Channel("Cyan", 20, 10)]


def frames(docs):
    """(t, p, kind, c, channel) of every primary event, in order."""
    return [
        (
            e["data"]["visit-t"],
            e["data"]["visit-p"],
            e["data"]["visit-kind"],
            e["data"]["visit-c"],
            e["data"]["channel-config"],
        )
        for e in events(docs, "primary")
    ]


def events(docs, stream):
    uids = {d["uid"] for d in docs.of("descriptor") if d["name"] == stream}
    return [e for e in docs.of("event") if e["descriptor"] in uids]


def stim_phase(n=4, frames_=(1, 2), **kw):
    return Phase(
        "stim",
        interval=0.05,
        n_frames=n,
        channels=IMG,
        stim_channels=STIM,
        stim_frames=frames_,
        **kw,
    )


def test_current_mode_images_then_fires_this_frames_mask(RE, docs, scope):
    result = RE(optogenetic_plan(FOVS[:1], [stim_phase()], microscope=scope))
    assert result.exit_status == "success"
    assert frames(docs) == [
        (0, 0, "image", 0, "miRFP"),
        (1, 0, "image", 0, "miRFP"),
        (1, 0, "stim", 0, "Cyan"),
        (2, 0, "image", 0, "miRFP"),
        (2, 0, "stim", 0, "Cyan"),
        (3, 0, "image", 0, "miRFP"),
    ]
    masks = events(docs, "mask")
    assert [(m["data"]["mask-fov"], m["data"]["mask-t"]) for m in masks] == [(0, 1), (0, 2)]
    assert all(m["data"]["mask-mask"].all() for m in masks)  # whole field, recorded


def test_previous_mode_fires_last_frames_mask_first_and_never_at_t0(RE, docs, scope):
    phase = stim_phase(frames_=(0, 1, 3))
    RE(optogenetic_plan(FOVS[:1], [phase], microscope=scope, stim_mode="previous"))
    assert frames(docs) == [
        (0, 0, "image", 0, "miRFP"),  # t=0: no previous frame, no stimulation
        (1, 0, "stim", 0, "Cyan"),
        (1, 0, "image", 0, "miRFP"),
        (2, 0, "image", 0, "miRFP"),
        (3, 0, "stim", 0, "Cyan"),
        (3, 0, "image", 0, "miRFP"),
    ]
    masks = events(docs, "mask")
    assert [m["data"]["mask-t"] for m in masks] == [0, 2]  # the mask of t-1


def test_ref_channels_come_after_imaging_and_before_current_stim(RE, docs, scope):
    phase = stim_phase(n=2, frames_=(1,), ref_channels=[Channel("ERKKTR", 10)], ref_frames=(-1,))
    RE(optogenetic_plan(FOVS[:1], [phase], microscope=scope))
    assert frames(docs) == [
        (0, 0, "image", 0, "miRFP"),
        (1, 0, "image", 0, "miRFP"),
        (1, 0, "ref", 0, "ERKKTR"),
        (1, 0, "stim", 0, "Cyan"),
    ]


def test_fixed_mask_lights_only_the_chosen_cell(RE, docs, calibrated_scope):
    scope = calibrated_scope
    gt = scope.sim.ground_truth()
    mask = gt.cells == 1
    phase = stim_phase(n=2, frames_=(0,))
    RE(optogenetic_plan([tuple(scope.sim.world.xy)], [phase], microscope=scope, stim_mask=mask))
    (m,) = events(docs, "mask")
    np.testing.assert_array_equal(m["data"]["mask-mask"], mask.astype(np.uint8))
    activity = scope.sim.sample.activity(gt.ids)
    assert activity[0] > 0
    assert np.count_nonzero(activity) == 1
    assert scope.core.getSLMImage().max() == 0  # blank after the stimulation


def test_a_step_frame_reads_its_settings_while_it_is_exposed(RE, docs, scope):
    """Per frame: trigger, then the settings' readings, then the wait, then the camera."""
    log = []
    RE.msg_hook = lambda msg: log.append((msg.command, msg.obj))
    phase = Phase("p", interval=0.05, n_frames=2, channels=[Channel("miRFP", 5), Channel("BF", 5)])
    RE(optogenetic_plan(FOVS[:1], [phase], microscope=scope))
    RE.msg_hook = None
    triggers = [i for i, (cmd, obj) in enumerate(log) if cmd == "trigger" and obj is scope.camera]
    assert len(triggers) == 4
    for i in triggers:
        window = log[i + 1 : next(j for j in range(i, len(log)) if log[j][0] == "wait")]
        read = [obj for cmd, obj in window if cmd == "read"]
        assert ("create", None) in window
        assert any(obj is scope.channel for obj in read) and any(obj is scope.stage for obj in read)
        assert not any(obj is scope.camera or obj is scope.camera.timing for obj in read)
    primary = events(docs, "primary")
    assert [e["data"]["channel-config"] for e in primary] == ["miRFP", "BF"] * 2
    for e in primary:  # the settings first, the frame's timing last, in every event alike
        keys = list(e["data"])
        assert keys[0].startswith("channel-") and keys[-1].startswith("camera-timing-")
        assert e["data"]["camera-timing-start"] < e["data"]["camera-timing-end"]
    datums = list(docs.of("stream_datum"))  # the frames themselves: one each
    assert [d["indices"] for d in datums] == [{"start": i, "stop": i + 1} for i in range(4)]


def test_a_stimulation_records_its_mask_while_it_exposes_and_blanks_as_it_saves(
    RE, docs, calibrated_scope
):
    """Decision 0066: nothing of the visit's records waits between its stimulation's end
    and the next visit; the light goes dark before the stim frame's event is saved."""
    scope = calibrated_scope
    analyzer = Analyzer(segmenter=OtsuSegmenter(channel="miRFP"), stimulator=WholeField())
    log = []
    RE.msg_hook = lambda msg: log.append((msg.command, msg.obj, msg.args, msg.kwargs))
    phase = stim_phase(n=3, frames_=(0, 1, 2))
    RE(optogenetic_plan(FOVS[:1], [phase], microscope=scope, analyzer=analyzer))
    RE.msg_hook = None
    analyzer.close()

    def wait_of(i):  # the wait for the trigger at log[i]
        group = log[i][3].get("group")
        return next(
            j for j in range(i, len(log)) if log[j][0] == "wait" and log[j][3].get("group") == group
        )

    def reads_mask(i):
        return any(
            cmd == "read" and getattr(obj, "name", "") == "mask"
            for cmd, obj, *_ in log[i : wait_of(i)]
        )

    triggers = [
        i for i, (cmd, obj, *_) in enumerate(log) if cmd == "trigger" and obj is scope.camera
    ]
    stims = [i for i in triggers if reads_mask(i)]
    assert len(stims) == 3  # every stim frame's trigger window holds its mask's event
    for i in stims:
        end = wait_of(i)
        window = log[i + 1 : end]
        creates = [kw.get("name") for cmd, _, _, kw in window if cmd == "create"]
        assert creates[0] == "mask" and creates[-1] == "primary"  # mask, (summaries), frame
        read = [obj for cmd, obj, *_ in window if cmd == "read"]
        assert any(obj is scope.dmd for obj in read) and any(obj is scope.channel for obj in read)
        assert not any(obj is scope.camera or obj is scope.camera.timing for obj in read)
        # the blank is sent while the frame exposes, after its event read the pattern: the
        # camera's thread applies it once the exposure ends (decision 0069)
        read_dmd = max(
            k for k, (cmd, obj, *_) in enumerate(window) if cmd == "read" and obj is scope.dmd
        )
        blank = [k for k, (cmd, obj, *_) in enumerate(window) if cmd == "set" and obj is scope.dmd]
        assert len(blank) == 1 and window[blank[0]][2] == (False,) and read_dmd < blank[0]
        # its event is saved before the plan waits for the dark
        dark = window[blank[0]][3]["group"]
        save = next(k for k in range(end, len(log)) if log[k][0] == "save")
        waits = [k for k in range(end, len(log)) if log[k][3].get("group") == dark]
        assert waits and save < waits[0] and log[waits[0]][0] == "wait"
    # the analyzer matched each mask with the stim frame that followed it: stored there
    order = [(e["descriptor"], e["seq_num"]) for e in docs.of("event")]
    masks, primary = events(docs, "mask"), events(docs, "primary")
    stim = [e for e in primary if e["data"]["visit-kind"] == "stim"]
    for m, e in zip(masks, stim, strict=True):
        assert order.index((m["descriptor"], m["seq_num"])) < order.index(
            (e["descriptor"], e["seq_num"])
        )
    assert analyzer.errors == []
    assert len(events(docs, "analysis")) == 3
    (resource,) = docs.of("stream_resource")
    store = zarr.open_group(resource["uri"].removeprefix("file://localhost").rsplit("/", 1)[0])
    fired = store["labels/stim_mask/0"]
    assert all(fired[e["seq_num"] - 1].all() for e in stim)  # whole field, where it fired


class WholeFieldSource:
    """A mask source lighting the whole field; it says whether a mask is out (`ReadyMasks`).

    ``needs_event``: the mask comes only once the visit's image event is in (a subscribed
    document sink, like an analyzer whose stimulator reads every plane).
    """

    provides_masks = True
    mask_timeout = 10.0

    def __init__(self, needs_event: bool) -> None:
        self.needs_event = needs_event
        self.seen: set[tuple[int, int]] = set()
        self.streams: dict[str, str] = {}
        self.waiting: dict[tuple[int, int], tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}

    def __call__(self, name, doc):
        if name == "descriptor":
            self.streams[doc["uid"]] = doc["name"]
        elif name == "event" and self.streams.get(doc["descriptor"]) == "primary":
            data = doc["data"]
            if data["visit-kind"] == "image":
                key = (data["visit-p"], data["visit-t"])
                self.seen.add(key)
                if key in self.waiting:
                    loop, event = self.waiting[key]
                    loop.call_soon_threadsafe(event.set)

    async def get_mask(self, fov, t):
        if self.needs_event and (fov, t) not in self.seen:
            event = asyncio.Event()
            self.waiting[(fov, t)] = (asyncio.get_running_loop(), event)
            if (fov, t) not in self.seen:  # (the event may have come meanwhile)
                await event.wait()
        return True

    def mask_ready(self, fov, t):
        return not self.needs_event or (fov, t) in self.seen


@pytest.mark.parametrize("needs_event", [False, True])
def test_the_last_image_is_saved_during_the_stimulation_once_its_mask_is_out(
    RE, docs, calibrated_scope, needs_event
):
    """Decision 0068: a mask already out needs no event; one still computing might.

    The plan asks for the mask while the last image exposes (decision 0069); a mask out by
    then goes up with the stim preset, and that image's event is saved during the
    stimulation. A mask that needs the event gets it before the plan waits for the mask.
    """
    scope = calibrated_scope
    log = []
    RE.msg_hook = lambda msg: log.append((msg.command, msg.obj, msg.kwargs))
    source = WholeFieldSource(needs_event)
    RE(
        optogenetic_plan(
            FOVS[:1], [stim_phase(n=2, frames_=(0, 1))], microscope=scope, analyzer=source
        )
    )
    RE.msg_hook = None
    cams = [i for i, (cmd, obj, _) in enumerate(log) if cmd == "trigger" and obj is scope.camera]
    assert len(cams) == 4  # image, stim, image, stim
    for image, stim in (cams[0:2], cams[2:4]):
        saves = [i for i in range(image, stim + 8) if log[i][0] == "save"]
        first_save = saves[0]
        facet = next(
            kw["group"]
            for cmd, obj, kw in log[image:stim]
            if cmd == "trigger" and obj.name == "mask"
        )
        waits = [
            i for i in range(image, stim) if log[i][0] == "wait" and log[i][2].get("group") == facet
        ]
        if not needs_event:  # out during the exposure: saved after the stim frame's trigger
            assert not waits
            assert stim < first_save
            after = [entry for entry in log[first_save + 1 :] if entry[0] != "wait"]
            assert after[0][0] == "create" and after[0][2]["name"] == "mask"
        else:  # saved before the plan waits for the mask
            assert first_save < waits[0] < stim
    assert [e["data"]["visit-kind"] for e in events(docs, "primary")] == ["image", "stim"] * 2
    assert all(not m["data"]["mask-missed"] for m in events(docs, "mask"))


def test_the_objects_before_the_run_are_frozen_for_the_collector_until_it_ends(RE, scope):
    """No full garbage collection of the whole process during the visits (decision 0064)."""
    frozen = []
    RE.subscribe(lambda name, doc: frozen.append(gc.get_freeze_count()), "event")
    phase = Phase("p", interval=0.05, n_frames=2, channels=[Channel("miRFP", 5)])
    RE(optogenetic_plan(FOVS[:1], [phase], microscope=scope))
    assert len(frozen) >= 2 and min(frozen) > 1000  # (the process's modules and devices)
    assert gc.get_freeze_count() == 0
    pausing = threading.Event()

    def pause(name, doc):  # (from another thread, as a user's Ctrl-C or a GUI would)
        if not pausing.is_set():
            pausing.set()
            threading.Thread(target=RE.request_pause, kwargs={"defer": True}).start()

    token = RE.subscribe(pause, "event")
    longer = Phase("p", interval=0.05, n_frames=40, channels=[Channel("miRFP", 5)])
    with pytest.raises(RunEngineInterrupted):
        RE(optogenetic_plan(FOVS[:1], [longer], microscope=scope))
    RE.unsubscribe(token)
    assert RE.state == "paused" and gc.get_freeze_count() > 1000  # still in the run
    RE.abort("ended another way")
    assert gc.get_freeze_count() == 0


def test_stage_moves_only_when_the_fov_changes(RE, docs, scope):
    moves = []
    RE.msg_hook = lambda msg: (
        moves.append(msg.args) if msg.command == "set" and msg.obj is scope.stage else None
    )
    phase = Phase("p", interval=0.05, n_frames=3, channels=[Channel("miRFP", 5), Channel("BF", 5)])
    RE(optogenetic_plan(FOVS[:1], [phase], microscope=scope))
    assert len(moves) == 1
    RE.msg_hook = None


def test_start_document_carries_experiment_and_schedule(RE, docs, scope):
    phases = [
        Phase("a", interval=0.05, n_frames=2, channels=IMG),
        wait(0.05),
        Phase("b", interval=0.05, n_frames=1, channels=IMG),
    ]
    RE(optogenetic_plan(FOVS, phases, microscope=scope, md={"sample": "HeLa"}))
    (start,) = docs.of("start")
    assert start["plan_name"] == "optogenetic_plan"
    assert start["phase_names"] == ["a", "b"]
    assert [e["type"] for e in start["experiment"]] == ["phase", "wait", "phase"]
    assert len(start["schedule"]) == 6
    assert start["sample"] == "HeLa"
    assert start["num_points"] == 6
    assert len(events(docs, "primary")) == 6


def test_per_visit_baseline_and_monitor(RE, docs, scope):
    motor = SynAxis(name="temp_stage")
    det = SynGauss("probe", motor, "temp_stage", center=0, Imax=1)
    phase = Phase("p", interval=0.05, n_frames=2, channels=IMG)
    plan = optogenetic_plan(FOVS, [phase], microscope=scope, per_visit=[det])
    plan = bpp.baseline_wrapper(plan, [motor])
    plan = bpp.monitor_during_wrapper(plan, [scope.focus.readback])  # signals are monitorable
    assert RE(plan).exit_status == "success"
    streams = {d["name"] for d in docs.of("descriptor")}
    assert {"primary", "per_visit", "baseline", "focus_monitor"} <= streams
    assert len(events(docs, "per_visit")) == 4
    assert len(events(docs, "baseline")) == 2


def test_suspender_pauses_and_resumes_by_itself(RE, docs, scope):
    from bluesky.suspenders import SuspendBoolHigh
    from ophyd import Signal

    flag = Signal(name="autofocus_lost", value=0)
    RE.install_suspender(SuspendBoolHigh(flag, sleep=0))

    def trip_once(name, doc):
        if name == "event" and not trip_once.done:
            trip_once.done = True
            flag.put(1)
            import threading

            threading.Timer(0.2, flag.put, args=(0,)).start()

    trip_once.done = False
    RE.subscribe(trip_once)
    phase = Phase("p", interval=0.05, n_frames=3, channels=IMG)
    result = RE(optogenetic_plan(FOVS, [phase], microscope=scope))
    RE.clear_suspenders()
    assert result.exit_status == "success"
    got = sorted((t, p) for t, p, *_ in frames(docs))
    assert got == sorted((t, p) for t in range(3) for p in range(2))


def test_decision_between_phases_is_plain_python(RE, docs, scope):
    baseline = Phase("baseline", interval=0.05, n_frames=2, channels=IMG)
    seen = {}

    def decide(ctx):
        seen["visits"] = ctx.visits_done
        n = 3 if ctx.visits_done == 4 else 1  # e.g. from the analyzer's tracks
        return Phase("chosen", interval=0.05, n_frames=n, channels=IMG)

    RE(optogenetic_plan(FOVS, [baseline, decide], microscope=scope))
    assert seen["visits"] == 4
    phases = [e["data"]["visit-phase"] for e in events(docs, "primary")]
    assert phases == ["baseline"] * 4 + ["chosen"] * 6
    assert [e["data"]["visit-t"] for e in events(docs, "primary")][-1] == 4


def test_extend_while_running(RE, docs, scope):
    plan = optogenetic_plan(
        FOVS[:1], [Phase("a", interval=0.05, n_frames=2, channels=IMG)], microscope=scope
    )

    def extend_once(name, doc):
        if name == "event" and not extend_once.done:
            extend_once.done = True
            plan.extend(Phase("more", interval=0.05, n_frames=2, channels=IMG))

    extend_once.done = False
    RE.subscribe(extend_once)
    RE(plan)
    assert [e["data"]["visit-phase"] for e in events(docs, "primary")] == ["a", "a", "more", "more"]


def test_invalid_experiment_lists_every_problem_before_any_document(RE, docs, scope):
    phases = [
        Phase(
            "bad",
            interval=1,
            n_frames=2,
            channels=[Channel("GFP", 10), Channel("miRFP", 9000)],
            stim_channels=[Channel("Cyan", 10, 150)],
            stim_frames=(0,),
        ),
    ]
    with pytest.raises(ExperimentError) as info:
        optogenetic_plan(
            [(0, 0), (50_000, 0)],
            phases,
            microscope=scope,
            stim_mask=np.ones((256, 256), bool),
            stim_mode="sometimes",
        )
    text = str(info.value)
    for needle in ("GFP", "9000", "power=150", "fovs[1]", "not calibrated", "stim_mode"):
        assert needle in text
    assert len(info.value.problems) >= 6
    assert docs.docs == []
    assert scope.core.getXYPosition() == (0.0, 0.0)


def test_analyzer_metadata_requirements_are_checked(RE, scope):
    class NeedsMeta:
        masks = None
        required_metadata = {"stim_fraction"}

    with pytest.raises(ExperimentError, match="stim_fraction"):
        optogenetic_plan(
            FOVS,
            [Phase("p", interval=1, n_frames=1, channels=IMG)],
            microscope=scope,
            analyzer=NeedsMeta(),
        )


def test_session_default_microscope(RE, docs, scope):
    from faro_bluesky.plans import clear_session, set_session

    set_session(microscope=scope)
    try:
        RE(optogenetic_plan(FOVS[:1], [Phase("p", interval=0.05, n_frames=1, channels=IMG)]))
    finally:
        clear_session()
    assert len(events(docs, "primary")) == 1
    with pytest.raises(ExperimentError, match="no microscope"):
        optogenetic_plan(FOVS, [Phase("p", interval=1, n_frames=1, channels=IMG)])


def test_replace_pending_while_running(RE, docs, scope):
    plan = optogenetic_plan(
        FOVS[:1],
        [
            Phase("a", interval=0.05, n_frames=2, channels=IMG),
            Phase("planned", interval=0.05, n_frames=5, channels=IMG),
        ],
        microscope=scope,
    )

    def replace_once(name, doc):
        if name == "event" and not replace_once.done:
            replace_once.done = True
            plan.replace_pending([Phase("instead", interval=0.05, n_frames=1, channels=IMG)])

    replace_once.done = False
    RE.subscribe(replace_once)
    RE(plan)
    assert [e["data"]["visit-phase"] for e in events(docs, "primary")] == ["a", "a", "instead"]
    with pytest.raises(ExperimentError, match="GFP"):  # edits are validated first
        plan.replace_pending(
            [Phase("bad", interval=0.05, n_frames=1, channels=[Channel("GFP", 5)])]
        )


def test_empty_experiment_is_refused(scope):
    with pytest.raises(ExperimentError, match="phases is empty"):
        optogenetic_plan(FOVS, [], microscope=scope)


def test_visits_that_cannot_fit_the_interval_are_warned_about(scope):
    crowded = Phase("crowded", interval=0.05, n_frames=3, channels=[Channel("miRFP", 30)])
    plan = optogenetic_plan([(0, 0), (400, 0), (0, 400)], [crowded], microscope=scope)
    assert len(plan.warnings) == 1 and "time_per_fov" in plan.warnings[0]
    assert plan._start_md()["warnings"] == plan.warnings
    relaxed = Phase("relaxed", interval=1.0, n_frames=3, channels=[Channel("miRFP", 30)])
    assert optogenetic_plan([(0, 0)], [relaxed], microscope=scope).warnings == []


def test_the_fit_warning_counts_stage_travel(scope):
    """Exposures alone fit the interval; the moves between far-apart FOVs do not."""
    phase = Phase("far", interval=1.0, n_frames=3, channels=[Channel("miRFP", 30)])
    near = [(0, 0), (400, 0), (400, 400), (0, 400)]
    assert optogenetic_plan(near, [phase], microscope=scope).warnings == []
    speed = scope.stage.speed_um_s
    far = [(0, 0), (speed, 0), (speed, speed), (0, speed)]  # 1 s per move at its speed
    (warning,) = optogenetic_plan(far, [phase], microscope=scope).warnings
    assert "4.00 s of stage travel" in warning and "interval is 1 s" in warning
    # staggered visits: each slot must hold its longest move too
    (slot,) = optogenetic_plan(far, [phase], microscope=scope, time_per_fov=0.25).warnings
    assert "1.000 s of stage travel" in slot and "time_per_fov is 0.25 s" in slot
    # an unknown speed (a real stage nobody described) adds no travel
    scope.stage.speed_um_s = None
    try:
        assert optogenetic_plan(far, [phase], microscope=scope).warnings == []
    finally:
        scope.stage.speed_um_s = speed
