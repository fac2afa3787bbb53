"""Surface voxels and exact surface-to-surface distances.

Surface voxels follow ``docs/metrics.md``: ``M & ~binary_erosion(M)`` with the face-connected
structuring element, a voxel on the volume border counting as surface.

Speed comes from these, none of which changes a value:

* surfaces are computed inside each mask's bounding box, distance transforms inside the union
  box of both masks: cropping changes no value (see :func:`directed_distances`);
* the bounding box and the surface are one compiled pass each (Numba, when installed); the
  NumPy twin does the erosion with shifted boolean views (one ``&=`` per face neighbour)
  instead of a generic structuring-element loop;
* distances: a voxel on both surfaces is at 0; the integer offsets of a ball (sorted by
  physical length) are tried in order, so the first one landing on the other surface gives the
  exact nearest distance; voxels farther than the ball query a k-d tree over the other
  surface's physical coordinates. The search over the ball is compiled with Numba when it is
  installed (:mod:`evaluator.metrics._compiled`, about 4,000 offsets, a few nanoseconds each)
  and otherwise runs as blocks of NumPy gathers (about 400 offsets); both try the same offsets
  in the same order. When surfaces are large compared with the box (noisy masks),
  ``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing`` over the union box is used
  instead. All give exact Euclidean distances in float64;
* on large masks, the two masks, then the two directions, run on two threads unless told not
  to.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "bounding_box",
    "directed_distances",
    "surface_mask",
]

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
_T = TypeVar("_T")
_U = TypeVar("_U")

#: offsets tried before falling back to the k-d tree (the "ball" of near distances)
BALL_OFFSETS = 400
#: the same with the compiled search, where trying an offset costs a few nanoseconds
BALL_OFFSETS_COMPILED = 4000
#: offsets gathered per step
OFFSET_BLOCK = 16
#: masks (the slabs holding the label) from this many voxels are split over two threads
PARALLEL_MIN_VOXELS = 1 << 23
#: use the k-d tree while (surface points) < box voxels / this factor; measured on 2 cores
KD_TREE_BOX_RATIO = 6.0


def surface_mask(mask: BoolArray) -> BoolArray:
    """Surface voxels of ``mask``: voxels of the mask with a face neighbour outside it.

    Equal to ``mask & ~scipy.ndimage.binary_erosion(mask)`` with the face-connected structure
    and ``border_value=0`` (voxels on the array border are surface).
    """
    interior = mask.copy()
    for axis in range(mask.ndim):
        n = mask.shape[axis]
        if n == 0:
            continue
        lo = [slice(None)] * mask.ndim
        hi = [slice(None)] * mask.ndim
        lo[axis] = slice(0, n - 1)
        hi[axis] = slice(1, n)
        interior[tuple(lo)] &= mask[tuple(hi)]
        interior[tuple(hi)] &= mask[tuple(lo)]
        first = [slice(None)] * mask.ndim
        first[axis] = slice(0, 1)
        interior[tuple(first)] = False
        first[axis] = slice(n - 1, n)
        interior[tuple(first)] = False
    return mask & ~interior


def _as_3d(x: NDArray[Any]) -> NDArray[Any]:
    return x[None] if x.ndim == 2 else x


def bounding_box(mask: BoolArray) -> tuple[slice, ...] | None:
    """Smallest box holding every True voxel, or ``None`` when the mask is empty."""
    from evaluator.metrics import _compiled  # imports Numba on first use

    if _compiled.bounding_box is not None and mask.ndim in (2, 3):
        got = _compiled.bounding_box(_as_3d(mask))
        if got[0] < 0:
            return None
        box3 = [slice(int(got[2 * k]), int(got[2 * k + 1])) for k in range(3)]
        return tuple(box3[3 - mask.ndim :])
    box: list[slice] = []
    sub = mask
    # Crop axis by axis so that later projections run over an already reduced array.
    for axis in range(mask.ndim):
        others = tuple(i for i in range(mask.ndim) if i != axis)
        proj = np.any(sub, axis=others) if others else sub
        hits = np.flatnonzero(proj)
        if hits.size == 0:
            return None
        sl = slice(int(hits[0]), int(hits[-1]) + 1)
        box.append(sl)
        index = [slice(None)] * mask.ndim
        index[axis] = sl
        sub = sub[tuple(index)]
    return tuple(box)


def _with_margin(box: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(box, shape, strict=True)
    )


def _surface_in_box(mask: BoolArray, box: tuple[slice, ...]) -> tuple[BoolArray, NDArray[np.intp]]:
    """Surface of ``mask`` computed inside ``box`` (which holds the whole mask), and the
    surface voxels' indices in the full array, shape (n, ndim)."""
    from evaluator.metrics import _compiled  # imports Numba on first use

    if _compiled.surface_in_box is not None and mask.ndim in (2, 3):
        bounds = [0, 1] if mask.ndim == 2 else []
        bounds += [v for b in box for v in (b.start, b.stop)]
        surf3, idx3 = _compiled.surface_in_box(
            _as_3d(mask), np.array(bounds, dtype=np.intp), mask.ndim == 2
        )
        return (surf3[0], idx3[:, 1:]) if mask.ndim == 2 else (surf3, idx3)
    surf = surface_mask(mask[box])
    flat = np.flatnonzero(surf)
    idx = np.stack(np.unravel_index(flat, surf.shape), axis=1)
    idx += np.array([b.start for b in box], dtype=np.intp)
    return surf, idx


