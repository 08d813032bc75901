"""`SimWorld`: the sample seen through simulated optics, shared by every sim device."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, special

from ..devices import similarity, warp
from ._render import FieldRenderer, GroundTruth
from ._sample import SimSample

#: which light source excites each filter position
LIGHT_FOR_FILTER = {"BF": "White", "miRFP": "Red", "ERKKTR": "Green", "Cyan": "Cyan"}
CAMERA_OFFSET = 100.0
READ_NOISE = 3.0


def _normal_quantiles(bits: int) -> NDArray[np.float32]:
    """The ``2**bits`` equally likely values of a discretised standard normal.

    Quantiles at the middle of each ``2**-bits`` slice of probability, rescaled to unit
    variance. With 16 bits, neighbouring values differ by < 4e-5 near 0 (far below a count
    after scaling by the noise's std) and the tails stop at ±4.3 sigma (a normal exceeds
    that at ~4 of a 512² frame's pixels).
    """
    z = special.ndtri((np.arange(2**bits) + 0.5) / 2**bits)
    return (z / np.sqrt(np.mean(z**2))).astype(np.float32)


NORMAL_QUANTILES = _normal_quantiles(16)
NOISE_CHUNK = 1 << 16
"""Pixels the camera's noise is computed for at a time (a multiple of 4)."""


class SimulatedFault(RuntimeError):
    """Raised by a simulated device when an injected fault fires."""


@dataclass
class Faults:
    """Faults to inject, for reliability tests. Change them at any time."""

    camera_fail_frames: set[int] = field(default_factory=set)
    """Snap numbers (0-based, counting every snap) that fail once (transient)."""
    camera_fail_from: int | None = None
    """From this snap number on, every snap fails (persistent)."""
    stage_stuck: bool = False
    """The XY stage reports busy forever, so moves time out."""


@dataclass
class Optics:
    """State of the light path, written by the filter, LED, shutter and DMD devices."""

    filter: str = "BF"
    levels: dict[str, float] = field(
        default_factory=lambda: {"White": 50.0, "Red": 100.0, "Green": 100.0, "Cyan": 10.0}
    )
    shutter_open: bool = False
    dmd_image: NDArray[np.uint8] | None = None
    filter_sequence: list[str] = field(default_factory=list)
    """A started, hardware-triggered filter sequence: each exposure takes the next label
    (the filter wheel steps on the camera's trigger out, as TTL-sequenced light paths
    do); empty when none runs."""
    sequence_step: int = 0

    def next_exposure(self) -> None:
        """An exposure begins: a running filter sequence moves to its next label."""
        if self.filter_sequence:
            seq = self.filter_sequence
            self.filter = seq[self.sequence_step % len(seq)]  # a device repeats its sequence
            self.sequence_step += 1


@dataclass
class LightPath:
    """One more patterned light path: an SLM of its own geometry on the stimulation light.

    The sim's second SLM (``sim_microscope(second_slm=True)``): the Cyan source is split
    into two arms, each shaped by its own SLM and recombined before the objective, so
    stimulation light reaches the sample wherever either SLM lets it through (each arm at
    the source's full level: a simplification, the pattern is what is tested).
    """

    shape: tuple[int, int]
    """SLM ``(height, width)`` in pixels."""
    true_affine: NDArray[np.float64]
    """The real camera->SLM affine of this (misaligned) path."""
    grey: bool = True
    """Light ∝ pixel / 255 (an amplitude LCoS); False: any non-zero pixel is on (a DMD)."""
    image: NDArray[np.uint8] | None = None
    """What its SLM displays (None: nothing yet)."""


class SimWorld:
    """Everything the simulated devices share: sample, optics, stage, faults, DMD geometry.

    The camera->DMD affine of the real (misaligned) projector is `true_affine`; tests and
    benchmarks compare calibrations against it.
    """

    def __init__(
        self,
        sample: SimSample,
        *,
        image_shape: tuple[int, int],
        pixel_size_um: float,
        dmd_shape: tuple[int, int],
        dmd_rotation_deg: float,
        dmd_scale: float,
        dmd_shift: tuple[float, float],
        seed: int,
    ) -> None:
        self.sample = sample
        self.renderer = FieldRenderer(sample, image_shape, pixel_size_um)
        self.optics = Optics()
        self.faults = Faults()
        self.dmd_shape = dmd_shape
        h, w = image_shape
        dh, dw = dmd_shape
        self.true_affine = similarity(
            rotation_deg=dmd_rotation_deg,
            scale=dmd_scale,
            src_center=((w - 1) / 2, (h - 1) / 2),
            dst_center=((dw - 1) / 2, (dh - 1) / 2),
            shift=dmd_shift,
        )
        self.xy = np.zeros(2)
        self.z = 0.0
        self.focus_z = 0.0
        self.autoshutter = lambda: True
        self.snaps = 0
        self.recorded: list[NDArray[np.uint16]] | None = None
        self.unsteady: list[int] = []
        self._rng = np.random.default_rng([seed, 1])
        self._lock = threading.Lock()
        self.light_paths: list[LightPath] = []
        """Patterned light paths besides the DMD's (`add_light_path`)."""
        # Keyed by the image objects themselves (not id(): a freed image's id can be reused).
        self._light_cache: tuple[tuple[Any, ...], NDArray[np.float64]] | None = None
        self._path_cache: dict[int, tuple[NDArray[Any], NDArray[np.float64]]] = {}
        # scratch for rendering and noise, reused by every frame (under _lock): fresh
        # frame-sized arrays cost page faults, and pass through the cache once more
        self._expected = np.empty(image_shape, np.float32)
        self._noise = np.empty(NOISE_CHUNK, np.float32)
        self._std = np.empty(NOISE_CHUNK, np.float32)
        self._index = np.empty(NOISE_CHUNK, np.intp)

    @property
    def image_shape(self) -> tuple[int, int]:
        """Camera image ``(height, width)``."""
        return self.renderer.shape

    def record_frames(self, on: bool = True) -> None:
        """Keep a copy of every frame the camera produces in `recorded` (for tests).

        Also `unsteady`: the snaps (their index) during which the light path (filter, LED
        levels, a pattern shown) or the stage changed: a frame must never see either move.
        """
        self.recorded = [] if on else None
        self.unsteady: list[int] = []

    def _light_state(self) -> tuple[Any, ...]:
        """What shapes an exposure: stage, light path (patterns compared by identity)."""
        o = self.optics
        where = (float(self.xy[0]), float(self.xy[1]), float(self.z))
        return (where, o.filter, dict(o.levels), o.dmd_image, *(p.image for p in self.light_paths))

    def _same_light(self, a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
        return a[:3] == b[:3] and all(x is y for x, y in zip(a[3:], b[3:], strict=True))

    def add_light_path(
        self,
        shape: tuple[int, int],
        *,
        rotation_deg: float,
        scale: float,
        shift: tuple[float, float],
        grey: bool = True,
    ) -> LightPath:
        """A second SLM's light path, misaligned like the DMD's (see `LightPath`)."""
        h, w = self.image_shape
        sh, sw = shape
        affine = similarity(
            rotation_deg=rotation_deg,
            scale=scale,
            src_center=((w - 1) / 2, (h - 1) / 2),
            dst_center=((sw - 1) / 2, (sh - 1) / 2),
            shift=shift,
        )
        path = LightPath((int(sh), int(sw)), affine, grey)
        self.light_paths.append(path)
        return path

    def light_in_camera(self) -> NDArray[np.float64]:
        """Where the displayed patterns land, in camera pixels (0..1).

        The DMD's and those of the other `light_paths`: lit where any lets light through.
        """
        images = (self.optics.dmd_image, *(path.image for path in self.light_paths))
        cached = self._light_cache
        if cached is not None and all(a is b for a, b in zip(cached[0], images, strict=True)):
            return cached[1]
        light = self._path_light(0, self.optics.dmd_image, self.true_affine, grey=False)
        for i, path in enumerate(self.light_paths, start=1):
            if path.image is not None:
                other = self._path_light(i, path.image, path.true_affine, grey=path.grey)
                light = np.maximum(light, other)
        self._light_cache = (images, light)
        return light

    def _path_light(
        self, key: int, image: NDArray[Any] | None, affine: NDArray[np.float64], *, grey: bool
    ) -> NDArray[np.float64]:
        """One SLM's displayed ``image`` in camera pixels (0..1), cached per image."""
        if image is None:
            return np.zeros(self.image_shape)
        cached = self._path_cache.get(key)
        if cached is None or cached[0] is not image:
            to_cam = np.linalg.inv(affine)
            if grey:
                lit = warp(image.astype(np.float64) / 255.0, to_cam, self.image_shape)
            else:
                lit = warp((image > 0).view(np.uint8), to_cam, self.image_shape).astype(float)
            cached = self._path_cache[key] = (image, lit)
        return cached[1]

    def ground_truth(self) -> GroundTruth:
        """The cells in the current field of view, now."""
        return self.renderer.ground_truth(tuple(self.xy), self.sample.now())

    def snap(self, exposure_ms: float) -> NDArray[np.uint16]:
        """Expose for ``exposure_ms`` and return the frame; deliver stim light if on."""
        start = time.perf_counter()
        with self._lock:
            n = self.snaps
            self.snaps += 1
            f = self.faults
            if n in f.camera_fail_frames or (
                f.camera_fail_from is not None and n >= f.camera_fail_from
            ):
                f.camera_fail_frames.discard(n)
                raise SimulatedFault(f"simulated camera failure at frame {n}")
            self.optics.next_exposure()
            light = self._light_state() if self.recorded is not None else None
            frame = self._expose(exposure_ms)
        if self.recorded is not None:
            self.recorded.append(frame.copy())
        remaining = exposure_ms / 1000.0 - (time.perf_counter() - start)
        if remaining > 0:
            time.sleep(remaining)
        if light is not None and not self._same_light(light, self._light_state()):
            self.unsteady.append(n)
        return frame

    def _expose(self, exposure_ms: float) -> NDArray[np.uint16]:
        kind = self.optics.filter
        level = self.optics.levels.get(LIGHT_FOR_FILTER.get(kind, ""), 0.0)
        lit = (self.optics.shutter_open or self.autoshutter()) and level > 0
        center = (float(self.xy[0]), float(self.xy[1]))
        r = self.renderer
        cells = r.cells(center, self.sample.now(), margin_px=30)
        stamps = r.stamps(cells, center)
        light = self.light_in_camera() if kind == "Cyan" else None
        if lit and light is not None:
            frac = r.lit_fraction(cells, stamps, light)
            self.sample.deliver_light(cells.ids, frac, level / 100.0, exposure_ms / 1000.0)
        if not lit:
            return self._camera(None)
        expected = r.render(
            kind, cells, stamps, light=light, scale=level / 100.0 * exposure_ms, out=self._expected
        )
        sigma = 0.8 * abs(self.z - self.focus_z)
        if sigma > 0.3:
            expected = ndimage.gaussian_filter(expected, sigma)
        return self._camera(expected)

    def _camera(self, expected: NDArray[np.float32] | None) -> NDArray[np.uint16]:
        """The camera's reading of ``expected`` photons per pixel (``None``: a dark frame).

        Shot + read noise, a Gaussian approximation of Poisson (exact enough above ~10
        counts, which every lit pixel is). The standard normal values are 16 random bits
        per pixel looked up in `NORMAL_QUANTILES`: ~0.3 ms per 512² frame where
        ``Generator.standard_normal`` took ~2 ms, a third of the camera's time (decision
        0047). Done in float32, in place, a chunk of pixels at a time: the work stays in
        the CPU cache and needs no frame-sized temporaries. Deterministic for a seed.
        """
        h, w = self.image_shape
        size = h * w
        frame = np.empty(size, np.uint16)
        flat = None if expected is None else np.ascontiguousarray(expected).reshape(-1)
        raw = self._rng.bit_generator.random_raw
        for start in range(0, size, NOISE_CHUNK):
            n = min(NOISE_CHUNK, size - start)
            z, index, std = self._noise[:n], self._index[:n], self._std[:n]
            np.copyto(index, raw(-(-n // 4)).view(np.uint16)[:n])
            NORMAL_QUANTILES.take(index, out=z, mode="clip")  # "clip": in range, no checks
            if flat is None:
                z *= READ_NOISE
            else:
                e = flat[start : start + n]
                np.add(e, READ_NOISE**2, out=std)
                z *= np.sqrt(std, out=std)
                z += e
            z += CAMERA_OFFSET
            np.clip(z, 0, 65535, out=z)
            np.copyto(frame[start : start + n], z, casting="unsafe")
        return frame.reshape(h, w)
