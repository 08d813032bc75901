"""Analysis on a real `distributed` cluster with separate worker processes (issue 15.4).

One LocalCluster (2 worker processes, each with a nanny that restarts it) serves the whole
module: starting one costs seconds. Its scheduler allows one worker death per job
(``allowed-failures=1``, default 3) so that both outcomes of a death are cheap to reach: a
job whose worker dies once is retried elsewhere; a job that kills every worker it lands on
fails with ``KilledWorker`` after two deaths.

Workers are killed for real (SIGKILL) by the job they are running: the test arms a trigger
file when the k-th frame's document arrives, and the first segmentation job to start after
that removes it (an atomic unlink: exactly one job wins) and kills its own process. No
sleeps: everything waits for the run, the analyzer or the scheduler.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
from distributed import Client, Event, LocalCluster

from faro_bluesky.analysis import Analyzer, ClusterExecutor, cluster_executor
from faro_bluesky.analysis._jobs import segment
from faro_bluesky.analysis.components import ErkKtrFeatures, OtsuSegmenter, WholeField
from faro_bluesky.analysis.components._segment import _LazyModel
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope

IMG = [Channel("miRFP", 10), Channel("ERKKTR", 10)]
STIM = [Channel("Cyan", 100, power=50)]
N_FRAMES = 8
#: every visit fires its own mask: the plan waits for each visit's analysis
PHASE = Phase(
    "p",
    interval=0.1,
    n_frames=N_FRAMES,
    channels=IMG,
    stim_channels=STIM,
    stim_frames=range(N_FRAMES),
)
#: long enough for a worker to be restarted on a loaded machine: no mask is missed for time
MASK_TIMEOUT = 60.0


# ------------------------------------------------------------------ jobs that kill workers
@dataclass(frozen=True)
class KillingSegmenter(OtsuSegmenter):
    """Otsu; the first job to start after ``trigger`` appears kills its own worker process."""

    trigger: str = ""
    test_pid: int = field(default_factory=os.getpid)

    def segment(self, image: np.ndarray) -> np.ndarray:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.trigger)  # atomic: one job only, on one worker
            _kill_this_worker(self.test_pid)
        return super().segment(image)


@dataclass(frozen=True)
class PoisonSegmenter(OtsuSegmenter):
    """Otsu; the first frame segmented after ``trigger`` appears kills every worker it is on."""

    trigger: str = ""
    poison: str = ""
    test_pid: int = field(default_factory=os.getpid)

    def segment(self, image: np.ndarray) -> np.ndarray:
        digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.trigger)
            Path(self.poison).write_text(digest)  # before the kill, so the retry sees it
        with contextlib.suppress(FileNotFoundError):
            if Path(self.poison).read_text() == digest:
                _kill_this_worker(self.test_pid)
        return super().segment(image)


def _kill_this_worker(test_pid: int) -> None:
    if os.getpid() == test_pid:
        raise RuntimeError("a worker-killing segmenter ran in the test process")
    os.kill(os.getpid(), signal.SIGKILL)


class OnFrame:
    """Calls ``action`` when the k-th frame's event is filed (on the RunEngine thread)."""

    def __init__(self, k: int, action: Callable[[], Any]) -> None:
        self.k, self.action = k, action
        self.primary: str | None = None
        self.n = 0

    def __call__(self, name: str, doc: dict) -> None:
        if name == "descriptor" and doc["name"] == "primary":
            self.primary = doc["uid"]
        elif name == "event" and doc["descriptor"] == self.primary:
            self.n += 1
            if self.n == self.k:
                self.action()


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def client():
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},  # its HTTP server: any free port
            # imported before a (re)started worker registers, as `dask worker --preload`
            # does: no job waits for a new worker's imports
            preload=[__name__],
        )
    with cluster, Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def healthy(client):
    """The cluster with both workers up (a previous test may have killed some)."""
    client.wait_for_workers(2, timeout=120)
    return client


