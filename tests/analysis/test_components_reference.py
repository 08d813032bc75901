"""The vectorised components give scikit-image's and scipy's results (issue 11).

Features, stimulators and the label-neighbourhood helpers work on the labelled pixels and a
few pixels around them instead of whole-image transforms; here they are compared, value by
value, with the straightforward whole-image or cell-by-cell computation they replace
(``regionprops_table``, ``expand_labels``, ``binary_dilation``, ``regionprops``) on
simulated 512x512 frames and on synthetic crowded ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from skimage.measure import regionprops, regionprops_table
from skimage.morphology import disk
from skimage.segmentation import expand_labels

from faro_bluesky.analysis._protocols import FrameInfo
from faro_bluesky.analysis.components import (
    ErkKtrFeatures,
    FractionOfCells,
    NearestNeighbourTracker,
    OtsuSegmenter,
    PercentageOfCell,
    SimpleFeatures,
    TopEdge,
)
from faro_bluesky.analysis.components._features import positions
from faro_bluesky.analysis.components._pixels import Pixels, dilate, nearest_labels
from faro_bluesky.analysis.components._segment import _smooth_distance
from faro_bluesky.sim import SampleParams, SimSample
from faro_bluesky.sim._render import FieldRenderer
from faro_bluesky.sim._world import CAMERA_OFFSET, READ_NOISE

CHANNELS = ("miRFP", "ERKKTR")
SHAPE = (512, 512)


def sim_stack(seed: int, center=(0.0, 0.0), t: float = 0.0) -> np.ndarray:
    """A (2, 512, 512) uint16 miRFP + ERK-KTR stack with the camera's noise."""
    sample = SimSample(seed, SampleParams(), clock=lambda: t)
    renderer = FieldRenderer(sample, SHAPE, 0.65)
    cells = renderer.cells(center, sample.now(), margin_px=30)
    stamps = renderer.stamps(cells, center)
    rng = np.random.default_rng(seed)
    planes = []
    for kind, exposure in zip(CHANNELS, (20.0, 30.0), strict=True):
        expected = renderer.render(kind, cells, stamps) * exposure
        noisy = expected + rng.standard_normal(SHAPE) * np.sqrt(expected + READ_NOISE**2)
        planes.append(np.clip(noisy + CAMERA_OFFSET, 0, 65535).astype(np.uint16))
    return np.stack(planes)


@pytest.fixture(scope="module")
def frames() -> list[tuple[np.ndarray, np.ndarray]]:
    """(stack, labels) of simulated frames: different cells, one FOV at the image corner."""
    out = []
    for seed, center in [(0, (0.0, 0.0)), (1, (900.0, -300.0)), (2, (-4000.0, 2500.0))]:
        stack = sim_stack(seed, center)
        out.append((stack, OtsuSegmenter().segment(stack[0])))
    assert all(labels.max() > 25 for _, labels in out)
    return out


