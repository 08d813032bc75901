"""What goes over the wire: documents, frames and masks as msgpack, arrays as raw bytes.

Documents use bluesky's 0MQ framing (``prefix name payload``) with msgpack instead of
bluesky's default pickle: unpickling what arrives on a network port runs whatever the
sender chose, and a status follower or an analysis box should only ever parse data.
Arrays (the ``mask`` events carry the fired mask) are packed as a msgpack extension of
dtype, shape and raw bytes; object arrays are refused (they would need pickle).
``msgpack_numpy`` is not used for the same reason: it unpickles object arrays.

Frames and masks travel on the analyzer link (`RemoteMasks` ↔ `AnalyzerService`) as
multipart messages ``[kind, header, payload]``: the header is msgpack, the payload the
pixels (or the mask's packed bits) as one buffer, so a 512×512 frame costs one copy.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import msgpack
import numpy as np

from ..devices import Frame
from ..schema import MaskSource, Requirements, mask_source

_NDARRAY = 1  # msgpack extension type code of an ndarray

HELLO = b"hello"
"""Link → service: a `RemoteMasks` introduces itself (the service answers `READY`)."""
READY = b"ready"
"""Service → link: the analyzer's facts (``provides_masks``, ``mask_timeout``...)."""
FRAME = b"frame"
"""Link → service: one camera frame's pixels, addressed like the documents address it."""
RUN = b"run"
"""Service → link: the service's analyzer received this run's start document."""
MASK = b"mask"
"""Service → link: the mask of one (run, FOV, t), or that none will come."""


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            return obj.tolist()
        header = msgpack.packb([obj.dtype.str, list(obj.shape)])
        return msgpack.ExtType(_NDARRAY, header + np.ascontiguousarray(obj).tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, PurePath):
        return str(obj)
    raise TypeError(f"cannot send a {type(obj).__name__} over the network: {obj!r}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != _NDARRAY:
        return msgpack.ExtType(code, data)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    dtype_str, shape = unpacker.unpack()
    dtype = np.dtype(dtype_str)
    if dtype.hasobject:
        raise ValueError(f"refusing an object array ({dtype_str}) from the network")
    raw = data[unpacker.tell() :]
    # a writable copy, like pickle gives: consumers may treat it as their own array
    return np.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)


def pack(obj: Any) -> bytes:
    """``obj`` (a document or a header) as msgpack; arrays as raw bytes."""
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """The inverse of `pack`; arrays come back as writable ndarrays."""
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


# ------------------------------------------------------------------------- frames
def encode_frame(frame: Frame) -> list[Any]:
    """``[FRAME, header, pixels]`` for one camera frame (the pixels are not copied)."""
    image = np.ascontiguousarray(frame.image)
    header = {
        "uri": frame.uri,
        "index": int(frame.index),
        "timestamp": float(frame.timestamp),
        "exposure_ms": float(frame.exposure_ms),
        "dtype": image.dtype.str,
        "shape": list(image.shape),
    }
    return [FRAME, pack(header), memoryview(image).cast("B")]


def decode_frame(header: bytes, pixels: bytes | memoryview) -> Frame:
    """The `Frame` of an `encode_frame` message (its pixels a writable array)."""
    h = unpack(header)
    dtype = np.dtype(h["dtype"])
    if dtype.hasobject:
        raise ValueError("refusing an object-dtype frame")
    image = np.frombuffer(bytearray(pixels), dtype=dtype).reshape(h["shape"])
    return Frame(
        uri=str(h["uri"]),
        index=int(h["index"]),
        image=image,
        timestamp=float(h["timestamp"]),
        exposure_ms=float(h["exposure_ms"]),
    )


# -------------------------------------------------------------------------- masks
def encode_mask(run: str, fov: int, t: int, mask: object | None) -> list[Any]:
    """``[MASK, header, bits]``: ``mask`` True/False, a 2-D array, or None (no mask comes).

    An array goes as its packed bits (1/8 of a bool array: 32 kB for 512×512).
    """
    header: dict[str, Any] = {"run": run, "fov": int(fov), "t": int(t)}
    payload = b""
    if mask is None:
        header["value"] = "skip"
    elif mask is True or mask is False:
        header["value"] = bool(mask)
    else:
        arr = np.asarray(mask) != 0
        header["value"] = "array"
        header["shape"] = list(arr.shape)
        payload = np.packbits(arr, axis=None).tobytes()
    return [MASK, pack(header), payload]


def decode_mask(header: bytes, payload: bytes) -> tuple[str, int, int, object | None]:
    """``(run, fov, t, mask)`` of an `encode_mask` message (mask None: none will come)."""
    h = unpack(header)
    value = h["value"]
    if value == "skip":
        mask: object | None = None
    elif value == "array":
        shape = tuple(int(n) for n in h["shape"])
        bits = np.unpackbits(np.frombuffer(payload, np.uint8), count=math.prod(shape))
        mask = bits.reshape(shape).astype(bool)
    else:
        mask = bool(value)
    return str(h["run"]), int(h["fov"]), int(h["t"]), mask


def facts(analyzer: Any) -> dict[str, Any]:
    """What `READY` tells a link about the service's analyzer (for the plan's checks)."""
    needs = Requirements.of(analyzer)
    source = mask_source(analyzer)
    return {
        "required_metadata": sorted(needs.metadata),
        "required_channels": sorted(needs.channels),
        "required_ref_channels": sorted(needs.ref_channels),
        "required_stim_metadata": sorted(needs.stim_metadata),
        "provides_masks": source is not None,
        "mask_timeout": float(analyzer.mask_timeout) if isinstance(analyzer, MaskSource) else 80.0,
    }


def as_facts(value: Mapping[str, Any]) -> dict[str, Any]:
    """`facts` as received, with the requirement lists as frozensets."""
    return {k: frozenset(v) if isinstance(v, list) else v for k, v in value.items()}
