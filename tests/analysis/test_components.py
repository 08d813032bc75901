"""Analysis components against the simulation's ground truth, plus their contracts.

Frames are rendered straight from the sim (`FieldRenderer` + the camera's noise model), no
RunEngine: segmentation recall/precision, tracking identity over a drifting sequence with
gaps, and the ERK-KTR readout against the true ratio. Stimulator and tracker unit tests
live in test_components_stim.py and test_components_track.py.
"""

from __future__ import annotations

import importlib
import pickle
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.stats import spearmanr

from faro_bluesky.analysis._protocols import (
    FeatureExtractor,
    FrameInfo,
    RefFeatureExtractor,
    Segmenter,
    Tracker,
)
from faro_bluesky.analysis.components import (
    CellposeSegmenter,
    ErkKtrFeatures,
    FractionOfCells,
    NearestNeighbourTracker,
    OtsuSegmenter,
    RefFeatures,
    SimpleFeatures,
    StardistSegmenter,
    TrackpyTracker,
)
from faro_bluesky.sim import SampleParams, SimSample
from faro_bluesky.sim._render import FieldRenderer, GroundTruth
from faro_bluesky.sim._world import CAMERA_OFFSET, READ_NOISE

PIXEL_UM = 0.65
CHANNELS = ("miRFP", "ERKKTR")
EXPOSURE_MS = {"miRFP": 20.0, "ERKKTR": 30.0}  # the README's imaging exposures


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def sim(seed: int, shape=(512, 512)) -> tuple[FieldRenderer, Clock]:
    clock = Clock()
    return FieldRenderer(SimSample(seed, SampleParams(), clock=clock), shape, PIXEL_UM), clock


def render(r: FieldRenderer, center, rng, channels=CHANNELS) -> np.ndarray:
    """A (C, Y, X) uint16 stack at the sample's current time, with the camera's noise."""
    t = r.sample.now()
    cells = r.cells(center, t, margin_px=30)
    stamps = r.stamps(cells, center)
    planes = []
    for kind in channels:
        expected = r.render(kind, cells, stamps) * EXPOSURE_MS[kind]
        noisy = expected + rng.standard_normal(expected.shape) * np.sqrt(expected + READ_NOISE**2)
        planes.append(np.clip(noisy + CAMERA_OFFSET, 0, 65535).astype(np.uint16))
    return np.stack(planes)


def all_nuclei(r: FieldRenderer, center) -> np.ndarray:
    """Nucleus mask of every cell in the image, also those whose centre is just outside."""
    cells = r.cells(center, r.sample.now(), margin_px=30)
    out = np.zeros(r.shape, bool)
    for s in r.stamps(cells, center):
        out[s.rows, s.cols] |= s.nucleus > 0.5
    return out


def match(labels: np.ndarray, gt: GroundTruth) -> dict[int, int]:
    """Detected label -> ground-truth cell id, for pairs overlapping with IoU > 0.5."""
    out = {}
    det_area = np.bincount(labels.ravel())
    for k in range(1, int(gt.nuclei.max()) + 1):
        nucleus = gt.nuclei == k
        found, overlap = np.unique(labels[nucleus], return_counts=True)
        for label, n in zip(found, overlap, strict=True):
            if label and n / (nucleus.sum() + det_area[label] - n) > 0.5:
                out[int(label)] = int(gt.ids[k - 1])
    return out


def info(t=0, shape=(512, 512), **kw) -> FrameInfo:
    return FrameInfo(fov=0, t=t, channels=CHANNELS, shape=shape, **kw)


