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
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MaskSummary",
    "bounding_box",
    "directed_distances",
    "summarize",
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
#: masks whose box (else whole array) holds this many voxels have their surfaces and
#: directions split over two threads
PARALLEL_MIN_VOXELS = 1 << 22
#: use the k-d tree while (surface points) < box voxels / this factor; measured on 2 cores
KD_TREE_BOX_RATIO = 6.0
#: points beyond the ball are searched cube by cube (cubes of 2**FAR_CELL_SHIFT voxels a side)
#: up to this many of them; more go to a k-d tree, whose build then pays for itself. Cubes of 4
#: voxels: only the part of the other surface facing the points is bucketed, and smaller cubes
#: skip more of it (a stray blob's 80-150 points: 150 us against 222 us with cubes of 8)
FAR_CELL_SHIFT = 2
FAR_GRID_MAX_POINTS = 4000


class SurfaceMemo:
    """Surfaces of one mask kept with its summary, by the padding the compiled search wants:
    only for masks that are themselves kept between submissions (a reference's:
    :mod:`evaluator.readers.kept`), whose keeper decides what fits its budget. ``admit``, set
    by the keeper, is called as ``admit(memo, nbytes, store)`` and calls ``store()`` when the
    surface may stay; without it nothing is kept."""

    def __init__(self) -> None:
        self._got: dict[Any, tuple[Any, int]] = {}
        self.admit: Callable[[SurfaceMemo, int, Callable[[], None]], None] | None = None

    def get(self, key: Any) -> Any:
        got = self._got.get(key)
        return None if got is None else got[0]

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        admit = self.admit
        if admit is not None and key not in self._got:
            admit(self, nbytes, lambda: self._got.__setitem__(key, (value, nbytes)))

    @property
    def nbytes(self) -> int:
        return sum(n for _v, n in list(self._got.values()))


@dataclass(frozen=True)
class MaskSummary:
    """What one read of a one-byte mask tells: its nonzero voxels, largest value and box, and
    which rows hold a nonzero voxel, and where in each.

    ``rows``, ``spans`` and ``box`` refer to the mask's C-ordered view: the mask itself, or its
    transpose when ``transposed`` (a Fortran-ordered NIfTI array); rows run along that view's
    last axis.
    """

    count: int
    max: int
    box: tuple[slice, ...] | None
    rows: NDArray[np.uint8]
    spans: NDArray[np.int32]  # first and last nonzero voxel of each nonzero row, (n0, n1, 2)
    transposed: bool
    ndim: int
    #: the mask's surfaces, when the mask is kept between submissions (else None)
    memo: SurfaceMemo | None = field(default=None, compare=False, repr=False)


def _c_view(mask: NDArray[Any]) -> tuple[NDArray[Any], bool] | None:
    """The mask as a C-contiguous array (itself or its transpose), or None."""
    if mask.flags.c_contiguous:
        return mask, False
    if mask.T.flags.c_contiguous:
        return mask.T, True
    return None


def summarize(
    mask: NDArray[Any], *, fortran_rows: NDArray[np.uint8] | None = None
) -> MaskSummary | None:
    """:class:`MaskSummary` of a 2-D or 3-D contiguous mask of a one-byte unsigned or boolean
    type, from one compiled read; ``None`` when the type or layout does not allow it or Numba
    is not installed. ``fortran_rows``: the OR of each run along the first axis of a
    Fortran-ordered mask, in memory order, when the caller already has it (a reader that
    looked at the rows while inflating them); the full read is then skipped."""
    from evaluator.metrics import _compiled  # imports Numba on first use

    if (
        _compiled.summary is None
        or _compiled.row_bits is None
        or mask.ndim not in (2, 3)
        or mask.dtype.itemsize != 1
        or mask.dtype.kind not in "bu"
        or mask.size == 0
    ):
        return None
    got = _c_view(mask)
    if got is None:
        return None
    view, transposed = got
    bytes3 = _as_3d(view.view(np.uint8))
    words = (
        bytes3.view(np.uint64)
        if bytes3.shape[2] % 8 == 0
        else np.zeros((*bytes3.shape[:2], 0), dtype=np.uint64)
    )
    n_rows = bytes3.shape[0] * bytes3.shape[1]
    if fortran_rows is not None and transposed and fortran_rows.size == n_rows:
        rows = fortran_rows.reshape(bytes3.shape[:2])
    else:
        rows = _compiled.row_bits(bytes3)
    stats, spans = _compiled.summary(bytes3, words, rows)
    box = None
    if stats[2] >= 0:
        box3 = tuple(slice(int(stats[2 + 2 * k]), int(stats[3 + 2 * k])) for k in range(3))
        box = box3[3 - mask.ndim :]
    return MaskSummary(int(stats[0]), int(stats[1]), box, rows, spans, transposed, mask.ndim)