@pytest.fixture
def scope(RE, tmp_path):
    microscope = sim_microscope(
        seed=3, data_dir=tmp_path / "data", image_shape=(256, 256), dmd_calibrated=True
    )
    yield microscope
    microscope.close()


def events(docs, stream: str) -> list[dict]:
    uids = {d["uid"] for d in docs.of("descriptor") if d["name"] == stream}
    return [e for e in docs.of("event") if e["descriptor"] in uids]


def jobs_lost_with_workers(client: Client, since: float) -> list[set[str]]:
    """The jobs a worker was running when it died, per death since ``since`` (scheduler log).

    A worker lost while idle cost no analysis and is left out (once, on a machine at load 5,
    the scheduler logged such a removal in the poison test; its cause is not known).
    """
    return [
        msg["processing-tasks"]
        for stamp, msg in client.get_events("all")
        if stamp >= since
        and msg.get("action") == "remove-worker"
        and not msg["expected"]
        and msg["processing-tasks"]
    ]


# ---------------------------------------------------------------------------------- tests
def test_without_distributed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(ImportError, match=r"uv sync --extra cluster"):
        cluster_executor("tcp://127.0.0.1:8786")
    with pytest.raises(TypeError, match="scheduler address"):
        Analyzer(executor=42)  # type: ignore[arg-type]


def wait_for_event(name: str) -> str:
    """A job that runs until the test sets the `distributed.Event` ``name``."""
    Event(name).wait()
    return name


def test_cancelled_cluster_jobs_fail_instead_of_staying_cancelled(healthy):
    executor = ClusterExecutor(healthy)
    job = executor.submit(wait_for_event, "release-cancelled-job")
    try:
        assert not job.cancel()  # handed to the cluster: settled by it, not taken back
        executor.shutdown(wait=False, cancel_futures=True)  # as a lost scheduler does
        # an analyzer gets an error to record for the visit, not a cancelled future
        exc = job.exception(timeout=60)
        assert isinstance(exc, RuntimeError) and "dropped this job" in str(exc)
        with pytest.raises(RuntimeError, match="shutdown"):
            executor.submit(segment, OtsuSegmenter(), np.zeros((8, 8)))
    finally:
        Event("release-cancelled-job", client=healthy).set()  # free the worker's thread
    assert healthy.status == "running"  # not our client to close


_LOADS = itertools.count(1)


@dataclass
class CountingModelSegmenter(_LazyModel):
    """A model segmenter whose 'model' is the number of model loads in its process."""

    name: str = "nuclei"
    channel: int | str = 0
    tag: str = ""

    def _load(self) -> int:
        return next(_LOADS)

    def segment(self, image: np.ndarray) -> np.ndarray:
        return np.array([[os.getpid(), self.load()]])


def test_model_segmenter_loads_its_model_once_per_worker_process(healthy, tmp_path):
    # every job unpickles a fresh copy of the segmenter, without its model (a GPU model is
    # not shipped with each frame); the worker must still not load the model per frame
    with ClusterExecutor(healthy) as executor:
        seg = CountingModelSegmenter(tag=str(tmp_path))
        jobs = [executor.submit(segment, seg, np.zeros((8, 8))) for _ in range(6)]
        loads = [tuple(job.result(timeout=60)[0]) for job in jobs]
    per_process: dict[int, set[int]] = {}
    for pid, model in loads:
        per_process.setdefault(pid, set()).add(model)
    assert os.getpid() not in per_process
    assert all(len(models) == 1 for models in per_process.values()), per_process


