"""A run that was asked to stimulate or analyse and never did says so in its stop document."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import OtsuSegmenter, WholeField
from faro_bluesky.callbacks import StatusCallback
from faro_bluesky.plans import Channel, Phase, optogenetic_plan

IMG = [Channel("miRFP", 5)]
STIM = [Channel("Cyan", 10, power=10)]


class BrokenSegmenter(OtsuSegmenter):
    def segment(self, image):
        raise RuntimeError("model weights missing")


def mask_events(docs):
    uids = {d["uid"] for d in docs.of("descriptor") if d["name"] == "mask"}
    return [e for e in docs.of("event") if e["descriptor"] in uids]


def test_stimulation_never_delivered_is_a_warning_in_the_stop(RE, docs, calibrated_scope):
    analyzer = Analyzer(
        segmenter=BrokenSegmenter(), stimulator=WholeField(), executor=ThreadPoolExecutor(1)
    )
    phase = Phase(
        "p", interval=0.05, n_frames=3, channels=IMG, stim_channels=STIM, stim_frames=range(3)
    )
    plan = optogenetic_plan([(0, 0)], [phase], microscope=calibrated_scope, analyzer=analyzer)
    status = StatusCallback(RE=RE, tick_s=None)
    RE.subscribe(status)
    result = RE(plan)
    analyzer.close()
    assert any(e.startswith("run warning: stimulation was due") for e in status.snapshot.errors)
    (stop,) = docs.of("stop")
    assert stop["exit_status"] == "success"  # the run itself went through
    assert "no mask was ever delivered" in stop["reason"]
    assert "analyzer produced no result" not in stop["reason"]  # it reported each failure
    assert plan.run_warnings and result.exit_status == "success"
    assert all(e["data"]["mask-missed"] for e in mask_events(docs))


def test_a_run_that_delivered_its_masks_has_no_warning(RE, docs, calibrated_scope):
    phase = Phase("p", interval=0.05, n_frames=2, channels=IMG, stim_channels=STIM, stim_frames=1)
    plan = optogenetic_plan([(0, 0)], [phase], microscope=calibrated_scope, analyzer=None)
    RE(plan)
    (stop,) = docs.of("stop")
    assert stop["exit_status"] == "success" and not stop.get("reason")
    assert plan.run_warnings == []


def test_the_plans_mask_timeout_wins_over_the_analyzers(RE, docs, calibrated_scope):
    class Slow(OtsuSegmenter):
        def segment(self, image):
            import time

            time.sleep(1.5)  # the component under test is slow; nothing waits on it
            return super().segment(image)

    analyzer = Analyzer(segmenter=Slow(channel=0), stimulator=WholeField(), mask_timeout=60.0)
    phase = Phase("p", interval=0.05, n_frames=1, channels=IMG, stim_channels=STIM, stim_frames=0)
    plan = optogenetic_plan(
        [(0, 0)], [phase], microscope=calibrated_scope, analyzer=analyzer, mask_timeout=0.2
    )
    RE(plan)
    analyzer.close()
    (mask,) = mask_events(docs)
    assert mask["data"]["mask-missed"]
    assert mask["data"]["mask-wait_ms"] < 1500  # gave up at the plan's 0.2 s, not 60 s
    assert np.isfinite(mask["data"]["mask-wait_ms"])