# --------------------------------------------------------------------------- segmentation
@pytest.mark.parametrize(
    ("shape", "centers"),
    [
        ((512, 512), [(0.0, 0.0), (900.0, -300.0)]),
        ((256, 256), [(0.0, 0.0), (200.0, 0.0), (0.0, 200.0), (-500.0, 700.0)]),
    ],
)
def test_otsu_finds_the_simulated_nuclei(shape, centers):
    seg = OtsuSegmenter()
    n_true = n_found = n_detected = n_false = 0
    for i, center in enumerate(centers):
        r, _ = sim(seed=i, shape=shape)
        labels = seg.segment(render(r, center, np.random.default_rng(i))[0])
        gt = r.ground_truth(center, r.sample.now())
        found = match(labels, gt)
        n_true += len(gt.ids)
        n_found += len(set(found.values()))
        n_detected += int(labels.max())
        nuclei = all_nuclei(r, center)
        n_false += sum(not nuclei[labels == k].any() for k in range(1, int(labels.max()) + 1))
    recall = n_found / n_true
    assert n_true > 25
    assert recall >= 0.9, f"recall {recall:.3f} ({n_found}/{n_true})"
    assert n_false <= 0.02 * n_detected, f"{n_false} of {n_detected} detections are no nucleus"


def test_otsu_splits_touching_nuclei():
    yy, xx = np.mgrid[:128, :128]
    rng = np.random.default_rng(0)
    image = rng.normal(120, 25, (128, 128))
    touching = ((yy - 64) ** 2 + (xx - 57) ** 2 < 81) | ((yy - 64) ** 2 + (xx - 71) ** 2 < 81)
    image[touching] += 600
    assert OtsuSegmenter().segment(image).max() == 2
    assert OtsuSegmenter(split_touching=False).segment(image).max() == 1


def test_otsu_keeps_objects_too_thin_to_split():
    image = np.zeros((64, 64))
    image[30:32, 2:62] = 1000.0  # 2 px wide: no distance maximum 1 px deep
    image[10:20, 10:20] = 1000.0
    for seg in (OtsuSegmenter(sigma=0), OtsuSegmenter(sigma=0, split_touching=False)):
        labels = seg.segment(image)
        assert labels.max() == 2 and (labels > 0).sum() == 220


def test_otsu_does_not_split_elongated_nuclei():
    """Soft-edged ellipses like the sim's (radius 7-10 px, 1.35:1, any angle, dim to bright)
    stay whole: the pixelated distance ridge of such a nucleus easily has two maxima."""
    yy, xx = np.mgrid[:64, :64].astype(float)
    rng = np.random.default_rng(0)
    split = []
    for a in np.linspace(7, 10, 7):
        for angle in np.linspace(0, np.pi, 12, endpoint=False):
            for level in (360, 600, 840):
                u = (xx - 32.3) * np.cos(angle) + (yy - 31.7) * np.sin(angle)
                v = -(xx - 32.3) * np.sin(angle) + (yy - 31.7) * np.cos(angle)
                b = a / 1.35
                nucleus = np.clip((1 - np.hypot(u / a, v / b)) * b + 0.5, 0, 1)
                expected = 120 + level * nucleus
                image = expected + rng.standard_normal(expected.shape) * np.sqrt(expected)
                if OtsuSegmenter().segment(image).max() != 1:
                    split.append((a, angle, level))
    assert not split


