"""Checks an experiment against the microscope and the analyzer before any run opens."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from bluesky.protocols import Readable
from numpy.typing import NDArray

from ..devices import Microscope
from ..schema import Closable, Requirements, provides_masks
from ._model import Parallel, Phase, Wait

STIM_MODES = ("current", "previous")
RESUME_MODES = ("shift", "catch_up")


def iter_phases(elements: Iterable[Any]) -> Iterable[Phase]:
    """Every Phase in an experiment list, inside Parallel branches too."""
    for el in elements:
        if isinstance(el, Phase):
            yield el
        elif isinstance(el, Parallel):
            for branch in el.branches:
                yield from (p for p in branch if isinstance(p, Phase))


def _channel_problems(microscope: Any, phases: Sequence[Phase]) -> list[str]:
    problems, seen = [], set()
    for phase in phases:
        kinds = [("channels", phase.channels), ("ref_channels", phase.ref_channels)]
        kinds += [("stim_channels", phase.stim_channels_at(f)) for f in phase.stim_frames]
        for kind, channels in kinds:
            for ch in channels:
                key = (ch.config, ch.exposure, ch.power, ch.group)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    microscope.channel.check_value(ch)
                except (ValueError, TypeError) as exc:
                    problems.append(f"phase {phase.name!r} {kind}: {exc}")
    return problems


def _analyzer_problems(needs: Requirements, phases: Sequence[Phase]) -> list[str]:
    problems = []
    for phase in phases:
        lacking = needs.channels - {c.config for c in phase.channels}
        if phase.ref_frames:
            lacking |= needs.ref_channels - {c.config for c in phase.ref_channels}
        if lacking:
            problems.append(
                f"phase {phase.name!r} does not image {sorted(lacking)}, which the analyzer's "
                "components read: add the channel(s) to the phase, or give the components "
                "channel=<a preset the phase images>"
            )
        missing = needs.metadata - set(phase.metadata)
        if phase.stim_frames:
            missing |= needs.stim_metadata - set(phase.metadata)
        if missing:
            problems.append(
                f"phase {phase.name!r} lacks metadata {sorted(missing)} that the analyzer's "
                f"components require: add them to Phase(..., metadata={{...}})"
            )
    return problems


def validate_experiment(
    microscope: Any,
    fovs: Sequence[Sequence[float] | None],
    elements: Sequence[Any] | None,
    *,
    analyzer: Any = None,
    stim_mask: Any = None,
    stim_mode: str = "current",
    on_resume: str = "shift",
    per_visit: Sequence[Any] = (),
    patterned_light: Any = None,
) -> list[str]:
    """Every problem that would stop ``elements`` from running on ``microscope``.

    Pure checks against cached device limits: nothing is moved, nothing is emitted.
    A ``None`` FOV, or ``elements=None``, was already refused by the argument checks
    (`check_arguments`) and is skipped here.
    """
    problems: list[str] = []
    if microscope is None:
        return [
            "no microscope: pass microscope=... or set the session default with "
            "faro_bluesky.plans.set_session(microscope=scope)"
        ]
    if not isinstance(microscope, Microscope):
        return [
            f"microscope={microscope!r} is not a Microscope: build one with "
            "faro_bluesky.sim.sim_microscope() or Microscope.from_core(core)"
        ]
    if not (isinstance(stim_mode, str) and stim_mode in STIM_MODES):
        problems.append(f"stim_mode={stim_mode!r} is not one of {STIM_MODES}")
    if not (isinstance(on_resume, str) and on_resume in RESUME_MODES):
        problems.append(f"on_resume={on_resume!r} is not one of {RESUME_MODES}")
    for i, xy in enumerate(fovs):
        if xy is None:
            continue
        try:
            microscope.stage.check_value(xy)
        except (ValueError, TypeError) as exc:
            problems.append(f"fovs[{i}]: {exc}")
    for i, obj in enumerate(per_visit):
        if not isinstance(obj, Readable):
            problems.append(f"per_visit[{i}]={obj!r} is not a bluesky Readable (no read())")
    for i, el in enumerate(elements or ()):
        if not (isinstance(el, Phase | Wait | Parallel) or callable(el)):
            problems.append(
                f"phases[{i}]={el!r} is not a Phase, wait(), parallel() or a decision callable"
            )
    if elements is not None and not elements:
        problems.append("phases is empty: give at least one Phase(...)")
    elements = elements or []
    if isinstance(analyzer, Closable) and analyzer.closed:
        problems.append("the analyzer is closed (analyzer.close() was called): make a new one")
    phases = list(iter_phases(elements))
    problems += _channel_problems(microscope, phases)
    stim = any(p.stim_frames for p in phases)
    patterned = provides_masks(analyzer) or isinstance(stim_mask, np.ndarray)
    problems += _light_problems(microscope, patterned_light, stim and patterned, stim_mask)
    if analyzer is not None:
        problems += _analyzer_problems(Requirements.of(analyzer), phases)
    return problems


def _light_problems(
    microscope: Microscope, which: Any, masks_needed: bool, stim_mask: Any
) -> list[str]:
    """Problems of the patterned light that would project the masks.

    ``which``: a key of ``patterned_lights``, a `PatternedLight` or None (``scope.dmd``).
    """
    try:
        light = microscope.patterned_light(which)
    except (ValueError, TypeError) as exc:
        return [str(exc)]
    problems = []
    if masks_needed and light is None:
        keys = sorted(microscope.patterned_lights)
        choose = f", or pass patterned_light= one of {keys}" if keys else ""
        problems.append(
            "stimulation masks need a patterned light but the microscope has none "
            "(scope.dmd is None): stimulate whole-field (no analyzer, stim_mask=None), or "
            "give it a DMD over its SLM device with Microscope.from_core(core, "
            "slms={'dmd': '<SLM label>'}) or scope.add_patterned_light('dmd', "
            f"DMD(core, label='<SLM label>')){choose}"
        )
    elif masks_needed and not light.is_calibrated:
        if light is microscope.dmd:
            problems.append(
                "the DMD is not calibrated but the stim phases need masks: run "
                "RE(calibrate_dmd(scope)) first (or set scope.dmd.affine)"
            )
        else:
            keys = [k for k, v in microscope.patterned_lights.items() if v is light]
            arg = repr(keys[0]) if keys else "<the device>"
            problems.append(
                f"patterned light {light.name!r} is not calibrated but the stim phases need "
                f"masks: run RE(calibrate_dmd(scope, patterned_light={arg})) first (or set "
                "its affine)"
            )
    if isinstance(stim_mask, np.ndarray) and light is not None:
        try:
            light.check_value(stim_mask.astype(bool))
        except ValueError as exc:
            if "not calibrated" not in str(exc):
                problems.append(f"stim_mask: {exc}")
    return problems


_FRAME_OVERHEAD_S = 0.003  # per frame: trigger, documents (docs/benchmarks.md, step frames)
_MASK_S = 0.02  # current mode: exposure end -> stim exposure, p50 (docs/benchmarks.md)


def calibration_warnings(microscope: Any, fovs: Sequence[Any]) -> list[str]:
    """FOVs whose cells ``calibrate_dmd`` lit (their fields of view overlap): not at rest."""
    lit = list(getattr(microscope, "lit_positions", ()))
    if not lit:
        return []
    width, height = microscope.field_of_view_um()
    out = []
    for p, xy in enumerate(fovs):
        if xy is None:
            continue
        for lx, ly in lit:
            if abs(xy[0] - lx) < width and abs(xy[1] - ly) < height:
                out.append(
                    f"FOV {p} at ({xy[0]:g}, {xy[1]:g}) µm overlaps the field calibrate_dmd lit "
                    f"at ({lx:g}, {ly:g}) µm: its cells were stimulated and are not at rest; "
                    "calibrate elsewhere with calibrate_dmd(scope, position=(x, y))"
                )
                break
    return out


def _hops_s(fovs: Sequence[tuple[float, float]], speed_um_s: float | None) -> NDArray:
    """Stage travel (s) of each move of one timepoint: FOV to FOV, then back to the first."""
    if speed_um_s is None or speed_um_s <= 0 or len(fovs) < 2:
        return np.zeros(1)
    xy = np.asarray(fovs, dtype=float)
    return np.linalg.norm(np.diff(np.vstack([xy, xy[:1]]), axis=0), axis=1) / speed_um_s


def timing_warnings(
    n_fovs: int,
    elements: Iterable[Any],
    *,
    time_per_fov: float | None,
    stim_mode: str,
    fovs: Sequence[tuple[float, float]] | None = None,
    stage_speed_um_s: float | None = None,
) -> list[str]:
    """Phases whose visits of one timepoint can't fit in the interval (a lower estimate).

    Not errors: the schedule then runs late (lag grows), which a user may accept; but it
    should be said before hours of acquisition rather than discovered in the lag display.
    The estimate is exposures + a per-frame overhead + (current mode) the mask's latency +
    the stage's travel between the FOVs when its speed is known (``stage.speed_um_s``).
    With ``time_per_fov`` each visit must fit its slot, including the longest stage move.
    """
    out = []
    for phase in iter_phases(elements):
        visited = (
            [fovs[i] for i in phase.fovs if i < len(fovs)]
            if fovs is not None and phase.fovs is not None
            else list(fovs or [])
        )
        n = len(phase.fovs) if phase.fovs is not None else n_fovs
        frames = list(phase.channels)
        seconds = sum(c.exposure for c in frames) / 1000 + _FRAME_OVERHEAD_S * len(frames)
        if phase.stim_frames:
            stim = phase.stim_channels_at(phase.stim_frames[0])
            seconds += sum(c.exposure for c in stim) / 1000 + _FRAME_OVERHEAD_S * len(stim)
            seconds += _MASK_S if stim_mode == "current" else 0.0
        if phase.n_frames <= 1 or phase.interval <= 0:
            continue
        if time_per_fov is not None:
            hop = float(_hops_s(visited, stage_speed_um_s).max())
            if seconds + hop > time_per_fov:
                out.append(
                    f"phase {phase.name!r}: a visit needs at least ~{seconds + hop:.3f} s "
                    f"({seconds:.3f} s of frames + {hop:.3f} s of stage travel) but "
                    f"time_per_fov is {time_per_fov:g} s, so visits will run late: "
                    f"pass time_per_fov >= {seconds + hop:.3f}"
                )
            continue
        travel = float(_hops_s(visited, stage_speed_um_s).sum())
        need = n * seconds + travel
        if need > phase.interval:
            moves = f" + {travel:.2f} s of stage travel" if travel else ""
            out.append(
                f"phase {phase.name!r}: {n} FOV visits need at least ~{need:.2f} s "
                f"({n * seconds:.2f} s of frames{moves}) but the interval is "
                f"{phase.interval:g} s, so the schedule will run late: lengthen the "
                f"interval, use fewer FOVs, or pass time_per_fov=~{seconds:.2f} to batch "
                "and stagger FOVs"
            )
    return out
