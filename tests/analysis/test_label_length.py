"""Label arrays end as long as the run's frames, even while the camera's image is open."""

from __future__ import annotations

import numpy as np
import zarr

from faro_bluesky.analysis._outputs import LabelStore


def _store_with_image(root, length: int) -> None:
    group = zarr.open_group(root, mode="w")
    group.attrs["ome"] = {"multiscales": [{"datasets": [{"path": "camera"}]}]}
    group.create_array("camera", shape=(length, 1, 8, 8), dtype="uint16")


def test_labels_take_the_stop_documents_count_over_an_image_still_growing(tmp_path):
    _store_with_image(tmp_path, 256)  # the camera's array grows in steps: 256 so far
    labels = LabelStore(tmp_path)
    labels.write("nuclei", 17, np.ones((8, 8), np.int32))
    labels.finish(18, recorded=20)  # the stop counted 20 frames; the last two not analysed
    assert zarr.open_array(tmp_path / "labels" / "nuclei" / "0", mode="r").shape[0] == 20


def test_without_a_count_labels_take_the_images_length(tmp_path):
    _store_with_image(tmp_path, 20)  # a closed image: its own length
    labels = LabelStore(tmp_path)
    labels.write("nuclei", 3, np.ones((8, 8), np.int32))
    labels.finish(4)
    assert zarr.open_array(tmp_path / "labels" / "nuclei" / "0", mode="r").shape[0] == 20
