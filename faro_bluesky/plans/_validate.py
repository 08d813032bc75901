"""Checks an experiment against the microscope and the analyzer before any run opens."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from bluesky.protocols import Readable

from ..devices import Microscope
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


def _analyzer_problems(analyzer: Any, phases: Sequence[Phase]) -> list[str]:
    problems = []
    required = set(getattr(analyzer, "required_metadata", ()) or ())
    required_stim = set(getattr(analyzer, "required_stim_metadata", ()) or ())
    channels = set(getattr(analyzer, "required_channels", ()) or ())
    ref_channels = set(getattr(analyzer, "required_ref_channels", ()) or ())
    for phase in phases:
        lacking = channels - {c.config for c in phase.channels}
        if phase.ref_frames:
            lacking |= ref_channels - {c.config for c in phase.ref_channels}
        if lacking:
            problems.append(
                f"phase {phase.name!r} does not image {sorted(lacking)}, which the analyzer's "
                "components read: add the channel(s) to the phase, or give the components "
                "channel=<a preset the phase images>"
            )
        missing = required - set(phase.metadata)
        if phase.stim_frames:
            missing |= required_stim - set(phase.metadata)
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
    if getattr(analyzer, "closed", False):
        problems.append("the analyzer is closed (analyzer.close() was called): make a new one")
    phases = list(iter_phases(elements))
    problems += _channel_problems(microscope, phases)
    stim = any(p.stim_frames for p in phases)
    patterned = bool(getattr(analyzer, "provides_masks", False)) or isinstance(
        stim_mask, np.ndarray
    )
    if stim and patterned:
        if microscope.dmd is None:
            problems.append(
                "stimulation masks need a DMD but the microscope has none: stimulate "
                "whole-field (no analyzer, stim_mask=None) or add an SLM"
            )
        elif not microscope.dmd.is_calibrated:
            problems.append(
                "the DMD is not calibrated but the stim phases need masks: run "
                "RE(calibrate_dmd(scope)) first (or set scope.dmd.affine)"
            )
    if isinstance(stim_mask, np.ndarray) and microscope.dmd is not None:
        try:
            microscope.dmd.check_value(stim_mask.astype(bool))
        except ValueError as exc:
            if "not calibrated" not in str(exc):
                problems.append(f"stim_mask: {exc}")
    if analyzer is not None:
        problems += _analyzer_problems(analyzer, phases)
    return problems


_FRAME_OVERHEAD_S = 0.015  # per frame: readout, zarr write, documents (docs/benchmarks.md)
_MASK_S = 0.07  # current mode: the analysis of the frame just taken (docs/benchmarks.md)


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


def timing_warnings(
    n_fovs: int, elements: Iterable[Any], *, time_per_fov: float | None, stim_mode: str
) -> list[str]:
    """Phases whose visits of one timepoint can't fit in the interval (a lower estimate).

    Not errors: the schedule then runs late (lag grows), which a user may accept; but it
    should be said before hours of acquisition rather than discovered in the lag display.
    """
    if time_per_fov is not None:
        return []
    out = []
    for phase in iter_phases(elements):
        fovs = len(phase.fovs) if phase.fovs is not None else n_fovs
        frames = list(phase.channels)
        seconds = sum(c.exposure for c in frames) / 1000 + _FRAME_OVERHEAD_S * len(frames)
        if phase.stim_frames:
            stim = phase.stim_channels_at(phase.stim_frames[0])
            seconds += sum(c.exposure for c in stim) / 1000 + _FRAME_OVERHEAD_S * len(stim)
            seconds += _MASK_S if stim_mode == "current" else 0.0
        if phase.n_frames > 1 and phase.interval > 0 and fovs * seconds > phase.interval:
            out.append(
                f"phase {phase.name!r}: {fovs} FOV visits need at least ~{fovs * seconds:.2f} s "
                f"but the interval is {phase.interval:g} s, so the schedule will run late: "
                f"lengthen the interval, use fewer FOVs, or pass time_per_fov=~{seconds:.2f} "
                "to batch and stagger FOVs"
            )
    return out
