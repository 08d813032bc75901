"""How fast the catalog writer ingests a run's documents (frames/s), embedded catalog.

The documents of a real ``optogenetic_plan`` run (small frames, no catalog subscribed) are
handed to a `CatalogWriter` as fast as ``put`` takes them; the time until ``flush`` returns
(everything in tiled) gives the writer's throughput. The acquisition never waits for it
(bounded queue, batches by count and time: decision 0023); the target is >= 200 frames/s.

Run: ``uv run python benchmarks/catalog_ingest.py [--frames N]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bluesky import RunEngine

from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog
from faro_bluesky.storage._writer import CatalogWriter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="faro-ingest-"))
    catalog = Catalog.local(tmp / "catalog")
    RE = RunEngine(context_managers=[], call_returns_result=True)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    scope = sim_microscope(seed=0, data_dir=catalog.data_dir, image_shape=(64, 64))
    phase = Phase("burst", interval=0, n_frames=args.frames, channels=[Channel("miRFP", 1)])
    RE(optogenetic_plan([(0, 0)], [phase], microscope=scope, analyzer=None))
    scope.close()
    uid = docs[0][1]["uid"]
    frames = sum(1 for name, _ in docs if name == "event")
    writer = CatalogWriter(catalog.client)
    t0 = time.perf_counter()
    for name, doc in docs:
        writer.put(name, doc, uid)
    assert writer.flush(600)
    dt = time.perf_counter() - t0
    assert len(catalog[uid].frames) == frames
    one, five, _ = os.getloadavg()
    print(
        f"catalog ingest: {frames} frames ({len(docs)} documents) in {dt:.2f} s = "
        f"{frames / dt:.0f} frames/s (load {one:.2f} {five:.2f})"
    )
    writer.close()
    catalog.close()


if __name__ == "__main__":
    main()
