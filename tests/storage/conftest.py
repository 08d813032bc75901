"""One recorded closed-loop run shared by the storage tests (making runs is the slow part)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from bluesky import RunEngine

from faro_bluesky.plans import Channel, Phase, optogenetic_plan, wait
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog

IMAGING = [Channel("miRFP", 5), Channel("ERKKTR", 5)]
PHASES = [
    Phase("baseline", interval=0.05, n_frames=2, channels=IMAGING),
    wait(0.05),
    Phase(
        "stim",
        interval=0.05,
        n_frames=3,
        channels=IMAGING[:1],
        stim_channels=[Channel("Cyan", 10, power=10)],
        stim_frames=(1, 2),
        ref_channels=[Channel("BF", 5)],
        ref_frames=(-1,),
    ),
]
FOVS = [(0.0, 0.0), (400.0, 0.0)]


@dataclass
class Recorded:
    """A catalog holding one optogenetic run, and the documents seen live."""

    catalog: Catalog
    uid: str
    live: list[tuple[str, dict]]
    phases: list

    def events(self, stream: str = "primary") -> list[dict]:
        """The live events of ``stream``."""
        uids = {d["uid"] for n, d in self.live if n == "descriptor" and d["name"] == stream}
        return [d for n, d in self.live if n == "event" and d["descriptor"] in uids]


@pytest.fixture(scope="session")
def recorded(tmp_path_factory) -> Recorded:
    path = tmp_path_factory.mktemp("catalog")
    catalog = Catalog.local(path)
    RE = RunEngine(context_managers=[], call_returns_result=True)
    scope = sim_microscope(seed=3, data_dir=catalog.data_dir, image_shape=(128, 128))
    live: list[tuple[str, dict]] = []
    subscription = catalog.subscribe(RE)
    RE.subscribe(lambda name, doc: live.append((name, doc)))
    result = RE(optogenetic_plan(FOVS, PHASES, microscope=scope, md={"sample": "HeLa-ERK"}))
    assert result.exit_status == "success"
    yield Recorded(catalog, result.run_start_uids[0], live, PHASES)
    subscription.unsubscribe()
    scope.close()
    catalog.close()