def _describes(summary: MaskSummary, view: NDArray[Any], transposed: bool) -> bool:
    """Whether ``summary`` can be of the C-ordered ``view`` (the compiled loops index by it
    without bounds checks, so a summary of another shape must never reach them)."""
    return (
        summary.transposed == transposed
        and summary.ndim == view.ndim
        and summary.rows.shape == _as_3d(view).shape[:2]
        and summary.spans.shape == (*summary.rows.shape, 2)
    )


def overlap_count(a: NDArray[Any], b: NDArray[Any], sa: MaskSummary, sb: MaskSummary) -> int | None:
    """Voxels nonzero in both of two 0/1 one-byte masks of the same shape and layout, reading
    only rows nonzero in both; ``None`` when the summaries do not fit that."""
    from evaluator.metrics import _compiled

    va, vb = _c_view(a), _c_view(b)
    if (
        _compiled.overlap is None
        or va is None
        or vb is None
        or not _describes(sa, va[0], va[1])
        or not _describes(sb, vb[0], vb[1])
        or sa.max > 1
        or sb.max > 1
    ):
        return None
    if sa.box is None or sb.box is None:
        return 0
    return int(
        _compiled.overlap(
            _as_3d(va[0].view(np.uint8)),
            _as_3d(vb[0].view(np.uint8)),
            sa.rows,
            sb.rows,
            sa.spans,
            sb.spans,
        )
    )


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


class _Surface(NamedTuple):
    """A mask's surface: its box (with one voxel of margin), the surface inside that box, the
    surface voxels' indices in the full array, and, when the compiled search will read it, the
    same surface already surrounded by ``reach`` empty voxels on every side (3-D). ``lo``: the
    voxel at the padded array's first voxel plus ``reach``, when that is not the box's first
    voxel (the eight-at-a-time surface widens the box along the last axis so that its words
    line up with the mask's)."""

    box: tuple[slice, ...]
    surf: BoolArray
    idx: NDArray[np.intp]
    padded: BoolArray | None
    lo: tuple[int, ...] | None = None


@functools.lru_cache(maxsize=64)
def _compiled_ball(
    spacing: tuple[float, ...],
) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.intp]]:
    """The compiled search's ball as 3-D offsets (a 2-D ball gets a leading 0), their lengths,
    and its reach along each of the three axes."""
    offsets, lengths = _ball_offsets(spacing, _ball_radius(spacing, BALL_OFFSETS_COMPILED))
    if len(spacing) == 2:  # a leading axis of length 1
        offsets = np.pad(offsets, ((0, 0), (1, 0)))
    reach = np.abs(offsets).max(axis=0, initial=0)
    return offsets, lengths, reach


def _nearest(
    ip: NDArray[np.intp],
    iq: NDArray[np.intp],
    q: _Surface,
    spacing: FloatArray,
    workers: int,
) -> FloatArray:
    """Distance from every surface voxel ``ip`` of P to the nearest surface voxel ``iq`` of Q.

    Exact in three steps: voxels on both surfaces are at distance 0; then the integer offsets
    of a ball (:data:`BALL_OFFSETS_COMPILED` of them with the compiled search,
    :data:`BALL_OFFSETS` with NumPy) are tried in order of physical length, so the first offset
    that lands on Q's surface gives the exact nearest distance (all offsets shorter than it
    were tried and missed); what is still unresolved is farther than the ball and is searched
    over Q's surface voxels, cube by cube (compiled, a few thousand points) or with a k-d tree.
    Every distance is ``sqrt(sum((offset * spacing) ** 2))``, the formula of the ball.
    """
    from evaluator.metrics import _compiled  # imports Numba on first use

    n, ndim = ip.shape
    sp_t = tuple(float(x) for x in spacing)
    kernel = _compiled.nearest_in_ball if ndim in (2, 3) else None
    lo = np.array([s.start for s in q.box] if q.lo is None else q.lo, dtype=np.intp)
    if kernel is not None:
        out = np.empty(n)
        offs, lengths, reach = _compiled_ball(sp_t)
        points = ip
        if ndim == 2:  # a leading axis of length 1
            points, lo = np.pad(ip, ((0, 0), (1, 0))), np.concatenate(([0], lo))
        padded = q.padded
        if padded is None:
            # the box with one reach of empty voxels on every side: a ball around any voxel of
            # the box stays inside the array
            mask = q.surf if ndim == 3 else q.surf[None]
            padded = np.zeros(tuple(np.array(mask.shape) + 2 * reach), dtype=np.bool_)
            inner = zip(reach, mask.shape, strict=True)
            padded[tuple(slice(int(r), int(r) + m) for r, m in inner)] = mask
        sp3 = spacing if ndim == 3 else np.concatenate(([1.0], spacing))
        rest = kernel(padded, reach, points, lo, offs, lengths, sp3, out)
    else:
        out = np.full(n, np.nan)
        radius = _ball_radius(sp_t, BALL_OFFSETS)
        offsets, lengths = _ball_offsets(sp_t, radius)
        _nearest_numpy(ip - lo, q.surf, offsets, lengths, radius, sp_t, out)
        rest = np.flatnonzero(np.isnan(out))
    if rest.size:
        _nearest_far(ip, rest, iq, spacing, workers, out)
    return out