def touching_pairs(shape, pairs, rng, radius=9.0, gap=14.0):
    """Noisy image with a pair of touching discs centred at each of ``pairs`` (row, col)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = rng.normal(120, 25, shape)
    for row, col in pairs:
        for dc in (-gap / 2, gap / 2):
            image[(yy - row) ** 2 + (xx - col - dc) ** 2 < radius**2] += 600
    return image


def test_otsu_splits_touching_nuclei_anywhere_in_the_image():
    """Each object is split in a box around it: pairs cut by the image border or in a corner
    split like one in the middle, and isolated nuclei beside them stay whole."""
    pairs = [(64, 64), (8, 40), (8, 110), (120, 40), (120, 110)]  # the last 4 cut by a border
    image = touching_pairs((128, 128), pairs, np.random.default_rng(0))
    yy, xx = np.mgrid[:128, :128]
    image[(yy - 40) ** 2 + (xx - 64) ** 2 < 64] += 600  # a single nucleus
    labels = OtsuSegmenter().segment(image)
    assert labels.max() == 2 * len(pairs) + 1
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.min() >= 30
    merged = OtsuSegmenter(split_touching=False).segment(image)
    assert merged.max() == len(pairs) + 1


def test_otsu_labels_follow_the_objects_raster_order():
    """Labels follow the objects' first pixels; the parts of a split object are consecutive."""
    image = touching_pairs((96, 96), [(50, 48)], np.random.default_rng(1))
    yy, xx = np.mgrid[:96, :96]
    image[(yy - 12) ** 2 + (xx - 70) ** 2 < 64] += 600  # first in raster order
    image[(yy - 84) ** 2 + (xx - 12) ** 2 < 64] += 600  # last
    labels = OtsuSegmenter().segment(image)
    assert labels.max() == 4
    assert labels[12, 70] == 1 and labels[84, 12] == 4
    assert {labels[50, 41], labels[50, 55]} == {2, 3}


def whole_image_split(foreground: np.ndarray, depth: float, min_area: int) -> np.ndarray:
    """The split as first written: one distance transform, h-maxima and watershed over the
    whole foreground (slow); the reference for the per-object split."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    distance = ndimage.gaussian_filter(ndimage.distance_transform_edt(foreground), 1.0)
    markers, _ = ndimage.label(h_maxima(distance, depth), structure=np.ones((3, 3), bool))
    labels = watershed(-distance, markers, mask=foreground)
    seedless = foreground & (labels == 0)
    extra, _ = ndimage.label(seedless)
    labels[seedless] = extra[seedless] + labels.max()
    sizes = np.bincount(labels.ravel())
    labels[(sizes < min_area)[labels]] = 0
    return labels


def same_objects(a: np.ndarray, b: np.ndarray, min_iou: float = 0.9) -> bool:
    """The two label images cut the same pixels into the same objects (any numbering), up
    to where a cut runs: the watershed breaks ties (a symmetric neck) by its queue order,
    which depends on what else is in the image."""
    if not np.array_equal(a > 0, b > 0):
        return False
    ids_a, ids_b = np.unique(a[a > 0]), np.unique(b[b > 0])
    if ids_a.size != ids_b.size:
        return False
    for k in ids_a:
        obj = a == k
        found, overlap = np.unique(b[obj], return_counts=True)
        best = found[np.argmax(overlap)]
        if overlap.max() / np.count_nonzero(obj | (b == best)) < min_iou:
            return False
    return True


@pytest.mark.parametrize("split_depth", [0.5, 1.0, 2.0])
def test_otsu_per_object_split_equals_the_whole_image_split(split_depth):
    """Splitting object by object (and skipping objects with a single distance peak) gives
    the objects of one watershed over the whole image (exactly, on the sim's frames)."""
    seg = OtsuSegmenter(split_depth=split_depth)
    rng = np.random.default_rng(4)
    images = [
        touching_pairs((128, 128), [(64, 64), (3, 100), (125, 30)], rng, radius, gap)
        for radius in (7.0, 9.0, 11.0)
        for gap in (10.0, 14.0, 18.0)
    ]
    for seed, center in enumerate([(0.0, 0.0), (-500.0, 700.0), (1200.0, 300.0)]):
        r, _ = sim(seed=seed, shape=(256, 256))
        images.append(render(r, center, np.random.default_rng(seed))[0])
    for image in images:
        unsplit = OtsuSegmenter(split_touching=False).segment(image)
        reference = whole_image_split(unsplit > 0, split_depth, seg.min_area)
        # the synthetic pairs are symmetric, their cut may run 1 px apart; sim frames: exact
        min_iou = 1.0 if image.dtype == np.uint16 else 0.9
        assert same_objects(seg.segment(image), reference, min_iou)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 48), np.uint16),
        np.full((64, 48), 65535, np.uint16),
        np.pad(np.full((1, 1), 4000, np.uint16), ((30, 33), (20, 27))),  # one bright pixel
        np.full((1, 1), 7, np.uint16),
        np.random.default_rng(0).normal(100, 3, (64, 48)),  # a dark frame: noise only
    ],
    ids=["empty", "saturated", "single-bright-pixel", "single-pixel-image", "noise"],
)
def test_segmenter_contract_on_degenerate_images(image):
    labels = OtsuSegmenter().segment(image)
    assert labels.shape == image.shape
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.max() == 0  # nothing there: background everywhere


