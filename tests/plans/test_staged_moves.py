"""Decision 0069: a visit sends what follows a frame while that frame exposes.

The next imaging preset, the stimulation's preset and pattern, the blank after the
stimulation and the next visit's first preset all go to the core's thread during the
exposure before them, which applies them the moment that frame is read out. Checked on
the simulated microscope itself: no exposure ever sees its filter, LED levels, pattern
or stage change, and each frame's event still names its own settings.
"""

from __future__ import annotations

import numpy as np
import pytest

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import FractionOfCells, OtsuSegmenter
from faro_bluesky.plans import Channel, Phase, optogenetic_plan

FOVS = [(0.0, 0.0), (400.0, 0.0)]
PHASE = Phase(
    "stim",
    interval=0,
    n_frames=3,
    channels=[Channel("miRFP", 10), Channel("ERKKTR", 10)],
    stim_channels=[Channel("Cyan", 30, power=20)],
    stim_frames=range(3),
)
PRESET = {("image", 0): "miRFP", ("image", 1): "ERKKTR", ("stim", 0): "Cyan"}


def events(docs, stream):
    uids = {d["uid"] for d in docs.of("descriptor") if d["name"] == stream}
    return [e for e in docs.of("event") if e["descriptor"] in uids]


def windows(log, camera):
    """Per camera trigger: the messages between it and the wait for it."""
    out = []
    for i, (cmd, obj, _args, kw) in enumerate(log):
        if cmd == "trigger" and obj is camera:
            group = kw["group"]
            end = next(
                j
                for j in range(i, len(log))
                if log[j][0] == "wait" and log[j][3].get("group") == group
            )
            out.append(log[i + 1 : end])
    return out


def preset_name(setting) -> str:
    return getattr(setting, "config", setting)


def sets(window, obj):
    return [args[0] for cmd, o, args, _ in window if cmd == "set" and o is obj]


class AtOnce:
    """A mask source whose masks are out at once: the plan has each during the exposure."""

    provides_masks = True
    mask_timeout = 10.0

    def __init__(self, mask):
        self.mask = mask

    async def get_mask(self, fov, t):
        return self.mask


@pytest.mark.parametrize("source", ["fixed", "at once", "analyzer"])
def test_what_follows_a_frame_goes_up_behind_its_exposure_never_during_it(
    RE, docs, calibrated_scope, source
):
    scope = calibrated_scope
    world = scope.sim.world
    world.record_frames()
    gt = scope.sim.ground_truth()
    analyzer, mask = None, None
    cell = gt.cells == 1 + int(np.argmin(np.abs(gt.xy_px - 128).sum(axis=1)))
    if source == "fixed":
        mask = cell
    elif source == "at once":
        analyzer = AtOnce(cell)
    else:
        analyzer = Analyzer(
            segmenter=OtsuSegmenter(channel="miRFP"), stimulator=FractionOfCells(0.5)
        )
    log = []
    RE.msg_hook = lambda msg: log.append((msg.command, msg.obj, msg.args, msg.kwargs))
    result = RE(
        optogenetic_plan(FOVS, [PHASE], microscope=scope, analyzer=analyzer, stim_mask=mask)
    )
    RE.msg_hook = None
    if isinstance(analyzer, Analyzer):
        analyzer.close()
        assert analyzer.errors == []
    assert result.exit_status == "success"

    assert world.unsteady == []  # no frame saw its light change while it was exposed
    primary = events(docs, "primary")
    assert len(primary) == 18  # 2 FOVs x 3 timepoints x (2 images + 1 stimulation)
    for e in primary:
        d = e["data"]
        assert d["channel-config"] == PRESET[(d["visit-kind"], d["visit-c"])]
        assert (d["dmd-n_on"] > 0) == (d["visit-kind"] == "stim")  # lit only when stimulating
    assert all(not m["data"]["mask-missed"] for m in events(docs, "mask"))

    # every status a message started is waited for: a group never waited stays in the
    # RunEngine until the run ends (memory, over a run of hours)
    started = {
        kw["group"] for cmd, _, _, kw in log if cmd in ("set", "trigger") and kw.get("group")
    }
    waited = {kw.get("group") for cmd, _, _, kw in log if cmd == "wait"}
    assert started <= waited

    # and each of those moves was sent while the frame before it was exposed
    frames = windows(log, scope.camera)
    assert len(frames) == 18
    for k, window in enumerate(frames):
        kind = (("image", 0), ("image", 1), ("stim", 0))[k % 3]
        presets = [preset_name(s) for s in sets(window, scope.channel)]
        lights = sets(window, scope.dmd)
        if kind == ("image", 0):
            assert presets == ["ERKKTR"] and lights == []
        elif kind == ("image", 1):
            assert presets == ["Cyan"]
            if source != "analyzer":  # out in time: up with the preset, behind the frame
                assert len(lights) == 1 and np.array_equal(lights[0].mask, cell)
        else:  # the blank, and the next visit's first preset and FOV (none after the last)
            assert lights == [False]
            assert presets == (["miRFP"] if k < len(frames) - 1 else [])
            assert sets(window, scope.stage) == ([FOVS[1]] if k == 8 else [])  # FOV 0 -> 1
