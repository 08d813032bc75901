"""What a remote analyzer adds to the closed loop: exposure end -> mask at the plan.

The same experiment three ways, on the simulated 512x512 microscope:

- ``local``: the `Analyzer` in the acquisition process (as `closed_loop_latency.py`);
- ``remote``: the same analyzer in another process (``faro-bluesky analyzer``), fed by the
  documents through bluesky's 0MQ proxy, the pixels sent by `RemoteMasks(camera=...)`
  as each frame is taken, the masks sent back over the same link;
- ``remote-disk``: as ``remote`` but no pixels are sent: the service reads each frame
  from the run's zarr store once the camera's writer thread has written it.

Measured from the run's documents (`faro_bluesky.storage.run_timing`), all timestamps
from the acquisition process: ``pixels_to_mask`` (the source frame's exposure end ->
the mask is at the plan) and ``total`` (-> the stimulation exposure starts). The analyzer
is `closed_loop_latency.analyzer()` (Otsu + ERK-KTR + nearest-neighbour tracking +
``FractionOfCells(0.5)``), current mode, 2 imaging channels of 20 ms, 50 ms stimulation
on every frame, 1 s interval; 1 FOV and 4 FOVs staggered. Prints p50/p95 per stage and
the load average (1, 5, 15 min) before and after each run: every process here shares
the same cores, so the load says how much of a figure is the machine.

Run: ``uv run python benchmarks/remote_analyzer.py [--timepoints N]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import bluesky.plans as bp
from bluesky import RunEngine
from closed_loop_latency import StreamEvents, analyzer, load, percentiles, stim_phase
from overhead import fov_list

from faro_bluesky.network import ProxyProcess, RemoteMasks, publish, unpublish
from faro_bluesky.plans import optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import run_timing

HERE = Path(__file__).parent


def start_service(documents: str) -> tuple[subprocess.Popen, str]:
    """``faro-bluesky analyzer`` with `closed_loop_latency.analyzer`; its link address."""
    cli = Path(sys.executable).parent / "faro-bluesky"
    env = {**os.environ, "PYTHONPATH": str(HERE), "PYTHONUNBUFFERED": "1"}
    args = ["analyzer", "--follow", documents, "--bind", "tcp://127.0.0.1:0"]
    proc = subprocess.Popen(
        [str(cli), *args, "--analyzer", "closed_loop_latency:analyzer"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"masks served at (tcp://\S+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, match[1]
    raise RuntimeError("faro-bluesky analyzer did not start")


def experiment(RE, scope, n_fovs: int, timepoints: int, provider) -> tuple:
    collected = StreamEvents()
    tpf = 1.0 / n_fovs if n_fovs > 1 else None
    plan = optogenetic_plan(
        fov_list(n_fovs),
        [stim_phase(timepoints)],
        microscope=scope,
        analyzer=provider,
        time_per_fov=tpf,
    )
    RE(plan, collected)
    primary, masks = collected.tables()
    missed = int(masks["mask-missed"].sum()) if len(masks) else 0
    return run_timing(primary, masks), missed


def report(label: str, timing, missed: int, before: str) -> None:
    lat = timing.latency
    print(f"{label}  ({before} -> {load()}), {missed} mask(s) missed")
    for stage in ("pixels_to_mask", "total"):
        print(f"  {stage:<15} {percentiles(lat[stage])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timepoints", type=int, default=20)
    parser.add_argument("--fovs", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp, ProxyProcess() as proxy:
        service, link = start_service(proxy.out_address)
        RE = RunEngine(context_managers=[], call_returns_result=True)
        scope = sim_microscope(seed=0, data_dir=tmp, dmd_calibrated=True)
        try:
            for n in args.fovs:
                # not published: the service would analyse this run too (one more load,
                # and two analyzers writing labels into one store)
                local = analyzer()
                before = load()
                timing, missed = experiment(RE, scope, n, args.timepoints, local)
                local.close()
                report(f"local        {n} FOV(s)", timing, missed, before)
                token = publish(RE, proxy.in_address)
                for label, camera in (("remote     ", scope.camera), ("remote-disk", None)):
                    with RemoteMasks(link, camera=camera) as masks:
                        while not masks.following(RE(bp.count([])).run_start_uids[0], 1.0):
                            pass  # the proxy had not yet passed the subscriptions on
                        before = load()
                        timing, missed = experiment(RE, scope, n, args.timepoints, masks)
                    report(f"{label}  {n} FOV(s)", timing, missed, before)
                unpublish(RE, token)
        finally:
            scope.close()
            service.terminate()
            service.wait(10)


if __name__ == "__main__":
    main()
