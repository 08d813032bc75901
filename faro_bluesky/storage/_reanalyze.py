"""`reanalyze`: run a new analysis pipeline over a stored run; store it as a linked new run.

The stored documents are replayed into the analyzer (frames read from the original zarr
store: nothing is copied); its labels and tracks go to a new store in the catalog's data
directory, and a new run (``plan_name="reanalyze"``, ``source_run=<uid>``) records the
per-visit summaries, the pipeline and where the results are, so the catalog can find both.
Like a live run, it carries its labels and tracks as streams ``labels`` and ``tracks``
(`_analysis`), so a remote tiled client reads them too.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import zarr
from event_model import compose_run

from ..schema import SUMMARY_FIELDS, FrameKind, Stream
from ._analysis import analysis_documents
from ._replay import replay
from ._run import Run


def _pipeline(analyzer: Any) -> dict[str, str]:
    parts = ("segmenter", "tracker", "features", "stimulator", "ref_features")
    return {p: repr(getattr(analyzer, p, None)) for p in parts}


def reanalyze(run: Run, analyzer: Any, catalog: Any, *, md: dict | None = None) -> Run:
    """Analyse ``run`` again with ``analyzer``; return the new, linked run.

    :param run: a stored run (``catalog[uid]``) whose zarr store is readable here.
    :param analyzer: a fresh `Analyzer` (its ``output`` is set to the new store).
    :param catalog: where the new run is recorded (its ``data_dir`` holds the new store).
    :param md: extra start-document metadata.
    """
    if run.store_path is None or not run.store.exists():
        raise ValueError(
            f"run {run.uid[:8]} has no zarr store on this machine ({run.store_path}): "
            "reanalyze where the data directory is (or mount it)"
        )
    if catalog.data_dir is None:
        raise ValueError("catalog has no data_dir: open it with Catalog.local(path)")
    frames = run.frames
    imaged = set(frames.loc[frames["kind"] == FrameKind.IMAGE, "channel"])
    missing = set(getattr(analyzer, "required_channels", ())) - imaged
    if missing:
        raise ValueError(
            f"the analyzer's components read {sorted(missing)} but run {run.uid[:8]} imaged "
            f"{sorted(imaged)}: give the components channel=<one of those>"
        )
    new_uid = str(uuid.uuid4())
    out = Path(catalog.data_dir) / f"{new_uid}.analysis.zarr"
    root = zarr.open_group(out, mode="a", zarr_format=3)
    root.attrs["faro"] = {"source_run": run.uid, "source_store": str(run.store_path)}
    analyzer.output = out
    started = time.time()
    replay(run, [analyzer])
    analyzer.wait_idle(timeout=None)
    analyzer.tracks()  # flush every pending row to disk

    start_md = {
        "plan_name": "reanalyze",
        "source_run": run.uid,
        "source_store": str(run.store_path),
        "analysis_store": str(out),
        "pipeline": _pipeline(analyzer),
        "phase_names": run.start.get("phase_names", []),
        "fovs": run.start.get("fovs", []),
        "n_errors": len(analyzer.errors),
        **(md or {}),
    }
    bundle = compose_run(uid=new_uid, time=started, metadata=start_md)
    docs: list[tuple[str, dict]] = [("start", bundle.start_doc)]
    keys = {
        f.name: {"dtype": f.dtype, "shape": [], "source": f"analyzer:{f.name}"}
        for f in SUMMARY_FIELDS
    }
    desc = bundle.compose_descriptor(name=Stream.ANALYSIS, data_keys=keys)
    docs.append(("descriptor", desc.descriptor_doc))
    for s in analyzer.summaries:
        now = time.time()
        data = {f.name: getattr(s, f.name) for f in SUMMARY_FIELDS}
        docs.append(("event", desc.compose_event(data=data, timestamps=dict.fromkeys(data, now))))
    docs += analysis_documents(bundle.start_doc, out, len(frames))
    visits = len(frames.loc[frames["kind"] == FrameKind.IMAGE].drop_duplicates(["p", "t"]))
    failed = {(e.fov, e.t) for e in analyzer.errors if e.fov is not None}
    ok = not visits or len(failed) < visits
    docs.append(
        (
            "stop",
            bundle.compose_stop(
                exit_status="success" if ok else "fail",
                reason="" if ok else f"the analysis failed on every visit: {analyzer.errors[0]}",
            ),
        )
    )
    recorder = catalog.recorder()
    try:
        for name, doc in docs:
            recorder(name, doc)
    finally:
        recorder.close()
    return catalog[new_uid]
