"""`SimWorld`: the sample seen through simulated optics, shared by every sim device."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..devices._affine import similarity, warp
from ._render import FieldRenderer, GroundTruth
from ._sample import SimSample

#: which light source excites each filter position
LIGHT_FOR_FILTER = {"BF": "White", "miRFP": "Red", "ERKKTR": "Green", "Cyan": "Cyan"}
CAMERA_OFFSET = 100.0
READ_NOISE = 3.0


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
        self._rng = np.random.default_rng([seed, 1])
        self._lock = threading.Lock()
        # Keyed by the image object itself (not id(): a freed image's id can be reused).
        self._light_cache: tuple[NDArray[Any], NDArray[np.float64]] | None = None

    @property
    def image_shape(self) -> tuple[int, int]:
        """Camera image ``(height, width)``."""
        return self.renderer.shape

    def record_frames(self, on: bool = True) -> None:
        """Keep a copy of every frame the camera produces in `recorded` (for tests)."""
        self.recorded = [] if on else None

    def light_in_camera(self) -> NDArray[np.float64]:
        """Where the displayed DMD pattern lands, in camera pixels (0..1)."""
        image = self.optics.dmd_image
        if image is None:
            return np.zeros(self.image_shape)
        if self._light_cache is None or self._light_cache[0] is not image:
            dmd_to_cam = np.linalg.inv(self.true_affine)
            lit = warp((image > 0).view(np.uint8), dmd_to_cam, self.image_shape)
            self._light_cache = (image, lit.astype(float))
        return self._light_cache[1]

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
            frame = self._expose(exposure_ms)
        if self.recorded is not None:
            self.recorded.append(frame.copy())
        remaining = exposure_ms / 1000.0 - (time.perf_counter() - start)
        if remaining > 0:
            time.sleep(remaining)
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
        expected = np.zeros(self.image_shape)
        if lit:
            expected = r.render(kind, cells, stamps, light=light) * (level / 100.0 * exposure_ms)
            sigma = 0.8 * abs(self.z - self.focus_z)
            if sigma > 0.3:
                expected = ndimage.gaussian_filter(expected, sigma)
        # shot + read noise, Gaussian approximation of Poisson (3x faster, exact enough
        # above ~10 counts, which every lit pixel is)
        noise = self._rng.standard_normal(self.image_shape, dtype=np.float32)
        noise *= np.sqrt(expected.astype(np.float32) + READ_NOISE**2)
        noise += expected + CAMERA_OFFSET
        return np.clip(noise, 0, 65535).astype(np.uint16)
