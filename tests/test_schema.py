"""The document schema: what the plan writes parses with it; readers fail loudly on a mismatch."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from ophyd.sim import SynAxis

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis._documents import DocumentIndex
from faro_bluesky.analysis.components import OtsuSegmenter, WholeField
from faro_bluesky.callbacks import StatusCallback
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.schema import (
    SUMMARY_FIELDS,
    FrameKind,
    MaskField,
    MaskFields,
    MissedField,
    SchemaError,
    Stream,
    VisitField,
    VisitFields,
    VisitSummary,
)
from faro_bluesky.storage._frames import frames_table

TAG = {
    "visit-t": 2,
    "visit-p": 1,
    "visit-frame": 2,
    "visit-index": 5,
    "visit-phase": "stim",
    "visit-kind": "image",
    "visit-c": 0,
    "visit-n": 1,
    "visit-stim": True,
    "visit-ref": False,
    "visit-metadata": json.dumps({"dose": 3}),
    "visit-scheduled": 12.5,
}


def by_stream(docs):
    names = {d["uid"]: d["name"] for d in docs.of("descriptor")}
    out: dict[str, list[dict]] = {}
    for e in docs.of("event"):
        out.setdefault(names[e["descriptor"]], []).append(e["data"])
    return out


def test_what_the_plan_writes_parses_with_the_schema(RE, docs, calibrated_scope):
    scope = calibrated_scope
    scope.camera.retries = 0
    scope.sim.faults.camera_fail_frames.add(4)  # one visit is missed: stream "missed"
    phase = Phase(
        "stim",
        interval=0.05,
        n_frames=3,
        channels=[Channel("miRFP", 10)],
        ref_channels=[Channel("ERKKTR", 10)],
        ref_frames=(1,),
        stim_channels=[Channel("Cyan", 20, 10)],
        stim_frames=(1, 2),
    )
    analyzer = Analyzer(segmenter=OtsuSegmenter(channel="miRFP"), stimulator=WholeField())
    plan = optogenetic_plan(
        [(0.0, 0.0)], [phase], microscope=scope, analyzer=analyzer, per_visit=[SynAxis(name="z")]
    )
    try:
        assert RE(plan).exit_status == "success"
    finally:
        analyzer.close()
    streams = by_stream(docs)
    stream_names = {v for k, v in vars(Stream).items() if k.isupper()}
    assert set(streams) <= stream_names
    assert {Stream.PRIMARY, Stream.MASK, Stream.MISSED, Stream.PER_VISIT, Stream.ANALYSIS} <= set(
        streams
    )

    visits = [VisitFields.from_event(d) for d in streams[Stream.PRIMARY]]
    assert {v.kind for v in visits} == set(FrameKind)
    assert all(isinstance(d[VisitField.KIND], str) for d in streams[Stream.PRIMARY])
    assert [v.index for v in visits] == sorted(v.index for v in visits)
    for d in streams[Stream.PER_VISIT]:
        assert VisitFields.from_event(d).t >= 0
    (missed,) = streams[Stream.MISSED]
    assert VisitFields.from_event(missed).t >= 0 and missed[MissedField.DEVICE] == "camera"
    for d in streams[Stream.MASK]:
        mask = MaskFields.from_event(d)
        assert np.asarray(mask.mask).shape == scope.dmd.camera_shape
    summary_keys = {f"{Stream.ANALYSIS}-{f.name}" for f in SUMMARY_FIELDS}
    assert all(set(d) == summary_keys for d in streams[Stream.ANALYSIS])
    assert {f.name for f in SUMMARY_FIELDS} <= set(VisitSummary.__dataclass_fields__)


def test_visit_fields_parse_and_a_stock_plans_frame_has_none():
    v = VisitFields.from_event({**TAG, "camera": 0, "stage-x": 0.0})
    assert (v.t, v.p, v.kind, v.metadata, v.scheduled) == (2, 1, FrameKind.IMAGE, {"dose": 3}, 12.5)
    assert VisitFields.maybe_from_event({"camera": 0}) is None
    assert VisitFields.from_event({**TAG, "visit-kind": ""}).kind is None  # per_visit, missed
    with pytest.raises(SchemaError, match="no visit tag"):
        VisitFields.from_event({"camera": 0})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "visit-n"}, r"missing \['visit-n'\]"),
        ({"add": "visit-dose"}, r"unknown \['visit-dose'\]"),
        ({"drop": "visit-t", "add": "visit-time"}, r"missing \['visit-t'\]; unknown"),
    ],
)
def test_a_missing_or_unknown_visit_field_fails_loudly(change, message):
    data = {k: v for k, v in TAG.items() if k != change.get("drop")}
    if "add" in change:
        data[change["add"]] = 1
    with pytest.raises(SchemaError, match=message):
        VisitFields.from_event(data)


def test_an_unknown_frame_kind_or_mask_field_fails_loudly():
    with pytest.raises(SchemaError, match="'flash' is not one of"):
        VisitFields.from_event({**TAG, "visit-kind": "flash"})
    mask = {"mask-mask": [[1]], "mask-fov": 0, "mask-t": 1, "mask-missed": False}
    with pytest.raises(SchemaError, match=r"missing \['mask-wait_ms'\]"):
        MaskFields.from_event(mask)
    with pytest.raises(SchemaError, match=r"unknown \['mask-shape'\]"):
        MaskFields.from_event({**mask, MaskField.WAIT_MS: 0.0, "mask-shape": 1})


def _run_docs(data: dict) -> list[tuple[str, dict]]:
    """A start, a primary descriptor, a stream resource/datum and one event of ``data``."""
    return [
        ("start", {"uid": "r", "time": 0.0, "plan_name": "x"}),
        ("descriptor", {"uid": "d", "run_start": "r", "name": "primary", "data_keys": {}}),
        ("stream_resource", {"uid": "sr", "uri": "file://localhost/tmp/x.zarr/camera"}),
        (
            "stream_datum",
            {
                "stream_resource": "sr",
                "descriptor": "d",
                "seq_nums": {"start": 1, "stop": 2},
                "indices": {"start": 0, "stop": 1},
            },
        ),
        ("event", {"descriptor": "d", "seq_num": 1, "time": 1.0, "data": data}),
    ]


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_each_reader_fails_loudly_on_a_renamed_field():
    renamed = {k.replace("visit-n", "visit-count"): v for k, v in TAG.items()}

    index = DocumentIndex()  # the analyzer's reader (it records what this raises)
    good = [index.feed(n, d) for n, d in _run_docs(dict(TAG))]
    assert len(good[-1]) == 1  # the intact tag completes a stack
    with pytest.raises(SchemaError, match="visit-count"):
        for name, doc in _run_docs(renamed):
            index.feed(name, doc)

    status = StatusCallback(tick_s=None)  # never raises into the RunEngine: shows it
    logger, errors = logging.getLogger("faro_bluesky.callbacks._status"), _Errors()
    logger.addHandler(errors)
    try:
        for name, doc in _run_docs(renamed):
            status(name, doc)
    finally:
        logger.removeHandler(errors)
    assert any("visit-count" in e for e in status.snapshot.errors)
    assert any("does not match the schema" in m for m in errors.messages)

    table = pd.DataFrame([{**renamed, "seq_num": 1, "time": 1.0}])
    with pytest.raises(SchemaError, match=r"missing \['visit-n'\]"):
        frames_table(table)
    stock = frames_table(pd.DataFrame([{"seq_num": 1, "time": 1.0, "camera": 0}]))
    assert stock["kind"].tolist() == ["image"]  # no tag at all: a stock plan's frames
