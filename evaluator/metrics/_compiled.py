"""Compiled inner loops of the surface-distance metrics (Numba), when Numba is installed.

Three loops: a mask's bounding box, its surface voxels inside that box, and the search of each
surface voxel's nearest voxel on the other surface. The platform installs Numba
(``requirements.txt``); the ``scanbench`` client does not need it (``pip install
'scanbench[fast]'`` adds it). Without it, :mod:`evaluator.metrics.surface` runs NumPy twins of
the same loops, with the same results, several times slower. ``SCANBENCH_NO_COMPILED=1`` forces
that path; the tests compare the two.

Every loop works on 3-D arrays; a 2-D mask is given a leading axis of length 1. Compiled code is
cached on disk next to this file, or under ``NUMBA_CACHE_DIR``; where neither is writable it is
compiled in memory once per process (about a second). A worker process loads it from the cache
the first time it scores distances (about 0.3 s).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["bounding_box", "kernel_name", "nearest_in_ball", "surface_in_box"]


def _bounding_box(mask: Any) -> Any:  # pragma: no cover - runs compiled
    """[start0, stop0, start1, stop1, start2, stop2] of the True voxels of a 3-D mask; all -1
    when it is empty."""
    n0, n1, n2 = mask.shape
    bytes_ = mask.view(np.uint8)
    # which rows hold a True voxel: a one-byte OR reduction per row, which vectorizes (a branch
    # in the same loop would not)
    rows = np.zeros((n0, n1), dtype=np.uint8)
    for i in range(n0):
        for j in range(n1):
            row = bytes_[i, j]
            acc = np.uint8(0)
            for k in range(n2):
                acc |= row[k]
            rows[i, j] = acc
    lo0, hi0, lo1, hi1, lo2, hi2 = n0, -1, n1, -1, n2, -1
    for i in range(n0):
        for j in range(n1):
            if rows[i, j] == 0:
                continue
            lo0, hi0 = min(lo0, i), max(hi0, i)
            lo1, hi1 = min(lo1, j), max(hi1, j)
            row = bytes_[i, j]
            for k in range(lo2):  # only what could move the box's edge
                if row[k]:
                    lo2 = k
                    break
            for k in range(n2 - 1, hi2, -1):
                if row[k]:
                    hi2 = k
                    break
    out = np.full(6, -1, dtype=np.intp)
    if hi0 >= 0:
        out[0], out[1], out[2], out[3], out[4], out[5] = lo0, hi0 + 1, lo1, hi1 + 1, lo2, hi2 + 1
    return out


def _surface_in_box(mask: Any, box: Any, planar: bool) -> Any:  # pragma: no cover - compiled
    """Surface of a 3-D mask inside ``box`` ([start0, stop0, ...], holding every True voxel):
    True voxels with a face neighbour that is False or outside the array. ``planar``: a 2-D
    mask given a leading axis of 1, whose neighbours along that axis do not exist. Returns the
    surface (box-shaped) and the surface voxels' indices in the full array, (n, 3)."""
    n0, n1, n2 = mask.shape
    b0, e0, b1, e1, b2, e2 = box[0], box[1], box[2], box[3], box[4], box[5]
    surf = np.zeros((e0 - b0, e1 - b1, e2 - b2), dtype=np.bool_)
    count = 0
    for i in range(b0, e0):
        for j in range(b1, e1):
            for k in range(b2, e2):
                if not mask[i, j, k]:
                    continue
                inner = (
                    0 < j < n1 - 1
                    and 0 < k < n2 - 1
                    and mask[i, j - 1, k]
                    and mask[i, j + 1, k]
                    and mask[i, j, k - 1]
                    and mask[i, j, k + 1]
                )
                if inner and not planar:
                    inner = 0 < i < n0 - 1 and mask[i - 1, j, k] and mask[i + 1, j, k]
                if not inner:
                    surf[i - b0, j - b1, k - b2] = True
                    count += 1
    idx = np.empty((count, 3), dtype=np.intp)
    c = 0
    for i in range(e0 - b0):
        for j in range(e1 - b1):
            for k in range(e2 - b2):
                if surf[i, j, k]:
                    idx[c, 0], idx[c, 1], idx[c, 2] = i + b0, j + b1, k + b2
                    c += 1
    return surf, idx


def _nearest_in_ball(
    padded: Any, reach: Any, points: Any, offsets: Any, lengths: Any, out: Any
) -> None:  # pragma: no cover - runs compiled
    """Nearest distance from each point to the True voxels of ``padded`` within a ball.

    ``padded``: the other surface's box with ``reach[k]`` False voxels on both sides of axis k,
    reach being the largest offset along each axis; ``points``: (n, 3) coordinates in the
    unpadded box's frame, possibly outside it; ``offsets``: (m, 3) sorted by physical length,
    ``lengths``: theirs. A point on the surface is at 0; otherwise the first offset landing on
    the surface gives its exact nearest distance. A point with no hit keeps its value (NaN).
    """
    r0, r1, r2 = reach[0], reach[1], reach[2]
    m0, m1, m2 = padded.shape
    n0, n1, n2 = m0 - 2 * r0, m1 - 2 * r1, m2 - 2 * r2
    flat = padded.reshape(-1)
    s0, s1 = m1 * m2, m2
    count = offsets.shape[0]
    o0 = np.ascontiguousarray(offsets[:, 0])
    o1 = np.ascontiguousarray(offsets[:, 1])
    o2 = np.ascontiguousarray(offsets[:, 2])
    lin = o0 * s0 + o1 * s1 + o2
    for i in range(points.shape[0]):
        x, y, z = points[i, 0] + r0, points[i, 1] + r1, points[i, 2] + r2
        if r0 <= x < r0 + n0 and r1 <= y < r1 + n1 and r2 <= z < r2 + n2:
            # inside the box: the whole ball lies inside the padded array
            c = x * s0 + y * s1 + z
            if flat[c]:
                out[i] = 0.0
                continue
            for j in range(count):
                if flat[c + lin[j]]:
                    out[i] = lengths[j]
                    break
        elif 0 <= x < m0 and 0 <= y < m1 and 0 <= z < m2:
            # outside the box by at most one reach: offsets may leave the array
            for j in range(count):
                a, b, d = x + o0[j], y + o1[j], z + o2[j]
                if 0 <= a < m0 and 0 <= b < m1 and 0 <= d < m2 and flat[a * s0 + b * s1 + d]:
                    out[i] = lengths[j]
                    break
        # farther out: farther than the ball from all of the box, left to the k-d tree


def _compile(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    if os.environ.get("SCANBENCH_NO_COMPILED", "") not in ("", "0"):
        return None
    try:
        import numba
    except ImportError:
        return None
    try:
        return numba.njit(fn, cache=True, nogil=True, boundscheck=False)
    except RuntimeError:  # no writable cache location: compile in memory
        return numba.njit(fn, cache=False, nogil=True, boundscheck=False)


bounding_box = _compile(_bounding_box)
surface_in_box = _compile(_surface_in_box)
nearest_in_ball = _compile(_nearest_in_ball)
#: what the distance loops run on ("numba" or "numpy")
kernel_name = "numpy" if nearest_in_ball is None else "numba"
