"""Reference masks kept decoded between submissions, compactly, within a memory budget.

A worker scores submission after submission against the same hidden reference. Inflating a
reference's ``.nii.gz`` files again for each one costs as much as inflating the submission's
own, so a one-byte reference mask is kept after its second decoding as a
:class:`~evaluator.readers.masks.PackedMask` (only its nonzero rows: about a tenth of the
voxels of a typical organ or lesion mask) and unpacked into reused memory the next times. A
file is known by the SHA-256 of its bytes (read and hashed each time: about 30 µs for a
compressed 256 x 256 x 128 mask), its type and the size limit it was decoded under, never by
its name or modification time, so a file replaced in place (within the file system's clock
tick, at the same size) is decoded afresh all the same. Masks seen once are only noted (a
one-off ``scanbench score`` keeps nothing); those that do not fit the budget are decoded each
time; the least recently used go first. The surfaces scoring computes for a kept mask are kept
with it while the budget has room for them (they are never a reason to let a mask go).

The budget is :data:`DEFAULT_BUDGET_BYTES` per process unless set with :func:`set_budget`
(the platform sets ``SCANBENCH_REFERENCE_CACHE_BYTES``; 0 turns the cache off).
Participants' files are never kept: they are decoded once per submission, in the isolated
child on the platform.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable

from evaluator._lru import recall, remember
from evaluator.metrics.surface import SurfaceMemo
from evaluator.readers.masks import Mask, PackedMask, pack_mask, unpack_mask

__all__ = ["DEFAULT_BUDGET_BYTES", "budget", "clear", "kept_bytes", "reference_mask", "set_budget"]

#: memory for kept reference masks in one process unless :func:`set_budget` says otherwise
DEFAULT_BUDGET_BYTES = 256 << 20
#: files noted as decoded once (a key each), so that the second decoding keeps the mask
_SEEN_LIMIT = 65_536

_Key = tuple[bytes, str, int]

_lock = threading.Lock()
_budget = DEFAULT_BUDGET_BYTES
_kept: dict[_Key, PackedMask] = {}
_seen: dict[_Key, bool] = {}
_bytes = 0


def set_budget(nbytes: int) -> None:
    """Keep at most ``nbytes`` of reference masks (0: none); the least recently used go first
    when the budget shrinks."""
    global _budget
    with _lock:
        _budget = max(0, int(nbytes))
        _evict(0)


def budget() -> int:
    return _budget


def kept_bytes() -> int:
    """Memory the kept masks hold now."""
    return _bytes


def clear() -> None:
    """Let every kept mask go (and forget the files seen once)."""
    global _bytes
    with _lock:
        _kept.clear()
        _seen.clear()
        _bytes = 0


def _evict(room: int) -> None:
    """Drop the least recently used masks until ``room`` more bytes fit (under the lock)."""
    global _bytes
    while _kept and _bytes + room > _budget:
        _bytes -= _kept.pop(next(iter(_kept))).nbytes


def reference_mask(
    raw: bytes,
    extension: str,
    max_bytes: int,
    decode: Callable[[bytes], Mask],
    digest: str | None = None,
) -> Mask:
    """The mask of a reference file whose bytes are ``raw``, decoded under the size limit
    ``max_bytes`` by ``decode(raw)`` or unpacked from what an earlier decoding of the same
    bytes kept. ``digest``: the sha256 (hex) of ``raw`` when the caller has it (the reader
    hashed the file as it read it), so that the bytes are not hashed twice."""
    if _budget <= 0:
        return decode(raw)
    sha = bytes.fromhex(digest) if digest is not None else hashlib.sha256(raw).digest()
    key = (sha, extension.lower(), max_bytes)
    with _lock:
        packed = recall(_kept, key)
        again = packed is None and recall(_seen, key) is not None
    if packed is not None:
        return unpack_mask(packed)
    mask = decode(raw)
    if not again:
        with _lock:
            remember(_seen, key, True, _SEEN_LIMIT)
        return mask
    got = pack_mask(mask)
    if got is None or got.nbytes > _budget:
        return mask
    global _bytes
    with _lock:
        if key not in _kept:
            _evict(got.nbytes)
            _kept[key] = got
            _bytes += got.nbytes
            if got.summary.memo is not None:
                got.summary.memo.admit = functools.partial(_admit, key)
        _seen.pop(key, None)
    return mask


def _admit(key: _Key, memo: SurfaceMemo, nbytes: int, store: Callable[[], None]) -> None:
    """Keep a surface scoring computed for the kept mask ``key`` (``store()``) when the budget
    has room for it; no mask is let go for a surface (a mask costs more to decode again than
    its surface to compute, and takes less memory). The mask's bytes count it from then on."""
    global _bytes
    with _lock:
        entry = _kept.get(key)
        if entry is None or entry.summary.memo is not memo or _bytes + nbytes > _budget:
            return
        _bytes -= entry.nbytes
        store()
        _bytes += entry.nbytes
