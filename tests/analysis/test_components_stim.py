"""Stimulators: mask shapes and dtypes, metadata, geometry, deterministic subsets."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from faro_bluesky.analysis._protocols import FrameInfo, Stimulator
from faro_bluesky.analysis.components import (
    CenterCircle,
    FractionOfCells,
    MovingLine,
    NoLight,
    PercentageOfCell,
    TopEdge,
    WholeField,
)

H, W = 96, 128


def disks(*centers, radius=6) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    labels = np.zeros((H, W), np.int32)
    for k, (row, col) in enumerate(centers, start=1):
        labels[(yy - row) ** 2 + (xx - col) ** 2 < radius**2] = k
    return labels


LABELS = disks((20, 20), (20, 60), (50, 100), (75, 30), (70, 70))


def tracks_for(labels, particles, t=0) -> pd.DataFrame:
    ids = np.arange(1, labels.max() + 1)
    return pd.DataFrame({"label": ids, "particle": particles, "t": t})


def info(t=0, frame=0, shape=(H, W), **metadata) -> FrameInfo:
    return FrameInfo(fov=0, t=t, frame=frame, stim=True, shape=shape, metadata=metadata)


ALL = [
    WholeField(),
    NoLight(),
    CenterCircle(),
    PercentageOfCell(),
    TopEdge(),
    MovingLine(stripe_width_px=20, frames_per_loop=10),
    FractionOfCells(),
]
METADATA = {"stim_fraction": 0.5}


@pytest.mark.parametrize("stim", ALL, ids=lambda s: type(s).__name__)
def test_contract(stim):
    assert isinstance(stim, Stimulator)
    assert isinstance(type(stim).required_metadata, frozenset)
    assert type(stim).required_metadata <= set(METADATA)
    tracks = tracks_for(LABELS, [1, 2, 3, 4, 5])
    mask = stim.mask(LABELS, tracks, np.zeros((2, H, W)), info(frame=4, **METADATA))
    if isinstance(stim, WholeField):
        assert mask is True
    else:
        assert isinstance(mask, np.ndarray)
        assert mask.shape == (H, W) and mask.dtype == bool
    assert pickle.loads(pickle.dumps(stim)) == stim


@pytest.mark.parametrize("stim", ALL[1:], ids=lambda s: type(s).__name__)
def test_shape_comes_from_info_or_else_from_the_labels(stim):
    tracks = tracks_for(LABELS, [1, 2, 3, 4, 5])
    unset = FrameInfo(fov=0, t=0, metadata=METADATA)  # shape (0, 0): not known
    assert stim.mask(LABELS, tracks, None, unset).shape == (H, W)


def test_required_metadata():
    assert TopEdge.required_metadata == {"stim_fraction"}
    for cls in (WholeField, NoLight, CenterCircle, PercentageOfCell, MovingLine, FractionOfCells):
        assert cls.required_metadata == frozenset()
    with pytest.raises(ValueError, match="stim_fraction"):
        TopEdge().mask(LABELS, pd.DataFrame(), None, info())
    with pytest.raises(ValueError, match=r"0\.\.1"):
        TopEdge().mask(LABELS, pd.DataFrame(), None, info(stim_fraction=1.5))


def test_no_light_is_dark_and_center_circle_is_centred():
    assert not NoLight().mask(LABELS, pd.DataFrame(), None, info()).any()
    mask = CenterCircle().mask(None, pd.DataFrame(), None, info(shape=(256, 512)))
    radius = 256 / 8
    assert mask.sum() == pytest.approx(np.pi * radius**2, rel=0.03)
    assert ndimage.center_of_mass(mask) == pytest.approx((128, 256), abs=0.5)
    big = CenterCircle(radius_fraction=0.25).mask(
        None, pd.DataFrame(), None, info(shape=(256, 512))
    )
    assert big.sum() == pytest.approx(4 * mask.sum(), rel=0.03)


def test_top_edge_lights_the_top_of_every_cell():
    labels = np.zeros((H, W), np.int32)
    labels[20:40, 10:30] = 1
    labels[50:90, 60:80] = 2
    mask = TopEdge(dilation=0).mask(labels, pd.DataFrame(), None, info(stim_fraction=0.25))
    expected = np.zeros((H, W), bool)
    expected[20:25, 10:30] = True
    expected[50:60, 60:80] = True
    np.testing.assert_array_equal(mask, expected)
    dilated = TopEdge().mask(labels, pd.DataFrame(), None, info(stim_fraction=0.25))
    assert (dilated >= mask).all() and dilated[17, 20] and not dilated[30, 20]
    assert not TopEdge().mask(labels, pd.DataFrame(), None, info(stim_fraction=0)).any()
    whole = TopEdge(dilation=0).mask(labels, pd.DataFrame(), None, info(stim_fraction=1))
    np.testing.assert_array_equal(whole, labels > 0)


def ellipse(angle_deg: float, a=20.0, b=8.0) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W].astype(float)
    dx, dy = xx - 64, yy - 48
    angle = np.deg2rad(angle_deg)  # of the major axis, from the x axis towards +row
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return ((u / a) ** 2 + (v / b) ** 2 < 1).astype(np.int32)


@pytest.mark.parametrize("angle", [90, 60, 30, 0, -30, -60])
def test_percentage_of_cell_lights_the_upper_end(angle):
    labels = ellipse(angle)
    mask = PercentageOfCell(percentage=0.3, dilation=0).mask(labels, pd.DataFrame(), None, info())
    rows, cols = np.nonzero(mask)
    cell_rows, cell_cols = np.nonzero(labels)
    # the lit part spans about 30 % of the 40 px major axis, at its upper (then left) end
    axis = np.array([np.sin(np.deg2rad(angle)), np.cos(np.deg2rad(angle))])  # (row, col)
    along = (np.c_[rows, cols] - (48, 64)) @ axis
    cell_along = (np.c_[cell_rows, cell_cols] - (48, 64)) @ axis
    tip = cell_along.min() if axis[0] > 0 or (axis[0] == 0 and axis[1] > 0) else cell_along.max()
    assert mask.any() and (mask <= (labels > 0)).all()
    assert np.ptp(along) == pytest.approx(0.3 * 40, abs=2)
    assert min(abs(along - tip)) < 1.5
    assert rows.mean() <= cell_rows.mean() + 1e-9


def test_percentage_of_cell_takes_the_phase_metadata_when_given():
    labels = ellipse(90)
    stim = PercentageOfCell(percentage=0.3, dilation=0)
    default = stim.mask(labels, pd.DataFrame(), None, info()).sum()
    more = stim.mask(labels, pd.DataFrame(), None, info(stim_cell_percentage=0.6)).sum()
    none = stim.mask(labels, pd.DataFrame(), None, info(stim_cell_percentage=0)).sum()
    assert none == 0 < default < more < (labels > 0).sum()
    grown = PercentageOfCell(percentage=0.3).mask(labels, pd.DataFrame(), None, info()).sum()
    assert grown > default  # the default dilation of 5 px reaches around the cell


def test_moving_line_sweeps_left_to_right_once_per_loop():
    stim = MovingLine(stripe_width_px=20, frames_per_loop=10, first_frame=2)

    def lit(frame):
        mask = stim.mask(None, pd.DataFrame(), None, info(frame=frame, shape=(H, W)))
        assert (mask == mask[:1]).all()  # full-height stripes
        return np.nonzero(mask[0])[0]

    assert lit(0).size == lit(1).size == 0  # before first_frame
    assert lit(2).size == 0  # a loop starts with the stripe just left of the image
    for frame in range(3, 12):
        # left edge = -20 + (128 + 20) * phase
        start = int(np.floor(-20 + 148 * ((frame - 2) % 10) / 10))
        expected = np.arange(max(start, 0), min(start + 20, W))
        np.testing.assert_array_equal(lit(frame), expected)
    lefts = [lit(f).min() for f in range(4, 11)]
    assert lefts == sorted(lefts) and len(set(lefts)) == len(lefts)  # moves right
    np.testing.assert_array_equal(lit(5), lit(15))  # periodic


def test_moving_line_second_stripe_follows_half_a_loop_behind():
    stim = MovingLine(stripe_width_px=10, frames_per_loop=10, second_stripe=True)
    assert stim.columns(3, W) == MovingLine(10, 10).columns(3, W)  # one stripe at first
    two = stim.columns(8, W)
    assert two == sorted(MovingLine(10, 10).columns(8, W) + MovingLine(10, 10).columns(3, W))
    with pytest.raises(ValueError):
        MovingLine(stripe_width_px=0, frames_per_loop=10)


def test_fraction_of_cells_subset_is_deterministic_and_about_the_fraction():
    ids = np.arange(1, 2001)
    chosen = FractionOfCells(0.5, seed=0).selected(ids)
    assert 0.46 < chosen.mean() < 0.54
    np.testing.assert_array_equal(chosen, FractionOfCells(0.5, seed=0).selected(ids))
    np.testing.assert_array_equal(chosen[::-1], FractionOfCells(0.5).selected(ids[::-1]))
    other = FractionOfCells(0.5, seed=1).selected(ids)
    assert 0.4 < (chosen == other).mean() < 0.6  # another seed, an independent subset
    assert 0.17 < FractionOfCells(0.2).selected(ids).mean() < 0.23
    assert not FractionOfCells(0.0).selected(ids).any()
    assert FractionOfCells(1.0).selected(ids).all()
    # nested: a larger fraction lights a superset
    assert (FractionOfCells(0.2).selected(ids) <= FractionOfCells(0.5).selected(ids)).all()
    with pytest.raises(ValueError):
        FractionOfCells(1.5)


def test_fraction_of_cells_lights_whole_nuclei_of_chosen_particles_over_time():
    stim = FractionOfCells(0.5, seed=3, margin=2)
    particles = np.array([11, 12, 13, 14, 15])
    chosen = stim.selected(particles)
    assert 0 < chosen.sum() < 5
    history = []
    for t, shift in enumerate([0, 3, 6]):  # cells move and get other labels each frame
        labels = np.roll(LABELS, shift, axis=1)
        order = np.roll(np.arange(5), t)  # label k+1 is particle particles[order[k]]
        relabel = np.zeros(6, np.int32)
        relabel[1:] = np.argsort(order) + 1
        labels = relabel[labels]
        history.append(
            pd.DataFrame({"label": np.arange(1, 6), "particle": particles[order], "t": t})
        )
        tracks = pd.concat(history, ignore_index=True)
        mask = stim.mask(labels, tracks, None, info(t=t))
        for label, particle in zip(range(1, 6), particles[order], strict=True):
            nucleus = labels == label
            grown = ndimage.binary_dilation(nucleus, iterations=2)
            if stim.selected([particle])[0]:
                assert mask[nucleus].all() and mask[grown].mean() > 0.9
            else:
                assert not mask[grown].any()
        assert mask.sum() < (ndimage.binary_dilation(labels > 0, iterations=3)).sum()


def test_fraction_of_cells_needs_tracked_cells():
    with pytest.raises(ValueError, match="particle"):
        FractionOfCells().mask(LABELS, pd.DataFrame({"label": [1]}), None, info())
    empty = pd.DataFrame({"label": [], "particle": []})
    assert not FractionOfCells().mask(LABELS, empty, None, info()).any()