def test_worker_killed_mid_job_is_survived_and_its_job_retried(RE, docs, scope, healthy, tmp_path):
    trigger = tmp_path / "kill"
    analyzer = Analyzer(
        segmenter=KillingSegmenter(channel="miRFP", trigger=str(trigger)),
        features=ErkKtrFeatures(channel="ERKKTR"),
        stimulator=WholeField(),
        executor=healthy.scheduler.address,  # an address: the analyzer's own client
        mask_timeout=MASK_TIMEOUT,
    )
    assert isinstance(analyzer.executor, ClusterExecutor)
    since = time.time()
    RE.subscribe(OnFrame(6, trigger.touch))  # visit t=2's first frame (3 frames per visit)
    result = RE(optogenetic_plan([(0, 0)], [PHASE], microscope=scope, analyzer=analyzer))
    assert result.exit_status == "success"
    assert analyzer.wait_idle(120)
    tracks = analyzer.tracks()
    analyzer.close()
    # a job started after the 6th frame and killed its worker while the scheduler had it
    assert not trigger.exists()
    (lost,) = jobs_lost_with_workers(healthy, since)
    # (keys are the job functions' names: an early segmentation's is segment_early)
    assert any(key.startswith(("segment-", "segment_early-", "measure-")) for key in lost)
    # ... and was run again elsewhere: every visit analysed, every mask delivered
    assert not analyzer.errors
    summaries = events(docs, "analysis")
    assert sorted(e["data"]["analysis-t"] for e in summaries) == list(range(N_FRAMES))
    assert all(e["data"]["analysis-error"] == "" for e in summaries)
    assert all(e["data"]["analysis-n_cells"] > 0 for e in summaries)
    masks = events(docs, "mask")
    assert len(masks) == N_FRAMES and not any(m["data"]["mask-missed"] for m in masks)
    assert sorted(set(tracks["t"])) == list(range(N_FRAMES))
    assert tracks["cnr"].notna().all()  # the features jobs ran on the cluster too
    assert analyzer.executor.client.status == "closed"  # its own client, closed with it


def test_frame_that_kills_every_worker_is_a_recorded_missed_mask(
    RE, docs, scope, healthy, tmp_path
):
    trigger, poison = tmp_path / "kill", tmp_path / "poison"
    analyzer = Analyzer(
        # no feature extractor: one job per visit, so no other job shares the dying workers
        segmenter=PoisonSegmenter(channel="miRFP", trigger=str(trigger), poison=str(poison)),
        stimulator=WholeField(),
        executor=healthy,  # a client: stays open after the analyzer's close
        mask_timeout=MASK_TIMEOUT,
    )
    since = time.time()
    RE.subscribe(OnFrame(6, trigger.touch))
    result = RE(optogenetic_plan([(0, 0)], [PHASE], microscope=scope, analyzer=analyzer))
    assert result.exit_status == "success"  # the run went on after the lost frame
    assert analyzer.wait_idle(120)
    tracks = analyzer.tracks()
    analyzer.close()
    # two workers died on the same job; the scheduler then failed it (allowed-failures=1).
    # When that job was the visit's early segmentation, the stack's own job segments the
    # same plane again and may take more workers with it, one job at a time.
    deaths = jobs_lost_with_workers(healthy, since)
    assert len(deaths) >= 2 and deaths[0] == deaths[1]
    assert all(len(d) == 1 for d in deaths)
    assert all(next(iter(d)).startswith(("segment-", "segment_early-")) for d in deaths)
    (error,) = analyzer.errors
    assert (error.source, error.exc_type) == ("segmentation", "KilledWorker")
    assert any(next(iter(d)) in error.message for d in deaths)  # the job they died running
    lost = error.t
    assert lost is not None and lost >= 2
    # the lost visit: an explicit missed mask and an analysis error; every other one analysed
    masks = {m["data"]["mask-t"]: m["data"]["mask-missed"] for m in events(docs, "mask")}
    assert masks == {t: t == lost for t in range(N_FRAMES)}
    summaries = {e["data"]["analysis-t"]: e["data"] for e in events(docs, "analysis")}
    assert sorted(summaries) == list(range(N_FRAMES))
    assert "KilledWorker" in summaries[lost]["analysis-error"]
    assert all(summaries[t]["analysis-error"] == "" for t in range(N_FRAMES) if t != lost)
    assert sorted(set(tracks["t"])) == [t for t in range(N_FRAMES) if t != lost]
    assert healthy.status == "running"
    healthy.wait_for_workers(2, timeout=120)  # both back before the cluster closes
