"""The fast simulated camera (decision 0047) renders what the straightforward formulas give.

The reference below is the stamp and channel code as it was before the stamp cache
(exact centres, float64, per cell); the renderer places centres at the nearest 1/16 px
and works in float32, so the two agree to float32 rounding for centres on that grid and
within the quantisation's bound elsewhere. The camera's noise is checked statistically.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from faro_bluesky.sim import SampleParams, SimSample, SimWorld
from faro_bluesky.sim._render import (
    BRIGHTFIELD,
    DMD_BLEED,
    KTR,
    NUCLEAR_MARKER,
    STIM_REFLECTION,
    SUBPIXEL,
    FieldRenderer,
)
from faro_bluesky.sim._sample import Cells
from faro_bluesky.sim._world import CAMERA_OFFSET, NORMAL_QUANTILES, READ_NOISE

SHAPE = (200, 240)
PIXEL_UM = 0.65
# Profiles ramp by at most 1 per pixel; a centre moves by at most sqrt(2) / 32 px.
QUANTISATION = np.sqrt(2) / (2 * SUBPIXEL)


def reference_profiles(r: FieldRenderer, cells: Cells, center) -> list[tuple[int, Any, Any]]:
    """Each cell's nucleus and cell profile on the whole image, today's formula, float64."""
    h, w = r.shape
    factor = r.sample.params.cell_radius_factor
    out = []
    for index, ((cx, cy), rn, el, ang) in enumerate(
        zip(
            r.to_pixels(cells.xy_um, center),
            cells.nucleus_um / r.pixel_size_um,
            cells.elongation,
            cells.angle,
            strict=True,
        )
    ):
        dy, dx = np.mgrid[0:h, 0:w].astype(float)
        dx -= cx
        dy -= cy
        u = dx * np.cos(ang) + dy * np.sin(ang)
        v = -dx * np.sin(ang) + dy * np.cos(ang)
        a_n, b_n = rn, rn / el
        nucleus = np.clip((1 - np.hypot(u / a_n, v / b_n)) * b_n + 0.5, 0, 1)
        a_c, b_c = rn * factor, rn * factor / np.sqrt(el)
        cell = np.clip((1 - np.hypot(u / a_c, v / b_c)) * b_c + 0.5, 0, 1)
        out.append((index, nucleus, np.maximum(cell, nucleus)))
    return out


def reference_render(r: FieldRenderer, kind: str, cells: Cells, profiles, light=None):
    """Expected counts per ms at level 100, today's formulas."""
    img = np.zeros(r.shape)
    if kind == "miRFP":
        img += 1.0
        for i, nucleus, cell in profiles:
            img += NUCLEAR_MARKER * cells.marker[i] * (nucleus + 0.05 * (cell - nucleus))
    elif kind == "ERKKTR":
        img += 1.0
        ratio = r.sample.erk_ratio(cells.activity)
        for i, nucleus, cell in profiles:
            nuc = KTR * cells.ktr[i] / (1 + ratio[i])
            img += nuc * nucleus + nuc * ratio[i] * (cell - nucleus)
    elif kind == "BF":
        img += BRIGHTFIELD
        for _, nucleus, cell in profiles:
            edge = 4 * cell * (1 - cell)
            img -= BRIGHTFIELD * (0.12 * cell + 0.08 * nucleus - 0.1 * edge)
    elif kind == "Cyan":
        img += 0.5
        if light is not None:
            img += STIM_REFLECTION * (DMD_BLEED + (1 - DMD_BLEED) * light)
        for _, _, cell in profiles:
            img += 2.0 * cell
    return img


def paste(shape, stamp, which: str) -> np.ndarray:
    out = np.zeros(shape)
    out[stamp.rows, stamp.cols] = getattr(stamp, which)
    return out


def field(seed: int, center, *, on_grid: bool, activity=0.6):
    """A renderer and the cells of one FOV (centres moved onto the 1/16 px grid if asked)."""
    r = FieldRenderer(SimSample(seed, SampleParams(), clock=lambda: 0.0), SHAPE, PIXEL_UM)
    cells = r.cells(center, 0.0, margin_px=30)
    # varied activity, so that ERK-KTR differs from cell to cell
    act = np.random.default_rng(seed).uniform(0, activity, len(cells.ids))
    cells = dataclasses.replace(cells, activity=act)
    if on_grid:
        xy = np.rint(r.to_pixels(cells.xy_um, center) * SUBPIXEL) / SUBPIXEL
        h, w = SHAPE
        xy_um = (xy - [(w - 1) / 2, (h - 1) / 2]) * PIXEL_UM + np.asarray(center)
        cells = dataclasses.replace(cells, xy_um=xy_um)
    return r, cells


FOVS = [(0, (0.0, 0.0)), (1, (900.0, -300.0)), (2, (-4000.0, 2517.3))]