def test_segmenter_labels_are_sequential_and_zero_is_background():
    r, _ = sim(seed=3, shape=(256, 256))
    labels = OtsuSegmenter().segment(render(r, (0.0, 0.0), np.random.default_rng(3))[0])
    present = np.unique(labels)
    assert present[0] == 0
    np.testing.assert_array_equal(present[1:], np.arange(1, labels.max() + 1))
    assert OtsuSegmenter().segment(np.zeros((4, 4))).dtype == labels.dtype


def test_segmenter_rejects_a_stack():
    with pytest.raises(ValueError, match="2-D"):
        OtsuSegmenter().segment(np.zeros((2, 16, 16)))


@pytest.mark.parametrize(
    ("cls", "extra", "modules"),
    [
        (CellposeSegmenter, "cellpose", ["cellpose", "cellpose.models"]),
        (StardistSegmenter, "stardist", ["stardist", "stardist.models"]),
    ],
)
def test_model_segmenters_name_the_missing_extra(monkeypatch, cls, extra, modules):
    for name in modules:  # make the import fail even where the extra is installed
        monkeypatch.setitem(sys.modules, name, None)
    seg = cls()
    assert isinstance(seg, Segmenter)
    with pytest.raises(ImportError, match=f"uv sync --extra {extra}"):
        seg.segment(np.zeros((32, 32)))


def test_importing_components_does_not_import_model_packages(monkeypatch):
    heavy = ("cellpose", "stardist", "csbdeep", "tensorflow", "torch")

    class Forbid:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in heavy:
                raise AssertionError(f"importing the components imported {name}")
            return None

    for name in [m for m in sys.modules if m.startswith("faro_bluesky.analysis.components")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Forbid(), *sys.meta_path])
    module = importlib.import_module("faro_bluesky.analysis.components")
    module.CellposeSegmenter(model="nuclei", diameter=17)  # constructing is lazy too
    module.StardistSegmenter()


# ------------------------------------------------------------------------------- features
def test_simple_features_x_is_the_column_and_y_the_row():
    labels = np.zeros((40, 80), np.int32)
    labels[10:20, 40:60] = 1  # rows 10..19, columns 40..59
    labels[30, 5] = 2
    image = np.zeros((2, 40, 80))
    image[1][labels == 1] = 7.0
    table, extra = SimpleFeatures(channel="ERKKTR").extract(labels, image, info(shape=(40, 80)))
    assert extra == {}
    assert list(table.columns[:4]) == ["label", "x", "y", "area"]
    one = table.set_index("label").loc[1]
    assert (one.x, one.y, one.area, one.mean_intensity) == (49.5, 14.5, 200, 7.0)
    two = table.set_index("label").loc[2]
    assert (two.x, two.y, two.area) == (5.0, 30.0, 1)


def test_features_of_an_empty_label_image_are_an_empty_table():
    labels = np.zeros((32, 32), np.int32)
    image = np.ones((2, 32, 32))
    for extractor in (SimpleFeatures(), ErkKtrFeatures()):
        table, _ = extractor.extract(labels, image, info(shape=(32, 32)))
        assert len(table) == 0
        assert {"label", "x", "y", "area"} <= set(table.columns)


