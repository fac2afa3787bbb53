"""Compiled inner loops of mask reading and the segmentation metrics (Numba), when installed.

The loops: storing an inflated step's nonzero rows and noting them (:func:`_store_rows`,
:func:`_clear_rows`), and writing back a kept mask's rows (:func:`_restore_rows`); one read of a
mask for its rows, counts, maximum, box and row spans (:func:`_row_bits`, :func:`_summary`); the
true positives of two masks from their rows (:func:`_overlap`); surface voxels, from a mask's
box (:func:`_surface_in_box`) or from its rows (:func:`_surface_in_rows`, eight voxels at a
time in :func:`_surface_in_words`); the search of each surface voxel's nearest voxel on the
other surface within a ball (:func:`_nearest_in_ball`) and beyond it (:func:`_nearest_far`).
The platform installs Numba (``requirements.txt``); the ``scanbench`` client does not need it
(``pip install 'scanbench[fast]'`` adds it). Without it, the readers and
:mod:`evaluator.metrics.surface` take NumPy paths with the same results, several times slower.
``SCANBENCH_NO_COMPILED=1`` forces those paths; the tests compare the two.

Every loop works on 3-D arrays; a 2-D mask is given a leading axis of length 1. Compiled code is
cached on disk next to this file, or under ``NUMBA_CACHE_DIR``; where neither is writable it is
compiled in memory once per process (about a second). A worker process loads it from the cache
the first time it scores distances (about 0.3 s).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np

trailing_zeros: Any = None  # the count of trailing zero bits, one instruction in compiled code
with contextlib.suppress(ImportError):  # without Numba no loop here is compiled
    from numba.cpython.unsafe.numbers import trailing_zeros

__all__ = [
    "bounding_box",
    "clear_rows",
    "kernel_name",
    "nearest_far",
    "nearest_in_ball",
    "overlap",
    "pick_rows",
    "restore_rows",
    "row_bits",
    "store_rows",
    "summary",
    "summary_of_rows",
    "surface_in_box",
    "surface_in_rows",
    "surface_in_words",
]


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


def _row_bits(mask: Any) -> Any:  # pragma: no cover - runs compiled
    """The OR of each row's bytes of a 3-D one-byte mask: one OR reduction per row, indexed
    with unsigned integers so that it vectorizes."""
    n0, n1, n2 = mask.shape
    rows = np.zeros((n0, n1), dtype=np.uint8)
    for i in range(n0):
        for j in range(n1):
            row = mask[i, j]
            acc = np.uint8(0)
            for k in range(np.uint64(n2)):
                acc |= row[k]
            rows[i, j] = acc
    return rows


def _summary(mask: Any, words: Any, rows: Any) -> Any:  # pragma: no cover - runs compiled
    """[count of nonzero voxels, largest value, start0, stop0, start1, stop1, start2, stop2] of
    a 3-D one-byte mask (as uint8), the box all -1 when it is empty, and each nonzero row's
    first and last nonzero voxel, (n0, n1, 2) (only those rows' entries are set).

    ``rows``: the OR of each row (:func:`_row_bits`); ``words``: the mask read as 8-byte words,
    or an empty last axis when its rows are not a multiple of 8 bytes. Only the nonzero rows
    are read: word by word up to their first and last nonzero voxel, then between those.
    """
    n0, n1, n2 = mask.shape
    nw = words.shape[2]
    spans = np.empty((n0, n1, 2), dtype=np.int32)
    count, top = 0, 0
    lo0, hi0, lo1, hi1, lo2, hi2 = n0, -1, n1, -1, n2, -1
    for i in range(n0):
        for j in range(n1):
            bits = rows[i, j]
            if bits == 0:
                continue
            row = mask[i, j]
            kw = 0
            while kw < nw and words[i, j, kw] == 0:
                kw += 1
            first = kw * 8
            while row[first] == 0:
                first += 1
            kw = nw - 1
            while kw >= 0 and words[i, j, kw] == 0:
                kw -= 1
            last = kw * 8 + 7 if nw > 0 else n2 - 1
            while row[last] == 0:
                last -= 1
            spans[i, j, 0], spans[i, j, 1] = first, last
            lo0, hi0 = min(lo0, i), max(hi0, i)
            lo1, hi1 = min(lo1, j), max(hi1, j)
            lo2, hi2 = min(lo2, first), max(hi2, last)
            c = 0
            span = row[first:]
            if bits == 1:  # every value of the row is 0 or 1
                for k in range(np.uint64(last - first + 1)):
                    c += span[k]
                top = max(top, 1)
            else:
                m = 0
                for k in range(np.uint64(last - first + 1)):
                    v = span[k]
                    c += v != 0
                    m = max(m, v)
                top = max(top, m)
            count += c
    out = np.full(8, -1, dtype=np.int64)
    out[0], out[1] = count, top
    if hi0 >= 0:
        out[2], out[3], out[4], out[5], out[6], out[7] = lo0, hi0 + 1, lo1, hi1 + 1, lo2, hi2 + 1
    return out, spans


def _row_ors(src: Any, width: int, out: Any, at: int) -> None:  # pragma: no cover - compiled
    """``out[at + r]`` = the OR of row r of ``src`` (1-D, uint8: whole rows of ``width`` bytes),
    for every row; indexed with unsigned integers so that the loop vectorizes."""
    w = np.uint64(width)
    for r in range(src.size // width):
        base = np.uint64(r * width)
        acc = np.uint8(0)
        for k in range(w):
            acc |= src[base + k]
        out[at + r] = acc


def _store_rows(
    src: Any, dst: Any, rows: Any, dirty: Any, start: int, width: int
) -> None:  # pragma: no cover - runs compiled
    """Copy the rows of ``src`` (1-D, uint8: whole rows of ``width`` bytes) that hold a
    nonzero byte into ``dst`` (1-D) from byte ``start`` on, and set the rows' entries of
    ``rows`` (from row ``start // width``) to the OR of each row. ``dst`` is zero except in the
    rows marked in ``dirty`` (indexed like ``rows``; empty when ``dst`` is all zeros): those of
    them that are empty now are zeroed."""
    first = start // width
    w = np.uint64(width)
    n = src.size // width
    # two passes, unsigned offsets: each loop vectorizes (a copy inside the first one stops it)
    row_ors(src, width, rows, first)
    stale = dirty.size > 0
    for r in range(n):
        to = np.uint64(start + r * width)
        if rows[first + r]:
            base = np.uint64(r * width)
            for k in range(w):
                dst[to + k] = src[base + k]
        elif stale and dirty[first + r]:
            for k in range(w):
                dst[to + k] = 0


def _pick_rows(
    src: Any, width: int, first: int, ors: Any, which: Any, packed: Any, count: int
) -> int:  # pragma: no cover - runs compiled
    """Append the rows of ``src`` (1-D, uint8: whole rows of ``width`` bytes, the first one
    being row ``first``) that hold a nonzero byte to ``packed`` (rows of ``width`` bytes) from
    row ``count`` on, with their numbers in ``which``; returns the new count. ``ors``: room
    for the OR of each row of ``src``. How a decoding child turns a streamed mask straight
    into the rows it sends. Two passes, as in :func:`_store_rows`: each loop vectorizes."""
    w = np.uint64(width)
    n = src.size // width
    row_ors(src, width, ors, 0)
    for r in range(n):
        if ors[r]:
            base = np.uint64(r * width)
            to = np.uint64(count) * w
            for k in range(w):
                packed[to + k] = src[base + k]
            which[count] = first + r
            count += 1
    return count


def _summary_of_rows(
    which: Any, packed: Any, words: Any, n0: int, n1: int
) -> Any:  # pragma: no cover - runs compiled
    """:func:`_summary` of a one-byte mask given as its rows ``packed`` ((k, width), uint8)
    with their numbers ``which`` in memory order (every other row zero), the mask's C-ordered
    view being (n0, n1, width): the stats, the OR of every row as (n0, n1), and the spans.
    ``words``: ``packed`` read as 8-byte words, or an empty last axis. Reads only the rows
    given, one after the other (how the parent summarizes a mask a decoding child sent). The
    steps per row are :func:`_summary`'s, written out again on purpose: one compiled helper for
    both (the row's ends, count and largest value; inlined or not) made :func:`_summary` 30 to
    90 % slower here."""
    k, width = packed.shape
    nw = words.shape[1]
    rows = np.zeros((n0, n1), dtype=np.uint8)
    spans = np.empty((n0, n1, 2), dtype=np.int32)
    count, top = 0, 0
    lo0, hi0, lo1, hi1, lo2, hi2 = n0, -1, n1, -1, width, -1
    w = np.uint64(width)
    for t in range(k):
        row = packed[t]
        bits = np.uint8(0)
        for q in range(w):
            bits |= row[q]
        if bits == 0:
            continue
        r = which[t]
        i = r // n1
        j = r - i * n1
        rows[i, j] = bits
        kw = 0
        while kw < nw and words[t, kw] == 0:
            kw += 1
        first = kw * 8
        while row[first] == 0:
            first += 1
        kw = nw - 1
        while kw >= 0 and words[t, kw] == 0:
            kw -= 1
        last = kw * 8 + 7 if nw > 0 else width - 1
        while row[last] == 0:
            last -= 1
        spans[i, j, 0], spans[i, j, 1] = first, last
        lo0, hi0 = min(lo0, i), max(hi0, i)
        lo1, hi1 = min(lo1, j), max(hi1, j)
        lo2, hi2 = min(lo2, first), max(hi2, last)
        c = 0
        span = row[first:]
        if bits == 1:  # every value of the row is 0 or 1
            for q in range(np.uint64(last - first + 1)):
                c += span[q]
            top = max(top, 1)
        else:
            m = 0
            for q in range(np.uint64(last - first + 1)):
                v = span[q]
                c += v != 0
                m = max(m, v)
            top = max(top, m)
        count += c
    out = np.full(8, -1, dtype=np.int64)
    out[0], out[1] = count, top
    if hi0 >= 0:
        out[2], out[3], out[4], out[5], out[6], out[7] = lo0, hi0 + 1, lo1, hi1 + 1, lo2, hi2 + 1
    return out, rows, spans


def _clear_rows(voxels: Any, rows: Any) -> None:  # pragma: no cover - runs compiled
    """Zero the rows of ``voxels`` (2-D, uint8) whose entry in ``rows`` is nonzero."""
    n, width = voxels.shape
    for r in range(n):
        if rows[r]:
            out = voxels[r]
            for k in range(np.uint64(width)):
                out[k] = 0


def _restore_rows(voxels: Any, dirty: Any, which: Any, packed: Any) -> None:  # pragma: no cover
    """Zero the rows of ``voxels`` (2-D, uint8) marked in ``dirty`` (empty: none), then write
    ``packed[t]`` into row ``which[t]`` for every t."""
    n, width = voxels.shape
    w = np.uint64(width)
    if dirty.size:
        for r in range(n):
            if dirty[r]:
                out = voxels[r]
                for k in range(w):
                    out[k] = 0
    for t in range(which.size):
        out, src = voxels[which[t]], packed[t]
        for k in range(w):
            out[k] = src[k]


def _overlap(
    a: Any, b: Any, rows_a: Any, rows_b: Any, spans_a: Any, spans_b: Any
) -> int:  # pragma: no cover - runs compiled
    """Voxels nonzero in both 0/1 masks (3-D, uint8), reading only the rows nonzero in both,
    between where both rows' spans (first and last nonzero voxel) overlap."""
    n0, n1 = a.shape[0], a.shape[1]
    total = 0
    for i in range(n0):
        for j in range(n1):
            if rows_a[i, j] == 0 or rows_b[i, j] == 0:
                continue
            first = max(spans_a[i, j, 0], spans_b[i, j, 0])
            last = min(spans_a[i, j, 1], spans_b[i, j, 1])
            if last < first:
                continue
            ra, rb = a[i, j, first:], b[i, j, first:]
            c = 0
            for k in range(np.uint64(last - first + 1)):
                c += ra[k] & rb[k]
            total += c
    return total


def _surface_in_rows(
    mask: Any, rows: Any, spans: Any, box: Any, planar: bool, pad: Any
) -> Any:  # pragma: no cover - runs compiled
    """:func:`_surface_in_box` for a 0/1 mask (uint8) with its :func:`_summary`: only rows
    holding a voxel are read, between their first and last voxel (``spans``), as whole-row
    byte operations that vectorize. A voxel is interior when it and its six face neighbours
    are set; the two ends of a row's span, and every voxel of a row next to an empty row or
    the border, are surface. The surface is returned as uint8 in the box surrounded by
    ``pad[k]`` zeros on both sides of axis k, with the surface voxels' indices, (n, 3)."""
    n0, n1 = mask.shape[0], mask.shape[1]
    b0, e0, b1, e1, b2, e2 = box[0], box[1], box[2], box[3], box[4], box[5]
    p0, p1, p2 = pad[0], pad[1], pad[2]
    surf = np.zeros((e0 - b0 + 2 * p0, e1 - b1 + 2 * p1, e2 - b2 + 2 * p2), dtype=np.uint8)
    found = np.zeros((e0 - b0, e1 - b1), dtype=np.int32)  # surface voxels per row of the box
    one = np.uint64(1)
    count = 0
    # Loops index with unsigned integers: Numba then drops its negative-index handling and the
    # row loops vectorize.
    for i in range(b0, e0):
        for j in range(b1, e1):
            if rows[i, j] == 0:
                continue
            first, last = spans[i, j, 0], spans[i, j, 1]
            n = np.uint64(last - first + 1)
            row = mask[i, j, first:]
            out = surf[i - b0 + p0, j - b1 + p1, first - b2 + p2 :]
            full = 0 < j < n1 - 1 and rows[i, j - 1] != 0 and rows[i, j + 1] != 0
            if not planar:
                full = full and 0 < i < n0 - 1 and rows[i - 1, j] != 0 and rows[i + 1, j] != 0
            c = 0
            if not full:  # a face neighbour of every voxel is empty or outside: all surface
                for k in range(n):
                    out[k] = row[k]
                for k in range(n):
                    c += row[k]
            else:
                left, right = mask[i, j - 1, first:], mask[i, j + 1, first:]
                if planar:
                    up, down = left, right
                else:
                    up, down = mask[i - 1, j, first:], mask[i + 1, j, first:]
                out[0] = 1
                out[n - one] = 1
                for k in range(one, n - one):
                    inner = row[k - one] & row[k + one] & left[k] & right[k] & up[k] & down[k]
                    out[k] = row[k] & (inner ^ np.uint8(1))
                for k in range(one, n - one):
                    c += out[k]
                c += 1 if n == one else 2
            found[i - b0, j - b1] = c
            count += c
    idx = np.empty((count, 3), dtype=np.intp)
    c = 0
    for i in range(b0, e0):
        for j in range(b1, e1):
            here = found[i - b0, j - b1]
            if here == 0:
                continue
            first, last = spans[i, j, 0], spans[i, j, 1]
            if here <= 2 and (here == 2) == (last > first):  # only the two ends
                idx[c, 0], idx[c, 1], idx[c, 2] = i, j, first
                c += 1
                if last > first:
                    idx[c, 0], idx[c, 1], idx[c, 2] = i, j, last
                    c += 1
                continue
            out = surf[i - b0 + p0, j - b1 + p1, first - b2 + p2 :]
            for k in range(np.uint64(last - first + 1)):
                if out[k]:
                    idx[c, 0], idx[c, 1], idx[c, 2] = i, j, first + np.int64(k)
                    c += 1
    return surf, idx


def _surface_in_words(
    words: Any, rows: Any, spans: Any, box: Any, planar: bool, pad: Any, start2: int, width2: int
) -> Any:  # pragma: no cover - runs compiled
    """:func:`_surface_in_rows` eight voxels at a time, for a 0/1 mask whose rows are whole
    8-byte words (``words``: the mask viewed as uint64, (n0, n1, n2 // 8)). A voxel's left and
    right neighbours along the row are its word shifted by a byte (with the byte carried over
    from the next word); the four other face neighbours are the same word of the rows around.
    The padded surface has ``pad`` zeros on both sides of the first two axes; along the last,
    its byte 0 is the mask's voxel ``start2`` (a multiple of 8, so that the words line up) and
    it is ``width2`` bytes long (a multiple of 8). Returned as uint64 words, with the surface
    voxels' indices in the same order as :func:`_surface_in_rows` gives them.

    Arrays are indexed directly rather than through per-row views: creating a view per row
    costs more than the row's work here."""
    n0, n1 = words.shape[0], words.shape[1]
    b0, e0, b1, e1 = box[0], box[1], box[2], box[3]
    p0, p1 = pad[0], pad[1]
    out = np.zeros((e0 - b0 + 2 * p0, e1 - b1 + 2 * p1, width2 >> 3), dtype=np.uint64)
    found = np.zeros((e0 - b0, e1 - b1), dtype=np.int64)
    shift = start2 >> 3
    ones = np.uint64(0x0101010101010101)  # (w * ones) >> 56: the sum of w's bytes (0/1 each)
    s8, s56, zero = np.uint64(8), np.uint64(56), np.uint64(0)
    count = np.int64(0)
    for i in range(b0, e0):
        for j in range(b1, e1):
            if rows[i, j] == 0:
                continue
            wa, wb = spans[i, j, 0] >> 3, spans[i, j, 1] >> 3
            oi, oj = i - b0 + p0, j - b1 + p1
            full = 0 < j < n1 - 1 and rows[i, j - 1] != 0 and rows[i, j + 1] != 0
            if not planar:
                full = full and 0 < i < n0 - 1 and rows[i - 1, j] != 0 and rows[i + 1, j] != 0
            c = zero
            if not full:  # a face neighbour of every voxel is empty or outside: all surface
                for w in range(wa, wb + 1):
                    v = words[i, j, w]
                    out[oi, oj, w - shift] = v
                    c += (v * ones) >> s56
            else:
                iu, idn = (i, i) if planar else (i - 1, i + 1)
                ju, jd = (j - 1, j + 1) if planar else (j, j)
                # the voxels just before and after the span are 0 (or outside the row), so
                # the words around the span carry nothing in: that makes its ends surface
                prv = zero
                for w in range(wa, wb + 1):
                    v = words[i, j, w]
                    nxt = words[i, j, w + 1] if w < wb else zero
                    # byte k of (v << 8 | ...) is voxel k - 1, of (v >> 8 | ...) voxel k + 1
                    inner = v & ((v << s8) | (prv >> s56)) & ((v >> s8) | (nxt << s56))
                    inner &= words[i, j - 1, w] & words[i, j + 1, w]
                    inner &= words[iu, ju, w] & words[idn, jd, w]
                    here = v & ~inner
                    out[oi, oj, w - shift] = here
                    c += (here * ones) >> s56
                    prv = v
            found[i - b0, j - b1] = np.int64(c)
            count += np.int64(c)
    idx = np.empty((count, 3), dtype=np.intp)
    t = 0
    for i in range(b0, e0):
        for j in range(b1, e1):
            if found[i - b0, j - b1] == 0:
                continue
            wa, wb = spans[i, j, 0] >> 3, spans[i, j, 1] >> 3
            oi, oj = i - b0 + p0, j - b1 + p1
            for w in range(wa, wb + 1):
                here = out[oi, oj, w - shift]
                while here:  # each set byte is one voxel: lowest first
                    idx[t, 0], idx[t, 1], idx[t, 2] = i, j, w * 8 + (trailing_zeros(here) >> 3)
                    t += 1
                    here &= here - np.uint64(1)
    return out, idx


def _nearest_far(
    points: Any, todo: Any, q_all: Any, spacing: Any, shift: int, out: Any
) -> None:  # pragma: no cover - runs compiled
    """Exact nearest distance from ``points[todo]`` to the points ``q_all`` ((m, 3) voxel
    indices), in mm: ``sqrt(sum(((p - q) * spacing) ** 2))``, the formula of the offset ball's
    lengths.

    First the points of ``q_all`` that can be the nearest of none of ``points[todo]`` are
    dropped, in one pass: with B the box of those points, every one of them is within
    maxdist(B, q) of each q, so none has its nearest farther than the least such bound, and a q
    farther than that from all of B is never the nearest. Far points are mostly one cluster (a
    stray blob), which keeps only the part of the surface facing it. The rest is bucketed into
    cubes of ``2**shift`` voxels a side; each point starts from the distance to the previous
    point's nearest voxel (close: the points come in clusters) and reads only the cubes whose
    voxels' box is nearer than the nearest found so far.
    """
    if q_all.shape[0] == 0 or todo.size == 0:
        return
    s0, s1, s2 = spacing[0], spacing[1], spacing[2]
    pl0, ph0 = points[todo[0], 0], points[todo[0], 0]
    pl1, ph1 = points[todo[0], 1], points[todo[0], 1]
    pl2, ph2 = points[todo[0], 2], points[todo[0], 2]
    for t in range(todo.size):
        i = todo[t]
        pl0, ph0 = min(pl0, points[i, 0]), max(ph0, points[i, 0])
        pl1, ph1 = min(pl1, points[i, 1]), max(ph1, points[i, 1])
        pl2, ph2 = min(pl2, points[i, 2]), max(ph2, points[i, 2])
    reach = np.inf
    for t in range(q_all.shape[0]):
        f0 = max(q_all[t, 0] - pl0, ph0 - q_all[t, 0]) * s0
        f1 = max(q_all[t, 1] - pl1, ph1 - q_all[t, 1]) * s1
        f2 = max(q_all[t, 2] - pl2, ph2 - q_all[t, 2]) * s2
        reach = min(reach, f0 * f0 + f1 * f1 + f2 * f2)
    reach *= 1.0 + 1e-9  # what is kept is a superset, whatever the rounding
    keep = np.empty(q_all.shape[0], dtype=np.intp)
    m = 0
    for t in range(q_all.shape[0]):
        e0 = max(q_all[t, 0] - ph0, pl0 - q_all[t, 0], 0) * s0
        e1 = max(q_all[t, 1] - ph1, pl1 - q_all[t, 1], 0) * s1
        e2 = max(q_all[t, 2] - ph2, pl2 - q_all[t, 2], 0) * s2
        if e0 * e0 + e1 * e1 + e2 * e2 <= reach:
            keep[m] = t
            m += 1
    q = np.empty((m, 3), dtype=np.intp)
    for t in range(m):
        q[t, 0], q[t, 1], q[t, 2] = q_all[keep[t], 0], q_all[keep[t], 1], q_all[keep[t], 2]
    lo0, lo1, lo2 = q[0, 0], q[0, 1], q[0, 2]
    hi0, hi1, hi2 = lo0, lo1, lo2
    for t in range(m):
        lo0, hi0 = min(lo0, q[t, 0]), max(hi0, q[t, 0])
        lo1, hi1 = min(lo1, q[t, 1]), max(hi1, q[t, 1])
        lo2, hi2 = min(lo2, q[t, 2]), max(hi2, q[t, 2])
    # cubes of 2**shift voxels: a shift, where an integer division would cost tens of cycles
    g0, g1, g2 = ((hi0 - lo0) >> shift) + 1, ((hi1 - lo1) >> shift) + 1, ((hi2 - lo2) >> shift) + 1
    which = np.empty(m, dtype=np.intp)
    starts = np.zeros(g0 * g1 * g2 + 1, dtype=np.intp)
    for t in range(m):
        c = (((q[t, 0] - lo0) >> shift) * g1 + ((q[t, 1] - lo1) >> shift)) * g2 + (
            (q[t, 2] - lo2) >> shift
        )
        which[t] = c
        starts[c + 1] += 1
    for c in range(g0 * g1 * g2):
        starts[c + 1] += starts[c]
    fill = starts[:-1].copy()
    members = np.empty(m, dtype=np.intp)
    for t in range(m):
        members[fill[which[t]]] = t
        fill[which[t]] += 1
    # the members' coordinates in cube order, one array per axis: a cube is read as contiguous
    # runs instead of through the member list
    m0, m1, m2 = np.empty(m, dtype=np.intp), np.empty(m, dtype=np.intp), np.empty(m, dtype=np.intp)
    for v in range(m):
        w = members[v]
        m0[v], m1[v], m2[v] = q[w, 0], q[w, 1], q[w, 2]
    cells = np.flatnonzero(starts[1:] > starts[:-1])
    nc = cells.size
    # the box of each non-empty cube's own voxels, [lo, hi] per axis: a surface crosses a cube
    # as a thin sheet, so this bound is much tighter than the cube's
    # one array per bound (structure of arrays): the bounds of all cubes for a point are then
    # computed in one loop without a branch, which vectorizes; the cubes are read in a second
    lo0, hi0 = np.empty(nc, dtype=np.intp), np.empty(nc, dtype=np.intp)
    lo1, hi1 = np.empty(nc, dtype=np.intp), np.empty(nc, dtype=np.intp)
    lo2, hi2 = np.empty(nc, dtype=np.intp), np.empty(nc, dtype=np.intp)
    for u in range(nc):
        c = cells[u]
        w = members[starts[c]]
        a0, b0, a1, b1, a2, b2 = q[w, 0], q[w, 0], q[w, 1], q[w, 1], q[w, 2], q[w, 2]
        for v in range(starts[c] + 1, starts[c + 1]):
            a0, b0 = min(a0, m0[v]), max(b0, m0[v])
            a1, b1 = min(a1, m1[v]), max(b1, m1[v])
            a2, b2 = min(a2, m2[v]), max(b2, m2[v])
        lo0[u], hi0[u], lo1[u], hi1[u], lo2[u], hi2[u] = a0, b0, a1, b1, a2, b2
    bound = np.empty(nc, dtype=np.float64)
    near = 0  # the nearest voxel of the previous point: a close first guess for the next
    for t in range(todo.size):
        i = todo[t]
        x0, x1, x2 = points[i, 0], points[i, 1], points[i, 2]
        d0 = (x0 - q[near, 0]) * s0
        d1 = (x1 - q[near, 1]) * s1
        d2 = (x2 - q[near, 2]) * s2
        best = d0 * d0 + d1 * d1 + d2 * d2
        for u in range(nc):
            e0 = max(lo0[u] - x0, x0 - hi0[u], 0) * s0
            e1 = max(lo1[u] - x1, x1 - hi1[u], 0) * s1
            e2 = max(lo2[u] - x2, x2 - hi2[u], 0) * s2
            bound[u] = e0 * e0 + e1 * e1 + e2 * e2
        for u in range(nc):
            if bound[u] >= best:
                continue  # no voxel of this cube is nearer than the nearest found
            c = cells[u]
            for v in range(starts[c], starts[c + 1]):
                d0 = (x0 - m0[v]) * s0
                d1 = (x1 - m1[v]) * s1
                d2 = (x2 - m2[v]) * s2
                d = d0 * d0 + d1 * d1 + d2 * d2
                if d < best:
                    best, near = d, members[v]
        out[i] = np.sqrt(best)


def _nearest_in_ball(
    padded: Any,
    reach: Any,
    points: Any,
    lo: Any,
    offsets: Any,
    lengths: Any,
    spacing: Any,
    out: Any,
) -> Any:  # pragma: no cover - runs compiled
    """Nearest distance from each point to the True voxels of ``padded`` within a ball.

    ``padded``: the other surface's box with ``reach[k]`` False voxels on both sides of axis k,
    reach being the largest offset along each axis, ``lo`` the unpadded box's first voxel;
    ``points``: (n, 3) voxel indices, possibly outside the box; ``offsets``: (m, 3) sorted by
    physical length, ``lengths``: theirs, ``spacing``: the voxel size along each axis. A point
    on the surface is at 0; otherwise the first offset landing on the surface gives its exact
    nearest distance. Returns the points with no hit, whose ``out`` is left as it was.
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
    blocks = count // 4
    missed = np.empty(points.shape[0], dtype=np.intp)
    n_missed = 0
    for i in range(points.shape[0]):
        x = points[i, 0] - lo[0] + r0
        y = points[i, 1] - lo[1] + r1
        z = points[i, 2] - lo[2] + r2
        if r0 <= x < r0 + n0 and r1 <= y < r1 + n1 and r2 <= z < r2 + n2:
            # inside the box: the whole ball lies inside the padded array
            c = x * s0 + y * s1 + z
            if flat[c]:
                out[i] = 0.0
                continue
            # four offsets per test (a quarter of the branches), then the first of the four
            # that hit: the same offset as trying them one by one
            hit = -1
            for b in range(blocks):
                j = 4 * b
                if (
                    flat[c + lin[j]]
                    | flat[c + lin[j + 1]]
                    | flat[c + lin[j + 2]]
                    | flat[c + lin[j + 3]]
                ):
                    for k in range(j, j + 4):
                        if flat[c + lin[k]]:
                            hit = k
                            break
                    break
            if hit < 0:
                for k in range(4 * blocks, count):
                    if flat[c + lin[k]]:
                        hit = k
                        break
            if hit >= 0:
                out[i] = lengths[hit]
            else:
                missed[n_missed] = i
                n_missed += 1
        elif 0 <= x < m0 and 0 <= y < m1 and 0 <= z < m2:
            # outside the box by at most one reach: offsets may leave the array, and none
            # shorter than the distance to the box can land in it
            g0 = max(r0 - x, x - (r0 + n0 - 1), 0) * spacing[0]
            g1 = max(r1 - y, y - (r1 + n1 - 1), 0) * spacing[1]
            g2 = max(r2 - z, z - (r2 + n2 - 1), 0) * spacing[2]
            gap = np.sqrt(g0 * g0 + g1 * g1 + g2 * g2)
            for j in range(np.searchsorted(lengths, gap), count):
                a, b, d = x + o0[j], y + o1[j], z + o2[j]
                if 0 <= a < m0 and 0 <= b < m1 and 0 <= d < m2 and flat[a * s0 + b * s1 + d]:
                    out[i] = lengths[j]
                    break
            else:
                missed[n_missed] = i
                n_missed += 1
        else:  # farther than the ball from all of the box
            missed[n_missed] = i
            n_missed += 1
    return missed[:n_missed]


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
row_bits = _compile(_row_bits)
summary = _compile(_summary)
summary_of_rows = _compile(_summary_of_rows)
# called from the loops below (typed Any: mypy cannot see that it is compiled with them)
row_ors: Any = _compile(_row_ors)
store_rows = _compile(_store_rows)
pick_rows = _compile(_pick_rows)
clear_rows = _compile(_clear_rows)
restore_rows = _compile(_restore_rows)
overlap = _compile(_overlap)
surface_in_rows = _compile(_surface_in_rows)
surface_in_words = _compile(_surface_in_words)
nearest_far = _compile(_nearest_far)
surface_in_box = _compile(_surface_in_box)
nearest_in_ball = _compile(_nearest_in_ball)
#: what the distance loops run on ("numba" or "numpy")
kernel_name = "numpy" if nearest_in_ball is None else "numba"