def _nearest_far(
    ip: NDArray[np.intp],
    rest: NDArray[np.intp],
    iq: NDArray[np.intp],
    spacing: FloatArray,
    workers: int,
    out: FloatArray,
) -> None:
    """Fill ``out[rest]`` with the exact nearest distance from ``ip[rest]`` to the voxels
    ``iq``, with the ball's formula."""
    from evaluator.metrics import _compiled

    ndim = ip.shape[1]
    if _compiled.nearest_far is not None and ndim in (2, 3) and rest.size <= FAR_GRID_MAX_POINTS:
        if ndim == 2:
            ip, iq = np.pad(ip, ((0, 0), (1, 0))), np.pad(iq, ((0, 0), (1, 0)))
            spacing = np.concatenate(([1.0], spacing))
        _compiled.nearest_far(ip, rest, iq, spacing, FAR_CELL_SHIFT, out)
        return
    from scipy.spatial import cKDTree  # imported here: scipy.spatial is slow to import

    tree = cKDTree(iq * spacing, leafsize=16, balanced_tree=False, compact_nodes=False)
    # starting query threads costs more than it saves for a few thousand points
    threads = workers if rest.size > 20_000 else 1
    nearest = tree.query(ip[rest] * spacing, k=1, workers=threads)[1]
    # the distance to the voxel found, with the ball's formula (the tree's own differs from it
    # in the last bit now and then)
    out[rest] = np.sqrt((((ip[rest] - iq[nearest]) * spacing) ** 2).sum(axis=1))


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
    mask: BoolArray, summary: MaskSummary | None, pad: NDArray[np.intp] | None
) -> _Surface | None:
    """The mask's surface (see :class:`_Surface`); ``None`` for an empty mask. With a
    ``summary`` of this (C-ordered) mask, only its nonzero rows are read; with ``pad`` (the
    compiled ball's reach) the surface also comes padded for the compiled search."""
    from evaluator.metrics import _compiled

    if summary is not None and summary.box is None:
        return None
    box = summary.box if summary is not None else bounding_box(mask)
    if box is None:
        return None
    box = _with_margin(box, mask.shape)
    if summary is None or pad is None or _compiled.surface_in_rows is None:
        return _Surface(box, *_surface_in_box(mask, box), None)
    memo = summary.memo
    key = (tuple(int(x) for x in pad), mask.shape)
    if memo is not None and (known := memo.get(key)) is not None:
        return known
    bounds = [0, 1] if mask.ndim == 2 else []
    bounds += [v for b in box for v in (b.start, b.stop)]
    mask3 = _as_3d(mask).view(np.uint8)
    lo: tuple[int, ...] | None = None
    if (
        _compiled.surface_in_words is not None
        and mask3.shape[2] % 8 == 0
        and mask3.ctypes.data % 8 == 0
        and summary.max <= 1
    ):
        # eight voxels at a time; the padded array starts, along the last axis, at a multiple
        # of 8 at least one reach before the box and ends at least one reach after it
        b2, e2, p2 = bounds[4], bounds[5], int(pad[2])
        start2 = (b2 - p2) // 8 * 8
        width2 = -(-(max(e2 + p2, -(-e2 // 8) * 8) - start2) // 8) * 8
        words, idx3 = _compiled.surface_in_words(
            mask3.view(np.uint64),
            summary.rows,
            summary.spans,
            np.array(bounds, dtype=np.intp),
            mask.ndim == 2,
            pad,
            start2,
            width2,
        )
        padded = words.view(np.uint8).view(np.bool_)
        first = (int(pad[0]), int(pad[1]), b2 - start2)
        lo = (bounds[0], bounds[2], start2 + p2)[3 - mask.ndim :]
    else:
        padded8, idx3 = _compiled.surface_in_rows(
            mask3,
            summary.rows,
            summary.spans,
            np.array(bounds, dtype=np.intp),
            mask.ndim == 2,
            pad,
        )
        padded = padded8.view(np.bool_)
        first = (int(pad[0]), int(pad[1]), int(pad[2]))
    inner = padded[
        tuple(
            slice(f, f + (e - b)) for f, b, e in zip(first, bounds[::2], bounds[1::2], strict=True)
        )
    ]
    if mask.ndim == 2:
        got = _Surface(box, inner[0], idx3[:, 1:], padded, lo)
    else:
        got = _Surface(box, inner, idx3, padded, lo)
    if memo is not None:
        memo.put(key, got, padded.nbytes + idx3.nbytes)
    return got


def _box_size(box: tuple[slice, ...] | None) -> int:
    return 0 if box is None else math.prod(b.stop - b.start for b in box)


def _summary_of(
    mask: NDArray[Any], given: MaskSummary | None, transpose: bool
) -> MaskSummary | None:
    """A summary of ``mask`` whose rows run along the axis the distance passes will use (the
    one given, else one computed now), or ``None`` when none fits."""
    got = given if given is not None else summarize(mask)
    if got is None:
        return None
    view = mask.T if transpose else mask
    return got if _describes(got, view, transpose) else None


_helper: tuple[int, ThreadPoolExecutor] | None = None
_helper_lock = threading.Lock()


def _helper_thread() -> ThreadPoolExecutor:
    """One helper thread for the whole process, started on first use (and again in a forked
    child, where the parent's thread does not exist)."""
    global _helper
    with _helper_lock:
        if _helper is None or _helper[0] != os.getpid():
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scanbench-surface")
            _helper = (os.getpid(), pool)
        return _helper[1]


def _pair(first: Callable[[], _T], second: Callable[[], _U], parallel: bool) -> tuple[_T, _U]:
    """``(first(), second())``, the second on the helper thread when ``parallel``."""
    if not parallel:
        return first(), second()
    later = _helper_thread().submit(second)
    return first(), later.result()


def directed_distances(
    a: BoolArray,
    b: BoolArray,
    spacing: Sequence[float],
    *,
    method: str = "auto",
    workers: int = -1,
    summaries: tuple[MaskSummary | None, MaskSummary | None] = (None, None),
) -> tuple[FloatArray, FloatArray] | None:
    """Distances in mm from each surface voxel of ``a`` to ``b``'s surface, and back.

    Returns ``(d_ab, d_ba)`` as float64 arrays, or ``None`` when either mask is empty (the caller
    applies the empty-mask conventions). ``method`` is ``"auto"``, ``"kdtree"`` or ``"edt"``;
    all give the same values up to float rounding. ``workers`` is the k-d tree query's thread
    count (-1: all cores; pass 1 when cases are already scored in parallel); unless it is 1,
    masks whose box holds at least :data:`PARALLEL_MIN_VOXELS` voxels have their two surfaces,
    then the two directions, computed on two threads (the second on one helper thread kept for
    the process). ``summaries`` (from :func:`summarize` on ``a`` and
    ``b``, when the caller has them) spare a read of each mask.

    Cropping never changes a value: a voxel outside a box holding the whole mask is background
    either way, so the surface is the same, and every surface voxel of both masks lies inside
    their union box, so nearest-surface distances computed there are exact.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if len(spacing) != a.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match {a.ndim}-D masks")
    transpose = a.ndim > 1 and abs(a.strides[0]) < abs(a.strides[-1])
    # With workers != 1 and large masks, the two masks (and then the two directions) go to two
    # threads: the surface passes and the compiled search release the GIL. On small masks the
    # hand-offs cost more than they save.
    given = summaries[0] is not None and summaries[1] is not None
    sum_a, sum_b = _pair(
        lambda: _summary_of(a, summaries[0], transpose),
        lambda: _summary_of(b, summaries[1], transpose),
        workers != 1 and not given and a.size >= PARALLEL_MIN_VOXELS,
    )
    # the work from here on is in the masks' boxes
    work = max(_box_size(x.box) if x is not None else a.size for x in (sum_a, sum_b))
    parallel = workers != 1 and work >= PARALLEL_MIN_VOXELS
    if transpose:
        # Fortran-ordered (NIfTI): work on the transposed, C-ordered view. Distances do not
        # depend on the axis order, and mixing layouts would make every pass cache-hostile.
        a, b, spacing = a.T, b.T, tuple(spacing)[::-1]
    sp_t = tuple(float(x) for x in spacing)
    pad = _compiled_ball(sp_t)[2] if method != "edt" and a.ndim in (2, 3) else None
    got_a, got_b = _pair(
        lambda: _surface_of(a, sum_a, pad), lambda: _surface_of(b, sum_b, pad), parallel
    )
    if got_a is None or got_b is None:
        return None
    box_a, ia, box_b, ib = got_a.box, got_a.idx, got_b.box, got_b.idx
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
            lambda: _nearest(ia, ib, got_b, sp, workers),
            lambda: _nearest(ib, ia, got_a, sp, workers),
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
