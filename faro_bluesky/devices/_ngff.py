"""OME-NGFF 0.5 metadata of the run stores, built from yaozarrs' models.

Every ``ome`` attribute faro writes (the raw image, the analyzer's labels, the per-FOV
views of docs/decisions/0057-per-fov-ome-zarr.md) comes from here, as validated
``yaozarrs.v05`` models dumped to JSON: a wrong axis type, a scale of the wrong length or an
empty labels list fails when it is written, not later in a viewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yaozarrs import v05

TIME_UNIT = "second"
SPACE_UNIT = "micrometer"


@dataclass(frozen=True)
class ChannelStyle:
    """How a viewer should show one channel (NGFF ``omero`` hints)."""

    label: str
    color: str
    """RRGGBB hex."""
    window: tuple[float, float, float, float]
    """start, end (the contrast shown), min, max (the range allowed)."""
    active: bool = True


def multiscale(
    array_name: str,
    name: str,
    pixel_size_um: float,
    *,
    t_interval_s: float | None = None,
) -> v05.Multiscale:
    """One-level ``(t, c, y, x)`` multiscale; ``t`` in seconds when its interval is known.

    Without ``t_interval_s`` (the raw array, whose ``t`` is the frame index) the time axis
    carries no unit and a scale of 1.
    """
    time_axis = (
        v05.TimeAxis(name="t") if t_interval_s is None else v05.TimeAxis(name="t", unit=TIME_UNIT)
    )
    scale = [1.0 if t_interval_s is None else float(t_interval_s), 1.0]
    return v05.Multiscale(
        name=name,
        axes=[
            time_axis,
            v05.ChannelAxis(name="c"),
            v05.SpaceAxis(name="y", unit=SPACE_UNIT),
            v05.SpaceAxis(name="x", unit=SPACE_UNIT),
        ],
        datasets=[
            v05.Dataset(
                path=array_name,
                coordinateTransformations=[
                    v05.ScaleTransformation(scale=[*scale, pixel_size_um, pixel_size_um])
                ],
            )
        ],
    )


def image(
    array_name: str,
    name: str,
    pixel_size_um: float,
    *,
    t_interval_s: float | None = None,
    channels: Sequence[ChannelStyle] = (),
) -> v05.Image:
    """An image group's metadata, with ``omero`` channel hints when ``channels`` are given."""
    omero = None
    if channels:
        omero = v05.Omero(
            channels=[
                v05.OmeroChannel(
                    label=ch.label,
                    color=ch.color,
                    active=ch.active,
                    family="linear",
                    window=v05.OmeroWindow(
                        start=ch.window[0], end=ch.window[1], min=ch.window[2], max=ch.window[3]
                    ),
                )
                for ch in channels
            ],
            rdefs=v05.OmeroRenderingDefs(model="color", defaultT=0),
        )
    ms = multiscale(array_name, name, pixel_size_um, t_interval_s=t_interval_s)
    return v05.Image(multiscales=[ms], omero=omero)


def label_image(
    name: str, pixel_size_um: float, *, t_interval_s: float | None = None, source: str = "../../"
) -> v05.LabelImage:
    """A label image (array ``0``) of the image group at ``source`` (relative path)."""
    ms = multiscale("0", name, pixel_size_um, t_interval_s=t_interval_s)
    return v05.LabelImage(
        multiscales=[ms], image_label=v05.ImageLabel(source=v05.LabelSource(image=source))
    )


def labels_group(names: Sequence[str]) -> v05.LabelsGroup:
    """The ``labels`` group listing label images ``names`` (at least one)."""
    return v05.LabelsGroup(labels=list(names))


def collection(series: Sequence[str]) -> tuple[v05.Bf2Raw, v05.Series]:
    """A multi-image collection (bioformats2raw layout) and its ``OME`` group's series."""
    return v05.Bf2Raw(bioformats2raw_layout=3), v05.Series(series=list(series))


def ome_attrs(model: Any) -> dict[str, Any]:
    """The JSON of a yaozarrs model, as the value of a group's ``ome`` attribute."""
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)
