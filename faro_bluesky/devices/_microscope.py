"""`Microscope`: the device tree of one pymmcore-plus core."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping
from pathlib import Path

from bluesky.run_engine import call_in_bluesky_event_loop, get_bluesky_event_loop
from numpy.typing import ArrayLike
from ophyd_async.core import (
    Device,
    PathProvider,
    StaticPathProvider,
    UUIDFilenameProvider,
)
from pymmcore_plus import CMMCorePlus

from ._camera import Camera
from ._channel import ChannelPresets
from ._dmd import DMD
from ._patterned import PatternedLight
from ._stage import Focus, Limits, XYStage
from ._worker import CoreWorker

logger = logging.getLogger(__name__)
_OPEN: weakref.WeakSet[Microscope] = weakref.WeakSet()  # built and not closed


def close_open_microscopes() -> None:
    """Close every microscope still open: at interpreter exit, before the cores go.

    A microscope left open keeps its devices' callbacks on ``core.events``; a core
    dismantled during the interpreter's finalization then calls into them and the process
    aborts after a finished run ("terminate called without an active exception", ~1 exit
    in 6-12 of the burst Ctrl-C script; 0 in 30 once the script closed its microscope).
    """
    for microscope in list(_OPEN):
        try:
            microscope.close()
        except Exception:  # best effort at exit
            logger.debug("could not close %r at exit", microscope, exc_info=True)


DEFAULT_DATA_DIR = Path("faro-data") / "data"  # = Catalog.local("faro-data").data_dir


class Microscope:
    """Stage, focus, camera, channel presets and patterned lights (DMDs, SLMs) of one core.

    Build it with `Microscope.from_core` (real hardware: a core loaded from a
    Micro-Manager config) or `faro_bluesky.sim.sim_microscope`. The members are ordinary
    ophyd-async devices usable in any bluesky plan; ``core`` is the core itself.

    Patterned lights are in `patterned_lights` by key: ``"dmd"`` (``scope.dmd``, the
    default one plans use) is the core's current SLM device, if any; ``slms`` adds others
    of the core, and `add_patterned_light` any device satisfying `PatternedLight`.

    The composite is a plain container, not an ophyd-async ``Device``: ophyd-async
    reserves the attribute ``stage`` (the Stageable verb), and users expect
    ``scope.stage``. Device names are ``stage``, ``camera``, ... or ``<name>-stage``, ...
    when a ``name`` is given (for several microscopes in one session).
    """

    def __init__(
        self,
        core: CMMCorePlus,
        *,
        path_provider: PathProvider,
        channel_group: str | None = None,
        power_properties: Mapping[str, tuple[str, str]] | None = None,
        stage_limits: tuple[Limits, Limits] | None = None,
        focus_limits: Limits | None = None,
        dmd_affine: ArrayLike | None = None,
        pixel_size_um: float | None = None,
        slms: Mapping[str, str] | None = None,
        name: str = "",
    ) -> None:
        self.core = core
        self.name = name
        self.worker = CoreWorker.for_core(core)
        _OPEN.add(self)
        prefix = f"{name}-" if name else ""
        self.stage = XYStage(core, limits=stage_limits, name=f"{prefix}stage")
        self.focus = Focus(core, limits=focus_limits, name=f"{prefix}focus")
        self.camera = Camera(
            core, path_provider, pixel_size_um=pixel_size_um, name=f"{prefix}camera"
        )
        self.channel = ChannelPresets(
            core, group=channel_group, power_properties=power_properties, name=f"{prefix}channel"
        )
        self.patterned_lights: dict[str, PatternedLight] = {}
        """Patterned-light devices by key; ``"dmd"`` is the default (``scope.dmd``)."""
        if core.getSLMDevice() and "dmd" not in (slms or {}):
            self.patterned_lights["dmd"] = DMD(core, affine=dmd_affine, name=f"{prefix}dmd")
        for key, label in (slms or {}).items():
            affine = dmd_affine if key == "dmd" else None
            self.add_patterned_light(
                key, DMD(core, label=label, affine=affine, name=f"{prefix}{key}")
            )
        self.lit_positions: list[tuple[float, float]] = []
        """Stage positions (µm) whose field of view ``calibrate_dmd`` lit: cells there have
        been stimulated, and experiments warn about FOVs near them."""

    @property
    def dmd(self) -> PatternedLight | None:
        """The default patterned light (key ``"dmd"``), or None: what plans use unless told."""
        return self.patterned_lights.get("dmd")

    @dmd.setter
    def dmd(self, light: PatternedLight | None) -> None:
        if light is None:
            self.patterned_lights.pop("dmd", None)
        else:
            self.patterned_lights.pop("dmd", None)
            self.add_patterned_light("dmd", light)

    def add_patterned_light(self, key: str, light: PatternedLight) -> None:
        """Carry ``light`` as ``patterned_lights[key]`` (``"dmd"``: the default one).

        It is connected with the other devices (`connect`); added after, connect it
        yourself (``scope.connect_in_bluesky_loop()`` connects only what is not yet).
        """
        if not isinstance(key, str) or not key:
            raise ValueError(f"patterned light key {key!r} must be a non-empty string")
        if key in self.patterned_lights:
            raise ValueError(
                f"the microscope already has a patterned light {key!r}: choose another key"
            )
        if not isinstance(light, PatternedLight):
            raise TypeError(
                f"{light!r} is not a PatternedLight (faro_bluesky.devices.PatternedLight): "
                "use a DMD(core, label=<SLM device>), or a device with camera_shape, "
                "is_calibrated, check_value, set and blank"
            )
        self.patterned_lights[key] = light

    def patterned_light(self, which: str | PatternedLight | None = None) -> PatternedLight | None:
        """The patterned light ``which`` names (None: the default, `dmd`, maybe None).

        ``which`` is a key of `patterned_lights` or a device (returned as is, once
        checked). Raises ValueError for an unknown key and TypeError for a device that is not a
        `PatternedLight`, each saying what the microscope has.
        """
        if which is None:
            return self.dmd
        if isinstance(which, str):
            if which not in self.patterned_lights:
                raise ValueError(
                    f"patterned_light={which!r} is not one of the microscope's patterned "
                    f"lights {sorted(self.patterned_lights)}: pass one of those keys, or a "
                    "device (e.g. a DMD)"
                )
            return self.patterned_lights[which]
        if not isinstance(which, PatternedLight):
            raise TypeError(
                f"patterned_light={which!r} is not a PatternedLight: pass a key of "
                f"scope.patterned_lights {sorted(self.patterned_lights)} or a device such as "
                "a DMD"
            )
        return which

    def field_of_view_um(self) -> tuple[float, float]:
        """Width and height of the camera's field of view in the sample (µm)."""
        pixel = self.camera.pixel_size_um or self.core.getPixelSizeUm() or 1.0
        return self.core.getImageWidth() * pixel, self.core.getImageHeight() * pixel

    def devices(self) -> list[Device]:
        """All member devices: stage, focus, camera, channel, then the patterned lights."""
        lights = [d for d in self.patterned_lights.values() if isinstance(d, Device)]
        return [self.stage, self.focus, self.camera, self.channel, *lights]

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect every member device: stage, focus and channel read the core then."""
        await asyncio.gather(*(d.connect(timeout=timeout) for d in self.devices()))

    @classmethod
    def from_core(
        cls,
        core: CMMCorePlus,
        *,
        data_dir: str | Path = DEFAULT_DATA_DIR,
        channel_group: str | None = None,
        power_properties: Mapping[str, tuple[str, str]] | None = None,
        stage_limits: tuple[Limits, Limits] | None = None,
        focus_limits: Limits | None = None,
        dmd_affine: ArrayLike | None = None,
        pixel_size_um: float | None = None,
        slms: Mapping[str, str] | None = None,
        name: str = "",
        connect: bool = True,
    ) -> Microscope:
        """Build the devices over an already loaded core (e.g. real hardware).

        :param data_dir: directory for the camera's zarr stores (one per run).
        :param power_properties: ``{preset: (device, property)}`` for light power.
        :param stage_limits: ``((xmin, xmax), (ymin, ymax))`` in µm, refused beyond.
        :param focus_limits: ``(zmin, zmax)`` in µm.
        :param dmd_affine: camera->DMD calibration, if already known.
        :param pixel_size_um: camera pixel size in the sample; default the core's.
        :param slms: more SLM devices of the core, ``{key: device label}``, each as a `DMD`
            (uncalibrated) in ``patterned_lights[key]`` named ``key``; key ``"dmd"``
            replaces the default (the core's current SLM device) and takes ``dmd_affine``.
        :param name: prefix of the device names (default none: ``camera``, ``stage``...).
        :param connect: connect the devices on the RunEngine's event loop (a RunEngine
            must exist).
        """
        provider = StaticPathProvider(UUIDFilenameProvider(), Path(data_dir).absolute())
        scope = cls(
            core,
            path_provider=provider,
            channel_group=channel_group,
            power_properties=power_properties,
            stage_limits=stage_limits,
            focus_limits=focus_limits,
            dmd_affine=dmd_affine,
            pixel_size_um=pixel_size_um,
            slms=slms,
            name=name,
        )
        if connect:
            scope.connect_in_bluesky_loop()
        return scope

    def connect_in_bluesky_loop(self, timeout: float = 10.0) -> None:
        """Connect all devices on the RunEngine's loop (create the RunEngine first)."""
        if get_bluesky_event_loop() is None:
            raise RuntimeError(
                "no RunEngine event loop: create the RunEngine before the microscope, "
                "e.g. RE = RunEngine(); scope = sim_microscope()"
            )
        call_in_bluesky_event_loop(self.connect(timeout=timeout))

    def close(self) -> None:
        """Unsubscribe the devices from ``core.events``, stop the core's worker thread.

        The core itself is left to its owner (it may outlive this microscope, e.g. in
        napari-micromanager), so nothing of ours may stay connected to it.
        """
        _OPEN.discard(self)
        for device in (self.stage, self.focus, self.channel):
            device.close()
        self.worker.shutdown()