def test_feature_positions_match_the_ground_truth():
    r, _ = sim(seed=5)
    stack = render(r, (0.0, 0.0), np.random.default_rng(5))
    labels = OtsuSegmenter().segment(stack[0])
    gt = r.ground_truth((0.0, 0.0), r.sample.now())
    table, _ = SimpleFeatures().extract(labels, stack, info())
    truth = dict(zip(gt.ids.tolist(), gt.xy_px, strict=True))
    found = match(labels, gt)
    inner = table[(table.x > 15) & (table.x < 497) & (table.y > 15) & (table.y < 497)]
    errors = [
        np.hypot(*(truth[found[lab]] - (x, y)))
        for lab, x, y in zip(inner.label, inner.x, inner.y, strict=True)
        if lab in found
    ]
    assert len(errors) > 20
    assert max(errors) < 1.0  # px: x/y swapped would be tens of px off


def test_erk_rings_sit_around_the_nuclei():
    labels = np.zeros((64, 64), np.int32)
    yy, xx = np.mgrid[:64, :64]
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 < 36] = 1
    labels[(yy - 40) ** 2 + (xx - 44) ** 2 < 49] = 2
    fe = ErkKtrFeatures(margin=2, distance=4)
    rings = fe.rings(labels)
    for k in (1, 2):
        d = ndimage.distance_transform_edt(labels != k)  # distance to nucleus k
        ring = rings == k
        assert ring.any()
        assert d[ring].min() > 2 - 1e-9 and d[ring].max() <= 4 + 1e-9
    assert not (rings.astype(bool) & labels.astype(bool)).any()


def test_erk_cnr_is_ring_over_nucleus():
    labels = np.zeros((64, 64), np.int32)
    yy, xx = np.mgrid[:64, :64]
    labels[(yy - 32) ** 2 + (xx - 32) ** 2 < 64] = 3
    fe = ErkKtrFeatures()
    rings = fe.rings(labels)
    image = np.zeros((2, 64, 64))
    image[1][labels == 3] = 200.0
    image[1][rings == 3] = 50.0
    table, extra = fe.extract(labels, image, info(shape=(64, 64)))
    row = table.iloc[0]
    assert row.label == 3 and row.cnr == pytest.approx(0.25) and row.cnr_median == 0.25
    assert row.mean_intensity_nuc == 200.0 and row.mean_intensity_ring == 50.0
    assert table["cnr"].dtype == np.float32
    np.testing.assert_array_equal(extra["rings"], rings)


def test_erk_cnr_follows_the_true_erk_ratio():
    r, clock = sim(seed=7)
    rng = np.random.default_rng(7)
    gt0 = r.ground_truth((0.0, 0.0), r.sample.now())
    # a different light dose for every cell, then let activity rise for 8 s
    r.sample.deliver_light(gt0.ids, rng.uniform(0, 1, len(gt0.ids)), 1.0, 0.025)
    clock.t = 8.0
    stack = render(r, (0.0, 0.0), rng)
    gt = r.ground_truth((0.0, 0.0), r.sample.now())
    assert np.ptp(gt.activity) > 0.5
    labels = OtsuSegmenter().segment(stack[0])
    table, _ = ErkKtrFeatures().extract(labels, stack, info())
    found = match(labels, gt)
    table = table[table.label.isin(list(found))]
    ratio = dict(zip(gt.ids.tolist(), gt.erk_ratio, strict=True))
    truth = [ratio[found[lab]] for lab in table.label]
    rho = spearmanr(table.cnr, truth).statistic
    assert len(table) > 25
    assert rho > 0.8, rho


