"""Affine maps between camera and DMD pixels, and mask warping.

Conventions used everywhere in faro-bluesky: an affine is a 3x3 homogeneous matrix acting
on column vectors ``(x, y, 1)`` where ``x`` is the column and ``y`` the row of a pixel
(the scikit-image convention). Arrays are indexed ``[row, col]``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

# swaps (x, y) <-> (row, col) in homogeneous coordinates
_SWAP = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def as_affine(matrix: ArrayLike) -> NDArray[np.float64]:
    """Validate and return ``matrix`` as a 3x3 float affine (last row ``0 0 1``)."""
    m = np.asarray(matrix, dtype=float)
    if m.shape == (2, 3):
        m = np.vstack([m, [0.0, 0.0, 1.0]])
    if m.shape != (3, 3) or not np.allclose(m[2], [0.0, 0.0, 1.0]):
        raise ValueError(
            f"affine must be a 3x3 homogeneous matrix with last row [0, 0, 1] "
            f"(or 2x3), got shape {m.shape}"
        )
    if abs(np.linalg.det(m[:2, :2])) < 1e-12:
        raise ValueError("affine is singular: its 2x2 part has zero determinant")
    return m


def similarity(
    *,
    rotation_deg: float = 0.0,
    scale: float = 1.0,
    src_center: tuple[float, float] = (0.0, 0.0),
    dst_center: tuple[float, float] = (0.0, 0.0),
    shift: tuple[float, float] = (0.0, 0.0),
) -> NDArray[np.float64]:
    """Affine that rotates/scales about ``src_center`` onto ``dst_center`` + ``shift``.

    Centres and shift are ``(x, y)``.
    """
    t = np.deg2rad(rotation_deg)
    c, s = np.cos(t) * scale, np.sin(t) * scale
    to_origin = np.array([[1, 0, -src_center[0]], [0, 1, -src_center[1]], [0, 0, 1]], float)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], float)
    back = np.array(
        [[1, 0, dst_center[0] + shift[0]], [0, 1, dst_center[1] + shift[1]], [0, 0, 1]], float
    )
    return back @ rot @ to_origin


def warp(
    image: NDArray, src_to_dst: ArrayLike, dst_shape: tuple[int, int], *, order: int = 0
) -> NDArray:
    """Resample ``image`` (in source pixels) into destination pixels.

    ``src_to_dst`` maps source ``(x, y)`` to destination ``(x, y)``. Nearest neighbour by
    default, as masks must stay binary; pixels that fall outside the source are 0.
    """
    a = as_affine(src_to_dst)
    # scipy maps output (row, col) to input (row, col): invert and swap axes
    inv_rc = _SWAP @ np.linalg.inv(a) @ _SWAP
    return ndimage.affine_transform(
        image,
        inv_rc[:2, :2],
        offset=inv_rc[:2, 2],
        output_shape=dst_shape,
        order=order,
        mode="constant",
        cval=0,
    )


def warp_index(
    src_to_dst: ArrayLike, src_shape: tuple[int, int], dst_shape: tuple[int, int]
) -> NDArray[np.intp]:
    """For each destination pixel, the flat index of the source pixel `warp` shows there.

    ``-1`` where `warp` shows nothing (outside the source). Found by warping an image of
    the source pixels' indices with `warp` itself, so `take_warped` with this map gives
    exactly what ``warp(image, src_to_dst, dst_shape)`` gives, for any image of
    ``src_shape``, in one gather instead of a resampling: the DMD computes the map once
    per calibration and then shows a mask in ~0.5 ms instead of ~6 ms (issue 11).
    """
    h, w = src_shape
    dtype = np.int32 if h * w < np.iinfo(np.int32).max else np.int64
    ids = np.arange(1, h * w + 1, dtype=dtype).reshape(h, w)  # 0 is reserved for outside
    return warp(ids, src_to_dst, dst_shape).astype(np.intp) - 1


def take_warped(index: NDArray[np.intp], image: NDArray) -> NDArray:
    """``image`` resampled through a `warp_index` map: 0 where the map says ``-1``."""
    padded = np.zeros(image.size + 1, image.dtype)  # index -1 reads the trailing 0
    padded[:-1] = image.ravel()
    return padded[index]


def apply(affine: ArrayLike, xy: ArrayLike) -> NDArray[np.float64]:
    """Map points ``xy`` (shape ``(n, 2)``, ``(x, y)``) through ``affine``."""
    pts = np.atleast_2d(np.asarray(xy, dtype=float))
    h = np.column_stack([pts, np.ones(len(pts))])
    return (h @ as_affine(affine).T)[:, :2]
