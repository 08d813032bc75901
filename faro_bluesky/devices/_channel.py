"""Channel (light) presets: a config-group preset, exposure and light power as one move."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bluesky.protocols import Movable
from ophyd_async.core import (
    AsyncStatus,
    StandardReadable,
    StandardReadableFormat,
    soft_signal_r_and_setter,
)
from pymmcore_plus import CMMCorePlus

from ._camera import check_exposure, exposure_limits
from ._worker import CoreWorker


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


class ChannelPresets(StandardReadable, Movable[Any]):
    """Selects channel presets: ``bps.mv(scope.channel, LightSetting("Cyan", 100, 10))``.

    Everything is checked before anything is changed: the preset must exist, the exposure
    must be inside the camera's limits, the power must map to a device property (see
    ``power_properties``) and be inside its limits.

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
        self._worker = CoreWorker.for_core(core)
        self.group = group or core.getChannelGroup()
        if not self.group:
            raise ValueError("no channel group: pass group= or set the core's channel group")
        self.power_properties = dict(power_properties or {})
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.config, self._set_config = soft_signal_r_and_setter(str)
        with self.add_children_as_readables():
            self.power, self._set_power = soft_signal_r_and_setter(float)
        super().__init__(name=name)
        self._set_config(self._worker.call(core.getCurrentConfig, self.group))
        self.refresh()

    def refresh(self) -> None:
        """Re-read presets and limits from the core (after changing its configuration).

        They are cached so that `check_value` needs no core call and can run anywhere.
        """
        self._limits = self._worker.call(self._read_limits)

    def _read_limits(self) -> dict[str, Any]:
        core = self._worker.core
        power = {}
        for config, (dev, prop) in self.power_properties.items():
            if core.hasPropertyLimits(dev, prop):
                power[config] = (
                    core.getPropertyLowerLimit(dev, prop),
                    core.getPropertyUpperLimit(dev, prop),
                )
        return {
            "presets": {
                g: tuple(core.getAvailableConfigs(g)) for g in core.getAvailableConfigGroups()
            },
            "exposure": exposure_limits(core, core.getCameraDevice()),
            "power": power,
        }

    def presets(self, group: str | None = None) -> tuple[str, ...]:
        """Presets of ``group`` (default: the channel group)."""
        return self._limits["presets"].get(group or self.group, ())

    def check_value(self, value: Any) -> None:
        """Raise ValueError/TypeError naming the problem and the fix; changes nothing."""
        s = LightSetting.coerce(value)
        field = self.name or "channel"
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
            prop = self.power_properties.get(s.config)
            if prop is None:
                raise ValueError(
                    f"{field}.power={s.power:g} for preset {s.config!r}, which has no power "
                    f"property: pass power_properties={{{s.config!r}: (device, property)}} "
                    "or leave power=None"
                )
            limits = self._limits["power"].get(s.config)
            if limits is not None and not limits[0] <= s.power <= limits[1]:
                raise ValueError(
                    f"{field}.power={s.power:g} for preset {s.config!r} is outside "
                    f"{prop[0]}.{prop[1]} limits [{limits[0]:g}, {limits[1]:g}]: "
                    "choose a power inside them"
                )

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
        config, power = await self._worker.run(self._apply, setting)
        self._set_config(config)
        self._set_power(power)