def crowded(seed: int, shape=(160, 200), n=60) -> np.ndarray:
    """Touching and overlapping discs and ellipses, many cut by the border: ties galore."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        r, c = rng.uniform(-5, shape[0] + 5), rng.uniform(-5, shape[1] + 5)
        a, b, angle = rng.uniform(2, 9), rng.uniform(1, 6), rng.uniform(0, np.pi)
        u = (xx - c) * np.cos(angle) + (yy - r) * np.sin(angle)
        v = -(xx - c) * np.sin(angle) + (yy - r) * np.cos(angle)
        labels[(u / a) ** 2 + (v / b) ** 2 < 1] = k
    return labels


def info(shape=SHAPE, t=0, **metadata) -> FrameInfo:
    return FrameInfo(fov=0, t=t, channels=CHANNELS, shape=shape, stim=True, metadata=metadata)


# ----------------------------------------------------------------------------- features
def reference_stats(labels: np.ndarray, plane: np.ndarray) -> pd.DataFrame:
    """Per-label label, x, y, area, mean and median intensity, the scikit-image way."""
    table = pd.DataFrame(
        regionprops_table(
            labels,
            intensity_image=plane.astype(np.float64),
            properties=("label", "centroid", "area", "intensity_mean"),
        )
    )
    table["median"] = [np.median(plane[labels == k]) for k in table["label"]]
    return table.rename(columns={"centroid-0": "y", "centroid-1": "x"})


def test_positions_and_simple_features_equal_regionprops(frames):
    for stack, labels in frames:
        ref = reference_stats(labels, stack[1])
        table = positions(labels)
        np.testing.assert_array_equal(table["label"], ref["label"])
        np.testing.assert_array_equal(table["area"], ref["area"])
        np.testing.assert_allclose(table[["x", "y"]], ref[["x", "y"]], rtol=0, atol=1e-9)
        simple, _ = SimpleFeatures(channel="ERKKTR").extract(labels, stack, info())
        pd.testing.assert_frame_equal(simple[["label", "x", "y", "area"]], table)
        np.testing.assert_allclose(simple["mean_intensity"], ref["intensity_mean"], rtol=1e-12)


def reference_rings(labels: np.ndarray, margin: int, distance: int) -> np.ndarray:
    """The ring as first written: two whole-image label expansions."""
    rings = expand_labels(labels, distance)
    rings[expand_labels(labels, margin) > 0] = 0
    return rings


@pytest.mark.parametrize(("margin", "distance"), [(2, 4), (0, 3), (1, 6)])
def test_erk_ktr_features_equal_scikit_image_on_sim_frames(frames, margin, distance):
    fe = ErkKtrFeatures(channel="ERKKTR", margin=margin, distance=distance)
    for stack, labels in frames:
        table, extra = fe.extract(labels, stack, info())
        rings = reference_rings(labels, margin, distance)
        np.testing.assert_array_equal(extra["rings"], rings)
        nuc = reference_stats(labels, stack[1])
        ring = reference_stats(rings, stack[1]).set_index("label").reindex(nuc["label"])
        np.testing.assert_array_equal(table["label"], nuc["label"])
        np.testing.assert_array_equal(table["area_ring"], ring["area"].fillna(0))
        np.testing.assert_allclose(table["mean_intensity_nuc"], nuc["intensity_mean"], 1e-12)
        np.testing.assert_allclose(table["mean_intensity_ring"], ring["intensity_mean"], 1e-12)
        np.testing.assert_array_equal(table["median_intensity_nuc"], nuc["median"])
        np.testing.assert_array_equal(table["median_intensity_ring"], ring["median"])
        expected = (ring["intensity_mean"].to_numpy() / nuc["intensity_mean"].to_numpy()).astype(
            np.float32
        )
        np.testing.assert_allclose(table["cnr"], expected, rtol=1e-6)


def test_medians_of_float_images_equal_numpy():
    """Float pixels take the two-key sort, integer pixels the one-key sort: same medians."""
    labels = crowded(3)
    rng = np.random.default_rng(3)
    pixels = Pixels.of(labels)
    ids = pixels.ids()
    for image in (rng.normal(0, 1, labels.shape), rng.integers(0, 4096, labels.shape)):
        expected = [np.median(image[labels == k]) for k in ids]
        np.testing.assert_array_equal(pixels.median(image, ids), expected)


# ------------------------------------------------------------------ label neighbourhoods
@pytest.mark.parametrize("radius", [1, 2, 3.5, 5, 8])
def test_nearest_labels_are_the_nearest_as_expand_labels_finds_them(radius):
    """Same pixels and distances as the distance transform; the same label wherever one
    label is strictly nearest, and a nearest one where two are equally near."""
    for seed in range(4):
        labels = crowded(seed)
        index, label, d2 = nearest_labels(Pixels.of(labels), radius)
        distance = ndimage.distance_transform_edt(labels == 0)
        reference = expand_labels(labels, radius)
        within = (labels == 0) & (distance <= radius)
        np.testing.assert_array_equal(index, np.flatnonzero(within))
        np.testing.assert_allclose(np.sqrt(d2), distance.ravel()[index], rtol=0, atol=1e-12)
        present = np.unique(label)
        per_label = np.stack(  # distance of each pixel to each label
            [ndimage.distance_transform_edt(labels != k).ravel()[index] for k in present]
        )
        mine = per_label[np.searchsorted(present, label), np.arange(index.size)]
        np.testing.assert_allclose(mine, np.sqrt(d2), rtol=0, atol=1e-12)  # a nearest label
        differ = label != reference.ravel()[index]
        equally_near = (np.abs(per_label - np.sqrt(d2)) < 1e-9).sum(axis=0)
        assert (equally_near[differ] > 1).all()  # differences: the transform broke a tie
        assert differ.mean() < 0.05


@pytest.mark.parametrize("radius", [1, 2, 3, 4.5, 7])
def test_dilate_equals_binary_dilation_with_a_disk(radius):
    """Every pixel within ``radius``: ``binary_dilation`` with ``disk(radius)`` for a whole
    radius (a fractional one makes scikit-image's disk an even-sized grid)."""
    rng = np.random.default_rng(int(radius * 10))
    for density in (0.001, 0.02, 0.3):
        chosen = rng.random((90, 130)) < density
        chosen[0, :3] = chosen[-1, -2:] = True  # on the border too
        got = np.zeros(chosen.size, bool)
        got[dilate(np.flatnonzero(chosen), chosen.shape, radius)] = True
        got = got.reshape(chosen.shape)
        np.testing.assert_array_equal(got, ndimage.distance_transform_edt(~chosen) <= radius)
        if radius == int(radius):
            np.testing.assert_array_equal(got, ndimage.binary_dilation(chosen, disk(radius)))


# --------------------------------------------------------------------------- stimulators
def tracked(labels: np.ndarray) -> pd.DataFrame:
    ids = np.unique(labels[labels > 0])
    return pd.DataFrame({"label": ids, "particle": ids * 7 + 3, "t": 0})


@pytest.mark.parametrize("margin", [0, 2, 5])
def test_fraction_of_cells_equals_expand_labels_and_isin(frames, margin):
    stim = FractionOfCells(0.5, seed=4, margin=margin)
    cases = [labels for _, labels in frames] + [crowded(5), crowded(6)]
    for labels in cases:
        cells = tracked(labels)
        lit = cells["label"].to_numpy()[stim.selected(cells["particle"])]
        expected = np.isin(expand_labels(labels, margin), lit)
        got = stim.mask(labels, cells, None, info(labels.shape))
        if labels.shape == SHAPE:  # sim frames: no pixel is equally near two nuclei
            np.testing.assert_array_equal(got, expected)
        else:  # crowded: only pixels equally near a lit and an unlit cell may differ
            nearest = ndimage.distance_transform_edt(labels == 0)
            near_lit = ndimage.distance_transform_edt(~np.isin(labels, lit))
            near_dark = ndimage.distance_transform_edt(~((labels > 0) & ~np.isin(labels, lit)))
            tie = (near_lit == nearest) & (near_dark == nearest)
            assert tie[got != expected].all()
            assert (got != expected).mean() < 0.01


def reference_top_edge(labels: np.ndarray, fraction: float, dilation: int) -> np.ndarray:
    """TopEdge as first written: a bounding box per cell, then a whole-image dilation."""
    cutoff = np.full(int(labels.max()) + 1, -np.inf)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None:
            cutoff[index] = box[0].start + fraction * (box[0].stop - box[0].start)
    top = (labels > 0) & (np.arange(labels.shape[0])[:, None] < cutoff[labels])
    return ndimage.binary_dilation(top, disk(dilation)) if dilation > 0 else top


@pytest.mark.parametrize(("fraction", "dilation"), [(0.3, 3), (0.5, 0), (1.0, 2), (0.05, 5)])
def test_top_edge_equals_the_per_cell_reference(frames, fraction, dilation):
    stim = TopEdge(dilation=dilation)
    for labels in [labels for _, labels in frames] + [crowded(7)]:
        got = stim.mask(labels, pd.DataFrame(), None, info(labels.shape, stim_fraction=fraction))
        np.testing.assert_array_equal(got, reference_top_edge(labels, fraction, dilation))


def reference_percentage(labels: np.ndarray, pct: float, dilation: int) -> np.ndarray:
    """PercentageOfCell as first written: regionprops and a dilation per cell."""
    out = np.zeros(labels.shape, bool)
    footprint, pad = disk(dilation), dilation + 1
    h, w = labels.shape
    for prop in regionprops(labels):
        r0, c0, r1, c1 = prop.bbox
        r0, c0, r1, c1 = max(r0 - pad, 0), max(c0 - pad, 0), min(r1 + pad, h), min(c1 + pad, w)
        grown = ndimage.binary_dilation(labels[r0:r1, c0:c1] == prop.label, footprint)
        up = np.array([np.cos(prop.orientation), np.sin(prop.orientation)])
        if up[0] > 1e-9 or (abs(up[0]) <= 1e-9 and up[1] > 0):
            up = -up
        rows, cols = np.ogrid[r0:r1, c0:c1]
        cy, cx = prop.centroid
        along = (rows - cy) * up[0] + (cols - cx) * up[1]
        out[r0:r1, c0:c1] |= grown & (along > (0.5 - pct) * prop.axis_major_length)
    return out


@pytest.mark.parametrize(("pct", "dilation"), [(0.3, 5), (0.6, 0), (0.1, 2), (1.0, 3)])
def test_percentage_of_cell_equals_the_regionprops_reference(frames, pct, dilation):
    stim = PercentageOfCell(percentage=pct, dilation=dilation)
    squares = np.zeros((40, 40), np.int32)
    squares[5:12, 5:12], squares[20:30, 22:26], squares[33:36, 2:3] = 1, 2, 3  # a == c cases
    for labels in [labels for _, labels in frames] + [crowded(8), crowded(9), squares]:
        got = stim.mask(labels, pd.DataFrame(), None, info(labels.shape))
        np.testing.assert_array_equal(got, reference_percentage(labels, pct, dilation))


# ------------------------------------------------------------------- tracker, segmenter
def test_tracker_links_equal_one_global_assignment():
    """Solving lone pairs directly and crowded groups one by one gives the links of one
    assignment over all tracks and cells (random positions: the optimum is unique)."""
    rng = np.random.default_rng(0)
    tracker = NearestNeighbourTracker(search_range=12.0)
    for spread in (400.0, 120.0, 60.0):  # sparse (lone pairs) to crowded
        tracks = rng.uniform(0, spread, (80, 2))
        cells = np.concatenate(
            [tracks[:70] + rng.normal(0, 4, (70, 2)), rng.uniform(0, spread, (8, 2))]
        )
        links = sorted(tracker._assign(tracks, cells))
        d2 = ((tracks[:, None, :] - cells[None, :, :]) ** 2).sum(-1)
        cost = np.where(d2 <= tracker.search_range**2, d2, np.inf)
        death = np.full((80, 80), np.inf)
        np.fill_diagonal(death, tracker.search_range**2)
        rows, cols = linear_sum_assignment(np.hstack([cost, death]))
        expected = sorted((int(r), int(c)) for r, c in zip(rows, cols, strict=True) if c < 78)
        assert links == expected


def test_smoothing_an_objects_distance_equals_gaussian_filter():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (3, 17), (25, 31), (60, 9)]:
        distance = ndimage.distance_transform_edt(rng.random(shape) > 0.2)
        np.testing.assert_array_equal(
            _smooth_distance(distance), ndimage.gaussian_filter(distance, 1.0)
        )
