"""An analyzer in another process, fed by the 0MQ document stream, masks the plan's stimulation."""

from __future__ import annotations

import asyncio

import numpy as np
from conftest import warm_up

from faro_bluesky.devices import Frame
from faro_bluesky.network import RemoteMasks, publish, unpublish
from faro_bluesky.network._gate import FrameGate
from faro_bluesky.network._wire import decode_mask, encode_mask
from faro_bluesky.plans import Channel, Phase, optogenetic_plan

PHASE = Phase(
    "p",
    interval=0.3,
    n_frames=4,
    channels=[Channel("miRFP", 10)],
    stim_channels=[Channel("Cyan", 20, power=10)],
    stim_frames=(1, 3),
)


def center_circle(h: int, w: int) -> np.ndarray:
    """`CenterCircle()`'s mask, which the remote analyzer serves."""
    rows, cols = np.ogrid[:h, :w]
    return ((rows - h // 2) ** 2 + (cols - w // 2) ** 2 < (min(h, w) / 8) ** 2).astype(np.uint8)


def mask_events(docs, uid):
    masks = {
        d["uid"] for d in docs.of("descriptor") if d["name"] == "mask" and d["run_start"] == uid
    }
    return [e["data"] for e in docs.of("event") if e["descriptor"] in masks]


def test_remote_analyzer_delivers_every_mask_to_the_plan(RE, docs, calibrated_scope, network):
    link = network.link()
    token = publish(RE, network.proxy.in_address)
    scope = calibrated_scope
    try:
        # pixels sent by the camera as it takes them
        with RemoteMasks(link, camera=scope.camera) as masks:
            assert masks.provides_masks and masks.mask_timeout == 30
            warm_up(RE, lambda uid: masks.following(uid, 0.5))
            fovs = [(0, 0), (300, 0)]
            (sent,) = RE(
                optogenetic_plan(fovs, [PHASE], microscope=scope, analyzer=masks)
            ).run_start_uids
            frames_sent = masks.frames_sent
        # no pixels sent: the service reads each frame from the run's zarr store
        with RemoteMasks(link) as masks:
            (read,) = RE(
                optogenetic_plan(fovs, [PHASE], microscope=scope, analyzer=masks)
            ).run_start_uids
            assert masks.frames_sent == 0
    finally:
        unpublish(RE, token)
    expected = center_circle(*scope.dmd.camera_shape)
    for uid in (sent, read):
        fired = mask_events(docs, uid)
        assert sorted((m["mask-fov"], m["mask-t"]) for m in fired) == [
            (0, 1),
            (0, 3),
            (1, 1),
            (1, 3),
        ]
        assert not any(m["mask-missed"] for m in fired)  # delivered, none missed
        for m in fired:
            np.testing.assert_array_equal(m["mask-mask"], expected)
    frames = [e for e in docs.of("event") if "visit-kind" in e["data"]]
    assert frames_sent == len(frames) // 2 == 12  # 2 FOVs x 4 images + 4 stim frames
    assert network.analyzer.interrupt() == 0, network.analyzer.output  # Ctrl-C: its counts
    counts = network.analyzer.wait_for(
        r"frames: (\d+) received, (\d+) read from disk, (\d+) missing", 10
    )
    assert counts is not None, network.analyzer.output
    received, from_disk, missing = (int(n) for n in counts.groups())
    # the first run's 12 frames came over the link (some may have been read from disk too,
    # had their event come first), the second run's 12 from disk; none missing
    assert (received, missing) == (12, 0) and from_disk >= 12


def test_masks_keep_their_pixels_on_the_link():
    mask = np.random.default_rng(0).random((7, 13)) > 0.5
    for value, expected in ((mask, mask), (True, True), (False, False), (None, None)):
        _, header, bits = encode_mask("run-1", 2, 5, value)
        run, fov, t, back = decode_mask(header, bits)
        assert (run, fov, t) == ("run-1", 2, 5)
        if isinstance(expected, np.ndarray):
            np.testing.assert_array_equal(back, expected)
        else:
            assert back is expected


def test_frame_gate_holds_an_event_until_its_pixels_arrive(tmp_path):
    out: list[str] = []
    uri = (tmp_path / "nowhere.zarr" / "camera").as_uri()

    async def scenario() -> None:
        gate = FrameGate(lambda name, doc: out.append(name), timeout=0.5, poll_s=None)
        gate("stream_resource", {"uid": "r", "uri": uri, "mimetype": "application/x-zarr"})
        gate(
            "stream_datum",
            {
                "stream_resource": "r",
                "descriptor": "d",
                "seq_nums": {"start": 1, "stop": 3},
                "indices": {"start": 0, "stop": 2},
            },
        )
        gate("event", {"descriptor": "d", "seq_num": 1})
        gate("stop", {})
        assert out == ["stream_resource", "stream_datum"]  # the event waits, the stop after it
        frame = Frame(uri, 0, np.zeros((2, 2), np.uint16), timestamp=0.0, exposure_ms=1.0)
        gate.add_frame(frame)
        assert out[2:] == ["event", "stop"]
        gate("event", {"descriptor": "d", "seq_num": 2})  # its frame never comes
        assert out[4:] == []
        released = asyncio.get_running_loop().create_future()
        gate.downstream = lambda name, doc: released.set_result(name)
        assert await asyncio.wait_for(released, 10) == "event"  # after the timeout
        assert (gate.from_network, gate.missing) == (1, 1)

    asyncio.run(scenario())
