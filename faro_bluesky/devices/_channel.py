"""Channel (light) presets: a config-group preset, exposure and light power as one move."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bluesky.protocols import Movable
from ophyd_async.core import (
    AsyncStatus,
    StandardReadableFormat,
    soft_signal_r_and_setter,
)
from pymmcore_plus import CMMCorePlus

from ._camera import check_exposure, exposure_limits
from ._core_device import CoreDevice, Handler

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LightSetting:
    """What `ChannelPresets.set` applies: a preset and optionally exposure and power."""

    config: str
    """Name of the preset in the channel config group (e.g. ``"miRFP"``)."""
    exposure: float | None = None
    """Camera exposure in ms; None leaves it as it is."""
    power: float | None = None
    """Light-source level (device units, usually 0-100); None leaves it as it is."""
    group: str | None = None
    """Config group; None means the channel group of the `ChannelPresets` device."""
    sequenced: bool = False
    """Applied by a running hardware sequence (a burst switching channels inside the
    camera sequence): the device records the preset for the frame's event and changes
    nothing."""

    @classmethod
    def coerce(cls, value: Any) -> LightSetting:
        """Accept a preset name, a mapping, a tuple or any object with ``config``."""
        if isinstance(value, LightSetting):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            return cls(**{k: value.get(k) for k in ("config", "exposure", "power", "group")})
        if isinstance(value, tuple) and value and isinstance(value[0], str):
            return cls(*value)
        if hasattr(value, "config"):
            return cls(
                value.config,
                getattr(value, "exposure", None),
                getattr(value, "power", None),
                getattr(value, "group", None),
            )
        raise TypeError(
            f"channel setting must be a preset name, (config, exposure, power), a mapping "
            f"or an object with .config, got {value!r}"
        )


class ChannelPresets(CoreDevice, Movable[Any]):
    """Selects channel presets: ``bps.mv(scope.channel, LightSetting("Cyan", 100, 10))``.

    Everything is checked before anything is changed: the preset must exist, the exposure
    must be inside the camera's limits, the power must map to a device property (see
    ``power_properties``) and be inside its limits.

    Presets and limits are read in ``connect()`` (and again by `refresh`). ``config`` and
    ``power`` then follow the core's events: a preset set by another client
    (``core.setConfig``, ``configSet``) or a change of a property of the group's devices
    or of a power property (``propertyChanged``) updates them. Connected with
    ``mock=True`` the device never calls the core: no preset or limit is known, so only
    the form of a setting is checked, and a move sets the signals.

    :param core: the core.
    :param group: the channel config group; default the core's channel group.
    :param power_properties: ``{preset: (device, property)}`` of the light level each
        preset's power sets. Power for a preset not listed here is refused.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        *,
        group: str | None = None,
        power_properties: Mapping[str, tuple[str, str]] | None = None,
        name: str = "",
    ) -> None:
        self.group = group
        self.power_properties = dict(power_properties or {})
        self._limits: dict[str, Any] | None = None
        self._changes = 0  # changes seen (events, own sets): a read started before is stale
        self._known_config: str | None = None  # preset named by the last configSet event
        self._reader: asyncio.Task[None] | None = None
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.config, self._set_config = soft_signal_r_and_setter(str)
        with self.add_children_as_readables():
            self.power, self._set_power = soft_signal_r_and_setter(float)
        super().__init__(core, name=name)

    async def _read_core(self) -> None:
        self._limits = await self._worker.run(self._read_limits)
        self._show(*await self._worker.run(self._read_state))

    def refresh(self) -> None:
        """Re-read presets and limits from the core (after changing its configuration).

        They are cached so that `check_value` needs no core call and can run anywhere.
        Nothing to read when connected with ``mock=True``.
        """
        if not self.mocked:
            self._limits = self._worker.call(self._read_limits)

    def _read_limits(self) -> dict[str, Any]:
        """Run on the core thread: presets, the devices they set, exposure/power limits."""
        core = self._worker.core
        self.group = self.group or core.getChannelGroup()
        if not self.group:
            raise ValueError("no channel group: pass group= or set the core's channel group")
        power = {}
        for config, (dev, prop) in self.power_properties.items():
            if core.hasPropertyLimits(dev, prop):
                power[config] = (
                    core.getPropertyLowerLimit(dev, prop),
                    core.getPropertyUpperLimit(dev, prop),
                )
        groups = core.getAvailableConfigGroups()
        devices = set()
        if self.group in groups:
            for preset in core.getAvailableConfigs(self.group):
                devices.update(dev for dev, _prop, _value in core.getConfigData(self.group, preset))
        return {
            "presets": {g: tuple(core.getAvailableConfigs(g)) for g in groups},
            "exposure": exposure_limits(core, core.getCameraDevice()),
            "power": power,
            "devices": frozenset(devices),
        }

    def _read_state(self, config: str | None = None) -> tuple[str, float]:
        """Run on the core thread: the current preset (unless known) and its light power.

        The power is NaN for a preset without a power property.
        """
        core = self._worker.core
        if config is None:
            config = core.getCurrentConfig(self.group)
        prop = self.power_properties.get(config)
        return config, float(core.getProperty(*prop)) if prop else math.nan

    def _show(self, config: str, power: float) -> None:
        self._set_config(config)
        self._set_power(power)

    def _core_handlers(self) -> dict[str, Handler]:
        return {"configSet": self._on_config_set, "propertyChanged": self._on_property_changed}

    def _core_filters(self) -> dict[str, Callable[..., bool]]:
        return {"propertyChanged": self._concerns}

    def _concerns(self, device: str, prop: str, _value: Any = None) -> bool:
        """Whether a property change may change the preset or power (any thread).

        Not the shutter a snap opens and closes twice per frame, unless a preset sets it.
        """
        limits = self._limits
        if limits is None:
            return False
        return (device, prop) in self.power_properties.values() or device in limits["devices"]

    def _on_config_set(self, group: str, config: str) -> None:
        """Another client set a preset (runs on the device's loop)."""
        if group == self.group:
            self._set_config(config)
            # Only its power is read: the preset is the one just set. (UniMMCore reports
            # configSet before it applies the settings of Python devices; asking the core
            # for the current preset now could catch it half-way.)
            self._reread(config)

    def _on_property_changed(self, device: str, prop: str, value: Any) -> None:
        """Another client changed a property (runs on the device's loop)."""
        if self._concerns(device, prop):
            self._reread()

    def _reread(self, config: str | None = None) -> None:
        """Re-read preset (unless ``config`` is known) and power, once for a burst of events.

        A property event tells what changed, not the resulting preset (several presets may
        share a device), so the core is asked.
        """
        self._changes += 1
        self._known_config = config
        if not self._events.connected:
            return  # closed (an event relayed before it was): nothing reads any more
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_until_current())

    async def _read_until_current(self) -> None:
        """Read until a read starts after the last change and none comes during it.

        A read that a change overtook (another client's, or our own `set`) may predate it,
        so its result is dropped rather than shown over a newer value.
        """
        done = None
        while done != self._changes:
            started, known = self._changes, self._known_config
            try:
                state = await self._worker.run(self._read_state, known)
            except Exception:  # e.g. the worker was shut down with the microscope
                logger.debug("%s: could not re-read the preset", self.name, exc_info=True)
                return
            if started == self._changes:
                self._show(*state)
            done = started

    def presets(self, group: str | None = None) -> tuple[str, ...]:
        """Presets of ``group`` (default: the channel group); none before ``connect()``."""
        if self._limits is None:
            return ()
        return self._limits["presets"].get(group or self.group, ())

    def check_value(self, value: Any) -> None:
        """Raise ValueError/TypeError naming the problem and the fix; changes nothing."""
        s = LightSetting.coerce(value)
        field = self.name or "channel"
        if self._limits is None:
            self._require_connected()  # raises unless mocked
            self._check_power_mapped(field, s)
            return
        group = s.group or self.group
        groups = self._limits["presets"]
        if group not in groups:
            raise ValueError(
                f"{field}.group={group!r} is not a config group; available groups: {list(groups)}"
            )
        if s.config not in groups[group]:
            raise ValueError(
                f"{field}.config={s.config!r} is not a preset of group {group!r}; "
                f"use one of {list(groups[group])}"
            )
        if s.exposure is not None:
            check_exposure(f"{field}.exposure", float(s.exposure), self._limits["exposure"])
        if s.power is not None:
            prop = self._check_power_mapped(field, s)
            limits = self._limits["power"].get(s.config)
            if limits is not None and not limits[0] <= s.power <= limits[1]:
                raise ValueError(
                    f"{field}.power={s.power:g} for preset {s.config!r} is outside "
                    f"{prop[0]}.{prop[1]} limits [{limits[0]:g}, {limits[1]:g}]: "
                    "choose a power inside them"
                )

    def _check_power_mapped(self, field: str, s: LightSetting) -> tuple[str, str] | None:
        """The power property of ``s.config``; raise if a power is given but none maps."""
        prop = self.power_properties.get(s.config)
        if s.power is not None and prop is None:
            raise ValueError(
                f"{field}.power={s.power:g} for preset {s.config!r}, which has no power "
                f"property: pass power_properties={{{s.config!r}: (device, property)}} "
                "or leave power=None"
            )
        return prop

    def _apply(self, s: LightSetting) -> tuple[str, float]:
        """Run on the core thread: set preset, exposure and power."""
        core = self._worker.core
        group = s.group or self.group
        core.setConfig(group, s.config)
        core.waitForConfig(group, s.config)
        if s.exposure is not None:
            core.setExposure(float(s.exposure))
        power = float("nan")
        if prop := self.power_properties.get(s.config):
            if s.power is not None:
                core.setProperty(*prop, s.power)
            power = float(core.getProperty(*prop))
        return s.config, power

    def set(self, value: Any) -> AsyncStatus:
        """Apply a preset, and its exposure and power if given, in one move.

        Bad settings raise here, before anything is changed.
        """
        self.check_value(value)
        return AsyncStatus(self._set(LightSetting.coerce(value)), name=self.name)

    async def _set(self, setting: LightSetting) -> None:
        self._require_connected()
        if setting.sequenced:  # the devices switch on the camera's trigger: only say so
            self._changes += 1
            self._known_config = setting.config
            self._set_config(setting.config)
            return
        if self.mocked:
            power = setting.power if setting.power is not None else math.nan
            self._show(setting.config, float(power))
            return
        state = await self._worker.run(self._events.call_own, self._apply, setting)
        # a re-read under way started before this set: drop it, and read our preset's power
        self._changes += 1
        self._known_config = state[0]
        self._show(*state)