def light_pattern() -> np.ndarray:
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    return ((xx // 30 + yy // 40) % 2).astype(float)


@pytest.mark.parametrize(("seed", "center"), FOVS)
@pytest.mark.parametrize("kind", ["miRFP", "ERKKTR", "BF", "Cyan"])
def test_render_equals_reference_for_centres_on_the_subpixel_grid(seed, center, kind):
    r, cells = field(seed, center, on_grid=True)
    assert len(cells.ids) > 8
    light = light_pattern() if kind == "Cyan" else None
    ref = reference_render(r, kind, cells, reference_profiles(r, cells, center), light)
    img = r.render(kind, cells, r.stamps(cells, center), light=light, scale=2.5)
    assert img.dtype == np.float32
    np.testing.assert_allclose(img, 2.5 * ref, rtol=0, atol=2e-5 * 2.5 * np.abs(ref).max())


@pytest.mark.parametrize(("seed", "center"), FOVS)
def test_profiles_differ_from_exact_centres_only_by_the_quantisation(seed, center):
    r, cells = field(seed, center, on_grid=False)
    stamps = {s.index: s for s in r.stamps(cells, center)}
    worst = 0.0
    for i, nucleus, cell in reference_profiles(r, cells, center):
        if not cell.any():  # outside the image
            assert i not in stamps or not stamps[i].cell.any()
            continue
        s = stamps[i]
        for which, ref in (("nucleus", nucleus), ("cell", cell)):
            new = paste(SHAPE, s, which)
            worst = max(worst, np.abs(new - ref).max())
            # moving a profile by < 1/16 px leaves its area (what is measured) unchanged,
            # unless the image border cuts it
            if ref[0].any() or ref[-1].any() or ref[:, 0].any() or ref[:, -1].any():
                continue
            assert new.sum() == pytest.approx(ref.sum(), rel=1e-3)
    assert worst <= QUANTISATION + 1e-5
    assert worst > 0.25 * QUANTISATION  # the bound is tight: the comparison is not vacuous


@pytest.mark.parametrize("kind", ["miRFP", "ERKKTR", "BF", "Cyan"])
def test_render_is_within_the_quantisation_bound_of_the_reference(kind):
    seed, center = FOVS[0]
    r, cells = field(seed, center, on_grid=False)
    light = light_pattern() if kind == "Cyan" else None
    ref = reference_render(r, kind, cells, reference_profiles(r, cells, center), light)
    img = r.render(kind, cells, r.stamps(cells, center), light=light)
    # each pixel: per-cell amplitude (<= ~45 counts/ms) x profile error, ~1 cell per pixel
    assert np.abs(img - ref).max() <= 50 * QUANTISATION
    assert np.abs(img - ref).mean() < 0.01
    assert img.sum() == pytest.approx(ref.sum(), rel=1e-4)


def test_lit_fraction_and_ground_truth_follow_the_reference():
    seed, center = FOVS[1]
    r, cells = field(seed, center, on_grid=True)
    light = light_pattern()
    frac = r.lit_fraction(cells, r.stamps(cells, center), light)
    for i, _, cell in reference_profiles(r, cells, center):
        expected = (cell * light).sum() / max(cell.sum(), 1e-9)
        assert frac[i] == pytest.approx(expected, abs=1e-6)
    gt = r.ground_truth(center, 0.0)
    inside = r.cells(center, 0.0, margin_px=0)
    nuclei, whole = np.zeros(SHAPE, int), np.zeros(SHAPE, int)
    profiles = reference_profiles(r, inside, center)
    for i, _, cell in profiles:
        whole[cell > 0.5] = i + 1
    for i, nucleus, _ in profiles:
        nuclei[nucleus > 0.5] = i + 1
    assert nuclei.max() == gt.nuclei.max() == len(inside.ids) > 3
    # thresholds at 0.5 of profiles off by < 0.045: only the odd edge pixel may differ
    assert (gt.nuclei != nuclei).sum() < 0.02 * (nuclei > 0).sum()
    assert (gt.cells != whole).sum() < 0.02 * (whole > 0).sum()


def same_profile(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.base if a.base is not None else a) is (b.base if b.base is not None else b)


def test_stamps_come_from_a_bounded_cache_and_cannot_be_changed():
    r, cells = field(0, (0.0, 0.0), on_grid=False)
    first = r.stamps(cells, (0.0, 0.0))
    cached = len(r._cache)
    assert cached == len(first)
    again = r.stamps(cells, (0.0, 0.0))
    assert len(r._cache) == cached  # the second frame computed nothing
    for a, b in zip(first, again, strict=True):
        assert same_profile(a.nucleus, b.nucleus) and same_profile(a.cell, b.cell)
    with pytest.raises(ValueError, match="read-only"):
        first[0].nucleus[0, 0] = 1.0
    r._cache.size = 20
    for dx in np.linspace(0.1, 30.0, 7):  # new offsets for every cell: misses
        r.stamps(cells, (dx, 0.0))
    assert len(r._cache) == 20


# --------------------------------------------------------------------------------- camera
def world(seed: int = 0, shape=(256, 256)) -> SimWorld:
    w = SimWorld(
        SimSample(seed, SampleParams(), clock=lambda: 0.0),
        image_shape=shape,
        pixel_size_um=PIXEL_UM,
        dmd_shape=(600, 800),
        dmd_rotation_deg=1.0,
        dmd_scale=1.1,
        dmd_shift=(0.0, 0.0),
        seed=seed,
    )
    w.autoshutter = lambda: True
    return w


def test_normal_quantiles_are_a_unit_normal():
    q = NORMAL_QUANTILES.astype(float)
    assert len(q) == 2**16
    assert q.mean() == pytest.approx(0, abs=1e-6)
    assert q.std() == pytest.approx(1, rel=1e-6)
    assert np.all(np.diff(q) > 0)
    assert (np.abs(q) > 1.96).mean() == pytest.approx(0.05, abs=1e-3)
    assert 4.2 < q.max() < 4.4


@pytest.mark.parametrize("level", [0.0, 400.0])
def test_camera_noise_has_the_shot_and_read_noise_of_its_model(level):
    w = world(shape=(256, 240))  # not a multiple of the noise chunk
    expected = None if level == 0 else np.full(w.image_shape, level, np.float32)
    frames = np.stack([w._camera(expected) for _ in range(8)]).astype(float)
    sigma = np.sqrt(level + READ_NOISE**2)
    # astype(uint16) truncates: mean - 0.5, variance + 1/12
    assert frames.mean() == pytest.approx(level + CAMERA_OFFSET - 0.5, abs=0.05)
    assert frames.std() == pytest.approx(np.sqrt(sigma**2 + 1 / 12), rel=0.01)
    z = (frames - frames.mean()) / frames.std()
    assert (np.abs(z) > 2).mean() == pytest.approx(0.0455, abs=0.003)
    # independent from pixel to pixel and frame to frame
    assert abs(np.corrcoef(z[:, :, 1:].ravel(), z[:, :, :-1].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(z[1:].ravel(), z[:-1].ravel())[0, 1]) < 0.01


def test_camera_noise_depends_only_on_the_seed():
    a, b, c = world(5), world(5), world(6)
    fa, fb, fc = (w.snap(0.0) for w in (a, b, c))
    np.testing.assert_array_equal(fa, fb)
    assert not np.array_equal(fa, fc)
    assert fa.dtype == np.uint16


@pytest.mark.parametrize("kind", ["miRFP", "ERKKTR", "Cyan"])
def test_frames_average_to_the_reference_image(kind):
    w = world(3)
    w.optics.filter = kind
    exposure = 10.0
    light = None
    if kind == "Cyan":
        w.optics.dmd_image = np.zeros(w.dmd_shape, np.uint8)
        w.optics.dmd_image[200:400, 300:500] = 255
        light = w.light_in_camera()
    level = w.optics.levels[{"miRFP": "Red", "ERKKTR": "Green", "Cyan": "Cyan"}[kind]]
    r = w.renderer
    cells = r.cells((0.0, 0.0), 0.0, margin_px=30)
    frames = np.stack([w.snap(exposure) for _ in range(16)]).astype(float)
    cells = r.cells((0.0, 0.0), 0.0, margin_px=30)  # activity after the light, if any
    ref = reference_render(r, kind, cells, reference_profiles(r, cells, (0.0, 0.0)), light)
    ref = ref * level / 100 * exposure
    # astype(uint16) truncates: mean - 0.5, variance + 1/12
    sd = np.sqrt((ref + READ_NOISE**2 + 1 / 12) / len(frames))
    residual = (frames.mean(axis=0) - (ref + CAMERA_OFFSET - 0.5)) / sd
    assert abs(residual.mean()) < 0.05  # unbiased
    assert residual.std() == pytest.approx(1.0, abs=0.05)  # nothing but the noise


def test_defocused_frames_average_to_the_blurred_reference():
    w = world(4)
    w.optics.filter = "miRFP"
    w.z = 5.0  # 5 µm from focus: Gaussian blur of sigma 4 px
    exposure = 10.0
    frames = np.stack([w.snap(exposure) for _ in range(16)]).astype(float)
    r = w.renderer
    cells = r.cells((0.0, 0.0), 0.0, margin_px=30)
    ref = reference_render(r, "miRFP", cells, reference_profiles(r, cells, (0.0, 0.0)))
    ref = ndimage.gaussian_filter(ref * w.optics.levels["Red"] / 100 * exposure, 4.0)
    sd = np.sqrt((ref + READ_NOISE**2 + 1 / 12) / len(frames))
    residual = (frames.mean(axis=0) - (ref + CAMERA_OFFSET - 0.5)) / sd
    assert abs(residual.mean()) < 0.05
    assert residual.std() == pytest.approx(1.0, abs=0.05)