@functools.lru_cache(maxsize=64)
def _ball_offsets(
    spacing: tuple[float, ...], radius: float
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Integer offsets whose physical length is <= ``radius`` mm, sorted by that length
    (excluding the zero offset), and the lengths. Cached per (spacing, radius)."""
    reach = [math.floor(radius / s) for s in spacing]
    axes = [np.arange(-r, r + 1) for r in reach]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(spacing))
    # the same formula the k-d tree uses on physical coordinates: sqrt(sum((o * s)**2))
    length = np.sqrt(((grid * np.asarray(spacing)) ** 2).sum(axis=1))
    keep = (length <= radius) & (length > 0)
    order = np.argsort(length[keep], kind="mergesort")
    return grid[keep][order], length[keep][order]


def _nearest(
    ip: NDArray[np.intp],
    iq: NDArray[np.intp],
    sq_mask: BoolArray,
    box_q: tuple[slice, ...],
    spacing: FloatArray,
    workers: int,
) -> FloatArray:
    """Distance from every surface voxel ``ip`` of P to the nearest surface voxel of Q.

    Exact in three steps: voxels on both surfaces are at distance 0; then the integer offsets
    of a ball (:data:`BALL_OFFSETS_COMPILED` of them with the compiled search,
    :data:`BALL_OFFSETS` with NumPy) are tried in order of physical length, so the first offset
    that lands on Q's surface gives the exact nearest distance (all offsets shorter than it
    were tried and missed); what is still unresolved is farther than the ball and queries a
    k-d tree over Q's surface in physical coordinates.
    """
    from evaluator.metrics import _compiled  # imports Numba on first use

    n = ip.shape[0]
    out = np.full(n, np.nan)
    ndim = ip.shape[1]
    sp_t = tuple(float(x) for x in spacing)
    kernel = _compiled.nearest_in_ball if ndim in (2, 3) else None
    radius = _ball_radius(sp_t, BALL_OFFSETS if kernel is None else BALL_OFFSETS_COMPILED)
    offsets, lengths = _ball_offsets(sp_t, radius)
    lo = np.array([s.start for s in box_q], dtype=np.intp)
    if kernel is not None:
        points, offs, mask = ip - lo, offsets, sq_mask
        if ndim == 2:  # a leading axis of length 1
            points = np.pad(points, ((0, 0), (1, 0)))
            offs = np.pad(offsets, ((0, 0), (1, 0)))
            mask = sq_mask[None]
        # the box with one reach of empty voxels on every side: a ball around any voxel of the
        # box stays inside the array
        reach = np.abs(offs).max(axis=0, initial=0)
        padded = np.zeros(tuple(np.array(mask.shape) + 2 * reach), dtype=np.bool_)
        inner = zip(reach, mask.shape, strict=True)
        padded[tuple(slice(int(r), int(r) + m) for r, m in inner)] = mask
        kernel(padded, reach, points, offs, lengths, out)
    else:
        _nearest_numpy(ip - lo, sq_mask, offsets, lengths, radius, sp_t, out)
    rest = np.isnan(out)
    if rest.any():
        from scipy.spatial import cKDTree  # imported here: scipy.spatial is slow to import

        tree = cKDTree(iq * spacing, leafsize=16, balanced_tree=False, compact_nodes=False)
        n_rest = int(rest.sum())
        # starting query threads costs more than it saves for a few thousand points
        threads = workers if n_rest > 20_000 else 1
        out[rest] = tree.query(ip[rest] * spacing, k=1, workers=threads)[0]
    return out


def _nearest_numpy(
    local_q: NDArray[np.intp],
    sq_mask: BoolArray,
    offsets: NDArray[np.intp],
    lengths: FloatArray,
    radius: float,
    spacing: tuple[float, ...],
    out: FloatArray,
) -> None:
    """NumPy twin of :func:`evaluator.metrics._compiled.nearest_in_ball`: for each point
    (``local_q``: coordinates in the frame of Q's surface box ``sq_mask``), 0 on Q's surface,
    else the length of the first offset landing on it; points with no hit are left alone."""
    n, ndim = local_q.shape
    reach = np.array([math.floor(radius / x) for x in spacing], dtype=np.intp)
    shape = np.array(sq_mask.shape, dtype=np.intp)
    # Q's surface box padded by twice the reach: a point up to one reach outside the box plus
    # an offset of up to one reach stays inside the array, so flat indices never wrap.
    pad = 2 * reach
    padded = np.zeros(tuple(shape + 2 * pad), dtype=np.bool_)
    padded[tuple(slice(int(p), int(p + m)) for p, m in zip(pad, shape, strict=True))] = sq_mask
    flat = padded.reshape(-1)
    strides = np.array([math.prod(padded.shape[k + 1 :]) for k in range(ndim)], dtype=np.intp)
    local = local_q + pad
    # axis by axis on columns: integer matmul and n x ndim boolean reductions are slow in numpy
    inside = np.ones(n, dtype=np.bool_)
    # farther than one reach outside the box along some axis k means farther than
    # (reach_k + 1) * spacing_k > radius from all of Q: straight to the tree
    within = np.ones(n, dtype=np.bool_)
    lin_all = np.zeros(n, dtype=np.intp)
    for k in range(ndim):
        col = local[:, k]
        inside &= (col >= pad[k]) & (col < shape[k] + pad[k])
        within &= (col >= reach[k]) & (col < shape[k] + pad[k] + reach[k])
        lin_all += col * strides[k]
    lin_all[~within] = 0
    # distance 0: on both surfaces
    zero = np.zeros(n, dtype=np.bool_)
    zero[inside] = flat[lin_all[inside]]
    out[zero] = 0.0
    todo = np.flatnonzero(within & ~zero)
    cur = lin_all[todo]
    off_lin = offsets @ strides
    # Offsets go in blocks (one gather of todo x block), the first hit in a row being the
    # nearest: fewer Python-level steps, at the price of some gathers past a row's first hit.
    start = 0
    while todo.size and start < off_lin.size:
        block = min(OFFSET_BLOCK if start else 1, off_lin.size - start)
        hits = flat[cur[:, None] + off_lin[None, start : start + block]]
        found = hits.any(axis=1)
        if found.any():
            first = np.argmax(hits[found], axis=1)
            out[todo[found]] = lengths[start + first]
            keep = ~found
            todo, cur = todo[keep], cur[keep]
        start += block


def _ball_radius(spacing: tuple[float, ...], count: int = BALL_OFFSETS) -> float:
    """Radius (mm) of the offset ball: about ``count`` offsets for this spacing."""
    volume_per_offset = math.prod(spacing)
    unit_ball = math.pi ** (len(spacing) / 2) / math.gamma(len(spacing) / 2 + 1)
    return float((count * volume_per_offset / unit_ball) ** (1 / len(spacing)))


def _surface_of(
    mask: BoolArray,
) -> tuple[tuple[slice, ...], BoolArray, NDArray[np.intp]] | None:
    """The mask's bounding box (one voxel of margin), its surface in that box and the surface
    voxels' indices; ``None`` for an empty mask."""
    box = bounding_box(mask)
    if box is None:
        return None
    box = _with_margin(box, mask.shape)
    return (box, *_surface_in_box(mask, box))


def _pair(first: Callable[[], _T], second: Callable[[], _U], parallel: bool) -> tuple[_T, _U]:
    """``(first(), second())``, the second on a helper thread when ``parallel``."""
    if not parallel:
        return first(), second()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scanbench-surface") as pool:
        later = pool.submit(second)
        return first(), later.result()


def directed_distances(
    a: BoolArray,
    b: BoolArray,
    spacing: Sequence[float],
    *,
    method: str = "auto",
    workers: int = -1,
) -> tuple[FloatArray, FloatArray] | None:
    """Distances in mm from each surface voxel of ``a`` to ``b``'s surface, and back.

    Returns ``(d_ab, d_ba)`` as float64 arrays, or ``None`` when either mask is empty (the caller
    applies the empty-mask conventions). ``method`` is ``"auto"``, ``"kdtree"`` or ``"edt"``;
    all give the same values up to float rounding. ``workers`` is the k-d tree query's thread
    count (-1: all cores; pass 1 when cases are already scored in parallel); unless it is 1,
    masks of at least :data:`PARALLEL_MIN_VOXELS` voxels have their two surfaces, then the two
    directions, computed on two threads.

    Cropping never changes a value: a voxel outside a box holding the whole mask is background
    either way, so the surface is the same, and every surface voxel of both masks lies inside
    their union box, so nearest-surface distances computed there are exact.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if len(spacing) != a.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match {a.ndim}-D masks")
    if a.ndim > 1 and abs(a.strides[0]) < abs(a.strides[-1]):
        # Fortran-ordered (NIfTI): work on the transposed, C-ordered view. Distances do not
        # depend on the axis order, and mixing layouts would make every pass cache-hostile.
        a, b, spacing = a.T, b.T, tuple(spacing)[::-1]
    # With workers != 1 and large masks, the two masks (and then the two directions) go to two
    # threads: the surface passes and the compiled search release the GIL. On small masks the
    # hand-offs cost more than they save.
    parallel = workers != 1 and a.size >= PARALLEL_MIN_VOXELS
    got_a, got_b = _pair(lambda: _surface_of(a), lambda: _surface_of(b), parallel)
    if got_a is None or got_b is None:
        return None
    (box_a, sa, ia), (box_b, sb, ib) = got_a, got_b
    na, nb = ia.shape[0], ib.shape[0]
    union = tuple(
        slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(box_a, box_b, strict=True)
    )
    union_size = math.prod(s.stop - s.start for s in union)
    sp = np.asarray(spacing, dtype=np.float64)
    if method == "auto":
        method = "kdtree" if (na + nb) * KD_TREE_BOX_RATIO < union_size else "edt"
    if method == "kdtree":
        d_ab, d_ba = _pair(
            lambda: _nearest(ia, ib, sb, box_b, sp, workers),
            lambda: _nearest(ib, ia, sa, box_a, sp, workers),
            parallel,
        )
    elif method == "edt":
        from scipy import ndimage

        shape = tuple(s.stop - s.start for s in union)
        origin = np.array([s.start for s in union], dtype=np.intp)
        full_a = np.zeros(shape, dtype=np.bool_)
        full_b = np.zeros(shape, dtype=np.bool_)
        full_a[tuple((ia - origin).T)] = True
        full_b[tuple((ib - origin).T)] = True
        d_ab = ndimage.distance_transform_edt(~full_b, sampling=sp)[tuple((ia - origin).T)]
        d_ba = ndimage.distance_transform_edt(~full_a, sampling=sp)[tuple((ib - origin).T)]
    else:
        raise ValueError(f"unknown method {method!r}")
    return np.asarray(d_ab, dtype=np.float64), np.asarray(d_ba, dtype=np.float64)
