"""Arrays that share chunk files: the mechanics of the per-FOV views (decision 0057).

Two zarr v3 arrays with the same chunk shape, data type and codecs encode a chunk into the
same bytes whatever their shapes, so one file can be a chunk of both: a hard link makes a
frame of the raw array a chunk of a view without writing its pixels again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

import zarr


def array_like(source: zarr.Array, group: Path, name: str, shape: tuple[int, ...]) -> zarr.Array:
    """Array ``group/name`` of ``shape`` encoding chunks exactly as ``source`` does.

    An existing compatible array is kept (resized if need be), so its linked chunks stay;
    one encoded differently is replaced.
    """
    if source.shards is not None or source.chunks[:-2] != (1,) * (source.ndim - 2):
        raise ValueError(f"{source.store_path} has no chunk file per frame: nothing to link")
    parent = zarr.open_group(group, mode="a")
    for _ in range(2):  # a second try if another writer created it meanwhile
        existing = parent.get(name)
        if isinstance(existing, zarr.Array) and _same_encoding(existing, source):
            if existing.shape != shape:
                existing.resize(shape)
            return existing
        if existing is not None:
            del parent[name]
        try:
            array = parent.create_array(
                name,
                shape=shape,
                chunks=(1, 1, *source.chunks[-2:]),
                dtype=source.dtype,
                filters=source.filters,
                compressors=source.compressors,
                serializer=source.serializer,
                fill_value=source.fill_value,
                dimension_names=("t", "c", "y", "x"),
            )
        except zarr.errors.ContainsArrayError:
            continue
        if not _same_encoding(array, source):
            raise ValueError(f"{group / name} cannot share chunk files with {source.store_path}")
        return array
    raise RuntimeError(f"{group / name} keeps changing under another writer")


def _same_encoding(array: zarr.Array, source: zarr.Array) -> bool:
    return (
        array.metadata.codecs == source.metadata.codecs
        and array.dtype == source.dtype
        and array.chunks[-2:] == source.chunks[-2:]
        and array.metadata.chunk_key_encoding == source.metadata.chunk_key_encoding
    )


def chunk_key(array: zarr.Array, *leading: int) -> str:
    """Chunk file of the frame at ``leading`` indices (one chunk per frame)."""
    coords = (*leading, *(0,) * (array.ndim - len(leading)))
    return array.metadata.encode_chunk_key(coords)


def sync_chunk(source: Path | None, target: Path) -> str:
    """Make ``target`` the file ``source`` is (a hard link; a copy where links fail)."""
    if source is None or not source.is_file():
        if target.is_file():
            target.unlink(missing_ok=True)
            return "removed"
        return "empty"
    with contextlib.suppress(FileNotFoundError):
        if os.path.samefile(source, target):
            return "kept"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        os.link(source, tmp)
        action = "linked"
    except OSError:  # no hard links here (some network and FAT file systems)
        shutil.copyfile(source, tmp)
        action = "copied"
    os.replace(tmp, target)  # atomic: a reader sees the old chunk or the new one
    return action