def test_ref_features_add_the_mean_per_tracked_cell():
    labels = np.zeros((20, 20), np.int32)
    labels[2:6, 2:6] = 1
    labels[10:14, 10:14] = 2
    ref = np.zeros((1, 20, 20))
    ref[0][labels == 1] = 5.0
    ref[0][labels == 2] = 9.0
    cells = pd.DataFrame({"label": [2, 1, 4], "particle": [11, 12, 13], "cnr": [0.5, 0.6, 0.7]})
    out = RefFeatures().extract(labels, ref, cells, info(shape=(20, 20)))
    assert isinstance(RefFeatures(), RefFeatureExtractor)
    assert "ref_mean_intensity" not in cells.columns  # input untouched
    np.testing.assert_array_equal(out["ref_mean_intensity"], [9.0, 5.0, np.nan])
    pd.testing.assert_frame_equal(out.drop(columns="ref_mean_intensity"), cells)


def test_channel_names_must_exist():
    with pytest.raises(ValueError, match="not among"):
        SimpleFeatures(channel="BF").extract(np.zeros((8, 8), int), np.zeros((2, 8, 8)), info())


# ------------------------------------------------------------------------------- tracking
@pytest.fixture(scope="module")
def drifting_sequence():
    """30 frames, 90 s apart, of one 512x512 FOV: detections with their true cell id."""
    r, clock = sim(seed=11)
    rng = np.random.default_rng(11)
    seg, fe = OtsuSegmenter(), SimpleFeatures()
    frames = []
    for k in range(30):
        clock.t = 90.0 * k  # the sample's own clock: cells wobble by several px per frame
        stack = render(r, (0.0, 0.0), rng, channels=("miRFP",))
        labels = seg.segment(stack[0])
        table, _ = fe.extract(labels, stack, info(t=k))
        table["truth"] = table.label.map(match(labels, r.ground_truth((0.0, 0.0), r.sample.now())))
        frames.append(table)
    moved = pd.concat(frames).dropna().groupby("truth")[["x", "y"]].agg(np.ptp)
    assert moved.max().max() > 10  # px: the cells do drift
    return frames


def with_gaps(frames, seed=0):
    """Frame 10 never analysed, frame 20 empty, 15 % of detections lost in frames 15-17."""
    rng = np.random.default_rng(seed)
    for k, table in enumerate(frames):
        if k == 10:
            continue
        if k == 20:
            table = table.iloc[:0]
        if 15 <= k <= 17:
            table = table[rng.random(len(table)) > 0.15]
        yield k, table


def identity_kept(tracked: list[pd.DataFrame]) -> tuple[float, float]:
    """Share of consecutive appearances of a true cell that keep its particle id (pooled and
    mean per cell)."""
    rows = pd.concat(tracked).dropna(subset=["truth"]).sort_values("t")
    per_cell = []
    for _, cell in rows.groupby("truth"):
        p = cell.particle.to_numpy()
        if len(p) > 1:
            per_cell.append(((p[1:] == p[:-1]).sum(), len(p) - 1))
    kept, pairs = np.sum(per_cell, axis=0)
    return kept / pairs, float(np.mean([k / n for k, n in per_cell]))


@pytest.mark.parametrize("make", [NearestNeighbourTracker, TrackpyTracker])
def test_trackers_keep_identities_through_drift_and_gaps(drifting_sequence, make):
    tracker = make(search_range=50, memory=3)
    assert isinstance(tracker, Tracker)
    tracked = [tracker.track(0, k, table).assign(t=k) for k, table in with_gaps(drifting_sequence)]
    pooled, per_cell = identity_kept(tracked)
    assert pooled >= 0.95 and per_cell >= 0.95, (pooled, per_cell)
    rows = pd.concat(tracked).dropna(subset=["truth"])
    assert (rows.groupby("particle").truth.nunique() == 1).all()  # no id shared by two cells
    # across the empty frame 20 every cell comes back with its id (memory)
    before = rows[rows.t == 19].set_index("truth").particle
    after = rows[rows.t == 21].set_index("truth").particle
    common = before.index.intersection(after.index)
    assert len(common) > 20
    assert (before[common] == after[common]).all()


