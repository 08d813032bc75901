"""`calibrate_dmd`: find the camera->DMD affine by projecting spots and detecting them.

As in faro: ``n_points`` well-distributed DMD points, a disk of ``radius`` mirrors at each,
the spot detected in the camera, a RANSAC affine fit; too few inliers aborts and leaves the
DMD's affine unchanged.

The DMD may be much larger than what the camera sees of it (the simulated 800x600 DMD
against a 256x256 camera: a third of its width). A first, coarse pass therefore locates
the camera's view on the DMD with a few Gray-coded stripe patterns, so that the spots are
spread over the part of the DMD the camera sees instead of mostly falling outside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.utils import MsgGenerator
from numpy.typing import NDArray
from scipy import ndimage
from skimage.measure import ransac
from skimage.transform import AffineTransform

from ..devices import DMDPattern, LightSetting, Microscope, PatternedLight, apply_affine
from ..schema import Stream
from ._metadata import start_metadata

#: DMD pixels per stripe of the finest Gray-code pattern of the locating pass
LOCATE_CELL = 32
SMOOTH_SIGMA = 1.5
SPOT_SNR = 5.0  # a spot's smoothed peak must exceed the median by this many robust stds
LIGHT_SNR = 10.0  # all-on minus all-off must exceed the dark noise by this much
_MAD_TO_STD = 1.4826
_DRAWS_PER_CELL = 200


def _robust_std(values: NDArray) -> float:
    return float(_MAD_TO_STD * np.median(np.abs(values - np.median(values))))


def detect_spot(
    image: NDArray, *, half_window: int = 7, snr: float = SPOT_SNR
) -> tuple[float, float] | None:
    """Sub-pixel ``(x, y)`` of the brightest spot in ``image``, or None if none stands out.

    The image is smoothed (Gaussian, sigma 1.5); the spot is the intensity-weighted
    centroid, over a ``2 * half_window + 1`` window around the maximum, of the smoothed
    pixels minus the median (weights clipped at 0). A peak less than ``snr`` robust
    standard deviations (1.4826 MAD) above the median is noise: None.
    """
    smooth = ndimage.gaussian_filter(np.asarray(image, dtype=float), SMOOTH_SIGMA)
    background = float(np.median(smooth))
    noise = max(_robust_std(smooth), 1e-9)
    row, col = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    if smooth[row, col] - background < snr * noise:
        return None
    r0, c0 = max(row - half_window, 0), max(col - half_window, 0)
    window = smooth[r0 : row + half_window + 1, c0 : col + half_window + 1] - background
    weights = np.clip(window, 0, None)
    rr, cc = np.indices(weights.shape)
    total = weights.sum()
    return float((cc * weights).sum() / total + c0), float((rr * weights).sum() / total + r0)


def _disk(shape: tuple[int, int], xy: NDArray, radius: int) -> NDArray[np.uint8]:
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    inside = (cc - xy[0]) ** 2 + (rr - xy[1]) ** 2 <= radius**2
    return inside.astype(np.uint8) * 255


def _gray_patterns(shape: tuple[int, int]) -> list[tuple[int, int, NDArray[np.uint8]]]:
    """``(axis, bit, DMD image)`` of each Gray-code stripe pattern (axis 0 = x, 1 = y)."""
    h, w = shape
    out = []
    for axis, size in ((0, w), (1, h)):
        cells = np.arange(size) // LOCATE_CELL
        gray = cells ^ (cells >> 1)
        for bit in range(max(int(np.ceil(np.log2(max(cells[-1] + 1, 2)))), 1)):
            stripe = ((gray >> bit) & 1).astype(np.uint8) * 255
            image = np.broadcast_to(stripe if axis == 0 else stripe[:, None], shape)
            out.append((axis, bit, np.ascontiguousarray(image)))
    return out


def _fit_least_squares(cam_xy: NDArray, dmd_xy: NDArray, tolerance: float) -> tuple[NDArray, float]:
    """Camera->DMD affine by least squares, dropping points off by more than ``tolerance``.

    Returns the affine and the fraction of points it fits within ``tolerance``.
    """
    keep = np.ones(len(cam_xy), bool)
    design = np.column_stack([cam_xy, np.ones(len(cam_xy))])
    for _ in range(4):
        coef, *_ = np.linalg.lstsq(design[keep], dmd_xy[keep], rcond=None)
        residual = np.linalg.norm(design @ coef - dmd_xy, axis=1)
        new = residual < tolerance
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    return np.vstack([coef.T, [0.0, 0.0, 1.0]]), float(keep.mean())


def _decode_footprint(
    on: NDArray, off: NDArray, stripes: list[tuple[int, int, NDArray]]
) -> NDArray[np.float64]:
    """Coarse camera->DMD affine from the all-on, all-off and Gray-code stripe frames.

    Raises RuntimeError if the camera sees no DMD light or the patterns don't decode.
    """
    on_s, off_s = (ndimage.gaussian_filter(f.astype(float), 1.0) for f in (on, off))
    diff = on_s - off_s
    level = float(np.percentile(diff, 99.9))
    noise = max(_robust_std(off_s), 1e-9)
    lit = diff > level / 2
    if level < LIGHT_SNR * noise or lit.sum() < 50:
        raise RuntimeError(
            "calibrate_dmd found no spots: the camera sees no DMD light (all mirrors on "
            f"is only {level:.1f} counts above all off, dark noise {noise:.1f}); check the "
            "light power/exposure of the channel, the shutter and the focus"
        )
    threshold = (on_s + off_s) / 2
    codes = [np.zeros(on.shape, np.int64), np.zeros(on.shape, np.int64)]
    for axis, bit, frame in stripes:
        codes[axis] |= (ndimage.gaussian_filter(frame.astype(float), 1.0) > threshold) << bit
    cells = []
    for gray in codes:  # Gray -> binary
        value, shift = gray.copy(), 1
        while shift < 64:
            value ^= value >> shift
            shift *= 2
        cells.append(value)
    rows, cols = np.nonzero(lit)
    step = max(len(rows) // 20_000, 1)  # plenty for a 6-parameter fit
    rows, cols = rows[::step], cols[::step]
    dmd_xy = np.column_stack([cells[0][rows, cols], cells[1][rows, cols]])
    dmd_xy = (dmd_xy + 0.5) * LOCATE_CELL - 0.5
    affine, fitted = _fit_least_squares(np.column_stack([cols, rows]), dmd_xy, 1.5 * LOCATE_CELL)
    if fitted < 0.5 or abs(np.linalg.det(affine[:2, :2])) < 1e-3:
        raise RuntimeError(
            "calibrate_dmd could not locate the camera's view on the DMD: the stripe "
            f"patterns decode inconsistently ({fitted:.0%} of the lit pixels fit one affine, "
            f"determinant {np.linalg.det(affine[:2, :2]):.3g}), so no spots were projected; "
            "check that the DMD shows each pattern before the camera exposes, the light "
            "power/exposure and the focus, or pass locate=False"
        )
    return affine


def choose_points(
    n_points: int,
    dmd_shape: tuple[int, int],
    *,
    border: int,
    radius: int,
    seed: int = 0,
    camera_to_dmd: NDArray | None = None,
    camera_shape: tuple[int, int] | None = None,
    camera_margin: float = 0.0,
) -> NDArray[np.int64]:
    """``n_points`` well-distributed DMD points ``(x, y)`` (integer mirrors).

    The valid region is the DMD minus ``border`` mirrors on each side and, when
    ``camera_to_dmd`` and ``camera_shape`` are given, whose image falls inside the camera
    at least ``camera_margin`` pixels from its edges. Its bounding box is cut into
    ``ceil(sqrt(n_points))**2`` grid cells; each gets one seeded-random valid point; ``n``
    of them are kept, spread over the grid; random valid points fill up if cells had none.
    Raises RuntimeError if the region is empty.
    """
    rng = np.random.default_rng(seed)
    h, w = dmd_shape
    lo = np.array([border, border], float)
    hi = np.array([w - 1 - border, h - 1 - border], float)
    to_cam = None if camera_to_dmd is None else np.linalg.inv(camera_to_dmd)

    def valid(xy: NDArray) -> NDArray[np.bool_]:
        ok = np.all((xy >= lo) & (xy <= hi), axis=1)
        if to_cam is not None and camera_shape is not None:
            cam = apply_affine(to_cam, xy)
            ch, cw = camera_shape
            ok &= np.all(cam >= camera_margin, axis=1)
            ok &= (cam[:, 0] <= cw - 1 - camera_margin) & (cam[:, 1] <= ch - 1 - camera_margin)
        return ok

    lattice = np.stack(np.meshgrid(np.arange(lo[0], hi[0] + 1, 2), np.arange(lo[1], hi[1] + 1, 2)))
    lattice = lattice.reshape(2, -1).T
    inside = lattice[valid(lattice)]
    if len(inside) == 0:
        raise RuntimeError(
            "calibrate_dmd: no DMD mirror is both inside the border and seen by the camera; "
            "reduce border= or check the light path"
        )
    lo, hi = inside.min(axis=0), inside.max(axis=0)
    k = math.ceil(math.sqrt(n_points))
    xs, ys = np.linspace(lo[0], hi[0] + 1, k + 1), np.linspace(lo[1], hi[1] + 1, k + 1)
    points = []
    for j in range(k):
        for i in range(k):
            draws = rng.uniform((xs[i], ys[j]), (xs[i + 1], ys[j + 1]), (_DRAWS_PER_CELL, 2))
            draws = np.floor(draws)
            ok = valid(draws)
            if ok.any():
                points.append(draws[np.argmax(ok)])
    if len(points) > n_points:
        points = [
            points[i] for i in np.round(np.linspace(0, len(points) - 1, n_points)).astype(int)
        ]
    min_gap = 4 * radius
    for _ in range(100 * n_points):
        if len(points) >= n_points:
            break
        xy = np.floor(rng.uniform(lo, hi + 1, (1, 2)))
        far = all(np.linalg.norm(xy[0] - p) >= min_gap for p in points)
        if valid(xy)[0] and far:
            points.append(xy[0])
    return np.array(points, dtype=np.int64).reshape(-1, 2)


def _estimate(src: NDArray, dst: NDArray) -> AffineTransform | None:
    """Least-squares affine ``src -> dst`` with the skimage API of any version."""
    if hasattr(AffineTransform, "from_estimate"):  # scikit-image >= 0.26
        model = AffineTransform.from_estimate(src, dst)
        return model if model else None
    model = AffineTransform()
    return model if model.estimate(src, dst) else None


class _FitReport:
    """Readable with the calibration points and residuals, for the ``calibration`` stream."""

    parent = None

    def __init__(self, name: str) -> None:
        self.name = name
        self._values: dict[str, Any] = {}

    def update(self, **values: Any) -> None:
        # bool arrays become 0/1: tiled's SQL tables can't store lists of booleans
        self._values = {
            k: np.asarray(v, np.uint8) if np.asarray(v).dtype == bool else v
            for k, v in values.items()
        }

    def _key(self, field: str) -> str:
        return f"{self.name}-{field}"

    def read(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        return {self._key(k): {"value": v, "timestamp": now} for k, v in self._values.items()}

    def describe(self) -> dict[str, dict[str, Any]]:
        out = {}
        for k, v in self._values.items():
            arr = np.asarray(v)
            dtype = "array" if arr.ndim else ("integer" if arr.dtype.kind in "iu" else "number")
            out[self._key(k)] = {
                "source": "calibrate_dmd",
                "dtype": dtype,
                "shape": list(arr.shape),
                "dtype_numpy": arr.dtype.str,
            }
        return out


def _check(
    microscope: Microscope,
    dmd: PatternedLight | None,
    channel: Any,
    n_points: int,
    radius: int,
    border: int,
    min_inliers: int,
    residual_px: float,
) -> None:
    if dmd is None:
        others = sorted(microscope.patterned_lights)
        choose = f", or pass patterned_light= one of {others}" if others else ""
        raise ValueError(
            "microscope has no DMD (microscope.dmd is None): set the core's SLM device "
            f"before building the Microscope{choose}"
        )
    if n_points < 4:
        raise ValueError(
            f"n_points={n_points} is too few: an affine needs >= 3 points and RANSAC >= 4; "
            "use n_points >= 4 (9 or more recommended)"
        )
    if not 3 <= min_inliers <= n_points:
        raise ValueError(
            f"min_inliers={min_inliers} must be between 3 and n_points={n_points}: "
            "use e.g. min_inliers=4"
        )
    if radius < 1:
        raise ValueError(f"radius={radius} must be >= 1 mirror")
    if residual_px <= 0:
        raise ValueError(f"residual_px={residual_px:g} must be > 0 (camera pixels)")
    h, w = dmd.shape
    if border < 0 or min(h, w) - 2 * border <= 2 * radius:
        raise ValueError(
            f"border={border} and radius={radius} leave no room on the {w}x{h} DMD: "
            f"use 0 <= border < {(min(h, w) - 2 * radius) // 2} (mirrors on each side)"
        )
    microscope.channel.check_value(channel)


def calibrate_dmd(
    microscope: Microscope,
    *,
    channel: Any = None,
    n_points: int = 9,
    radius: int = 4,
    border: int = 50,
    min_inliers: int = 4,
    residual_px: float = 2.0,
    seed: int = 0,
    locate: bool = True,
    position: Sequence[float] | None = None,
    md: dict | None = None,
    patterned_light: PatternedLight | str | None = None,
) -> MsgGenerator[NDArray[np.float64]]:
    """Calibrate the DMD: project spots, detect them, fit and store the camera->DMD affine.

    One run. With ``locate`` the camera first images the DMD all on, all off and a few
    Gray-coded stripe patterns (stream ``locate``) to find which part of the DMD it sees.
    Then ``n_points`` well-distributed DMD points inside it (and ``border`` mirrors away
    from the DMD's edges) are lit one at a time as disks of ``radius`` mirrors and imaged
    (stream ``primary``); each spot is located with sub-pixel precision and the DMD->camera
    affine is fitted with RANSAC, refitted on the inliers and inverted. The camera->DMD
    affine is stored in the light's ``affine`` (``microscope.dmd.affine`` by default) and
    recorded (its ``calibration`` configuration and the fit residuals, stream
    ``calibration``). The DMD ends blank.

    Parameters
    ----------
    microscope : Microscope
        The microscope; it must have a DMD (or the ``patterned_light`` asked for).
    channel : LightSetting or object with .config/.exposure/.power, optional
        The channel that shows the DMD light on the camera; default
        ``LightSetting("Cyan", 25, 10)``.
    n_points : int, optional
        Number of spots (>= 4).
    radius : int, optional
        Radius of each spot in DMD mirrors.
    border : int, optional
        Mirrors left out on each side of the DMD.
    min_inliers : int, optional
        Fewest RANSAC inliers accepted.
    residual_px : float, optional
        RANSAC residual threshold in camera pixels.
    seed : int, optional
        Seed of the point positions and of RANSAC.
    locate : bool, optional
        Locate the camera's view on the DMD first (needed when the DMD is larger than
        the camera's view); without it the points spread over the whole DMD.
    position : (x, y), optional
        Stage position (µm) to calibrate at: the calibration light stimulates the cells
        in view, so choose a place that is no FOV of the experiment. Default: where the
        stage is. The position is recorded in the run (``position``) and in
        ``microscope.lit_positions``; `optogenetic_plan` warns about FOVs near it.
    md : dict, optional
        Metadata for the start document.
    patterned_light : PatternedLight or str, optional
        The patterned light to calibrate: a key of ``microscope.patterned_lights`` (e.g.
        ``"slm2"``) or the device; default ``microscope.dmd``. Its ``affine`` is set.

    Yields
    ------
    msg : Msg
        ``open_run``, ``stage``, channel and DMD ``set``, ``trigger``/``read`` of the
        camera and DMD per pattern, ``close_run``.

    Returns
    -------
    affine : numpy.ndarray
        The 3x3 camera->DMD affine (on ``(x, y)``), as stored in the light's ``affine``.

    Raises
    ------
    ValueError
        Bad parameters: raised by the call itself, before any message or document.
    RuntimeError
        Too few spots detected or too few inliers; the DMD's affine is left unchanged.

    """
    if channel is None:
        channel = LightSetting("Cyan", 25, 10)
    dmd = microscope.patterned_light(patterned_light)
    _check(microscope, dmd, channel, n_points, radius, border, min_inliers, residual_px)
    assert dmd is not None  # refused by _check
    if position is not None:
        try:
            x, y = (float(v) for v in position)
        except (TypeError, ValueError):
            raise ValueError(f"position={position!r} must be an (x, y) pair in µm") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"position={position!r} must be finite (x, y) µm")
        microscope.stage.check_value((x, y))
        position = (x, y)
    setting = LightSetting.coerce(channel)
    camera = microscope.camera
    # bluesky's keys (_metadata.py); one spot image per event, so time is the dimension
    _md = start_metadata(
        "calibrate_dmd",
        plan_args={
            "microscope": microscope,
            "channel": setting,
            "n_points": n_points,
            "radius": radius,
            "border": border,
            "min_inliers": min_inliers,
            "residual_px": residual_px,
            "seed": seed,
            "locate": locate,
            "position": position,
            "patterned_light": dmd.name,
        },
        detectors=[camera],
        motors=[] if position is None else [microscope.stage],
        md=md,
        n_points=n_points,
        radius=radius,
        channel={
            "config": setting.config,
            "exposure": setting.exposure,
            "power": setting.power,
            "group": setting.group,
        },
    )
    return _calibrate(
        microscope,
        dmd,
        setting,
        n_points,
        radius,
        border,
        min_inliers,
        residual_px,
        seed,
        locate,
        _md,
        position,
    )


def _calibrate(
    microscope: Microscope,
    dmd: PatternedLight,
    setting: LightSetting,
    n_points: int,
    radius: int,
    border: int,
    min_inliers: int,
    residual_px: float,
    seed: int,
    locate: bool,
    md: dict[str, Any],
    position: tuple[float, float] | None = None,
) -> MsgGenerator[NDArray[np.float64]]:
    camera = microscope.camera
    report = _FitReport(f"{dmd.name or 'dmd'}_fit")
    result: dict[str, NDArray[np.float64]] = {}

    def snap(pattern: NDArray[np.uint8] | bool, stream: str) -> MsgGenerator[NDArray]:
        yield from bps.checkpoint()  # a pause blanks the DMD: resume re-projects
        value = pattern if isinstance(pattern, bool) else DMDPattern(pattern)
        yield from bps.mv(dmd, value)
        yield from bps.trigger_and_read([camera, dmd], name=stream)
        frame = camera.frames.latest
        assert frame is not None
        return frame.image

    def inner() -> MsgGenerator[None]:
        if position is not None:
            yield from bps.mv(microscope.stage, position)
        x = yield from bps.rd(microscope.stage.x)
        y = yield from bps.rd(microscope.stage.y)
        # said before any light: this field of view is about to be stimulated
        microscope.lit_positions.append((float(x), float(y)))
        yield from bps.mv(microscope.channel, setting)
        coarse, scale = None, 1.0
        if locate:
            on = yield from snap(True, Stream.LOCATE)
            off = yield from snap(False, Stream.LOCATE)
            stripes = []
            for axis, bit, image in _gray_patterns(dmd.shape):
                stripes.append((axis, bit, (yield from snap(image, Stream.LOCATE))))
            coarse = _decode_footprint(on, off, stripes)
            scale = math.sqrt(abs(np.linalg.det(coarse[:2, :2])))  # mirrors per pixel
        radius_px = radius / scale
        points = choose_points(
            n_points,
            dmd.shape,
            border=border,
            radius=radius,
            seed=seed,
            camera_to_dmd=coarse,
            camera_shape=dmd.camera_shape,
            camera_margin=2 * radius_px + 4,
        )
        half_window = math.ceil(radius_px + 3)
        spots = np.full((len(points), 2), np.nan)
        for i, xy in enumerate(points):
            image = yield from snap(_disk(dmd.shape, xy, radius), Stream.PRIMARY)
            found = detect_spot(image, half_window=half_window)
            if found is not None:
                spots[i] = found
        yield from bps.mv(dmd, False)
        seen = ~np.isnan(spots[:, 0])
        hint = "check the light power/exposure of the channel, the shutter and the focus"
        if seen.sum() < max(min_inliers, 3):
            raise RuntimeError(
                f"calibrate_dmd found only {seen.sum()} of {len(points)} spots, "
                f"needs >= {max(min_inliers, 3)}: {hint}"
            )
        src, dst = points[seen].astype(float), spots[seen]
        model, inliers = ransac(
            (src, dst),
            AffineTransform,
            min_samples=3,
            residual_threshold=residual_px,
            max_trials=2000,
            rng=seed,
        )
        n_in = 0 if inliers is None else int(inliers.sum())
        if model is None or n_in < min_inliers:
            raise RuntimeError(
                f"calibrate_dmd found {seen.sum()} of {len(points)} spots but only {n_in} "
                f"agree on an affine (residual <= {residual_px:g} px), needs >= "
                f"{min_inliers}: {hint}"
            )
        fit = _estimate(src[inliers], dst[inliers])
        if fit is None:
            raise RuntimeError(f"calibrate_dmd: the {n_in} inlier spots are degenerate: {hint}")
        residuals = np.linalg.norm(apply_affine(fit.params, src) - dst, axis=1)
        camera_to_dmd = np.linalg.inv(fit.params)
        dmd.affine = camera_to_dmd
        all_inliers = np.zeros(len(points), bool)
        all_inliers[np.flatnonzero(seen)[inliers]] = True
        report.update(
            points_dmd=points.astype(float),
            spots_camera=spots,
            inliers=all_inliers,
            n_spots=int(seen.sum()),
            n_inliers=n_in,
            rms_px=float(np.sqrt(np.mean(residuals[inliers] ** 2))),
            max_px=float(residuals[inliers].max()),
        )
        yield from bps.trigger_and_read([dmd, report], name=Stream.CALIBRATION)
        result["affine"] = camera_to_dmd

    yield from bpp.stage_wrapper(bpp.run_wrapper(inner(), md=md), [camera, dmd])
    return result["affine"]