def test_without_memory_the_gaps_cost_identities(drifting_sequence):
    tracker = NearestNeighbourTracker(search_range=50, memory=0)
    tracked = [tracker.track(0, k, table).assign(t=k) for k, table in with_gaps(drifting_sequence)]
    pooled, _ = identity_kept(tracked)
    assert pooled < 0.97  # the identity score above is sensitive to the gaps


# ------------------------------------------------------------------------ a closed loop
def test_fraction_of_cells_activates_the_chosen_cells():
    """Segment, track, choose half the cells, light them in the sim: they, and only they,
    get ERK-active, and the ERK-KTR readout sees it."""
    r, clock = sim(seed=13)
    rng = np.random.default_rng(13)
    seg, fe, tracker, stim = (
        OtsuSegmenter(),
        ErkKtrFeatures(),
        NearestNeighbourTracker(),
        FractionOfCells(),
    )
    center = (0.0, 0.0)
    stack = render(r, center, rng)
    labels = seg.segment(stack[0])
    table, _ = fe.extract(labels, stack, info(t=0))
    tracks = tracker.track(0, 0, table).assign(t=0)
    light = stim.mask(labels, tracks, stack, info(t=0, stim=True)).astype(float)
    cells = r.cells(center, r.sample.now(), margin_px=30)
    stamps = r.stamps(cells, center)
    r.sample.deliver_light(cells.ids, r.lit_fraction(cells, stamps, light), 1.0, 0.1)
    clock.t = 10.0
    stack = render(r, center, rng)
    labels = seg.segment(stack[0])
    table, _ = fe.extract(labels, stack, info(t=1))
    tracks = tracker.track(0, 1, table)
    lit = stim.selected(tracks.particle)
    assert 0.25 < lit.mean() < 0.75
    gt = r.ground_truth(center, r.sample.now())
    truth = match(labels, gt)
    activity = dict(zip(gt.ids.tolist(), gt.activity, strict=True))
    act = np.array([activity.get(truth.get(lab), np.nan) for lab in tracks.label])
    assert np.nanmin(act[lit]) > 0.2 > np.nanmax(act[~lit])
    assert tracks.cnr[lit].min() > tracks.cnr[~lit].max()


# ------------------------------------------------------------------------------ pickling
@pytest.mark.parametrize(
    "component",
    [
        OtsuSegmenter(sigma=1.5, min_area=20),
        OtsuSegmenter(split_touching=False),
        SimpleFeatures(channel="miRFP"),
        ErkKtrFeatures(margin=1, distance=5),
    ],
    ids=repr,
)
def test_components_pickle_and_give_identical_results(component):
    r, _ = sim(seed=2, shape=(256, 256))
    stack = render(r, (0.0, 0.0), np.random.default_rng(2))
    copy = pickle.loads(pickle.dumps(component))
    assert copy == component
    if isinstance(component, OtsuSegmenter):
        assert isinstance(copy, Segmenter)
        np.testing.assert_array_equal(copy.segment(stack[0]), component.segment(stack[0]))
    else:
        assert isinstance(copy, FeatureExtractor)
        labels = OtsuSegmenter().segment(stack[0])
        (a, ea), (b, eb) = (
            c.extract(labels, stack, info(shape=(256, 256))) for c in (component, copy)
        )
        pd.testing.assert_frame_equal(a, b)
        assert ea.keys() == eb.keys()


def test_model_segmenters_pickle_without_their_model():
    seg = CellposeSegmenter(model="nuclei", diameter=17.0)
    seg._model = object()  # as if loaded: a model is never shipped to a worker
    copy = pickle.loads(pickle.dumps(seg))
    assert copy == seg and copy._model is None
    assert pickle.loads(pickle.dumps(StardistSegmenter(prob_thresh=0.6))).prob_thresh == 0.6
    ref = pickle.loads(pickle.dumps(RefFeatures(channel=1)))
    assert ref == RefFeatures(channel=1)


def test_trackpy_tracker_names_its_extra_when_trackpy_is_missing(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trackpy" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"--extra trackpy"):
        TrackpyTracker()
