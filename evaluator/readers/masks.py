"""Decoding one mask file (NIfTI, NRRD, PNG, NumPy) into an integer label array and its grid.

NIfTI is decoded without nibabel's file machinery: the header is parsed by nibabel's header
class (once per distinct header), its declared size is checked against the limits, and the gzip
stream is inflated never past that size. A one-byte mask (the usual case) is inflated in steps
into reused, zeroed memory, writing only the rows that hold a voxel and noting which they are
while each step is in the processor's cache (:func:`_inflate_rows`); that note starts the
mask's :class:`~evaluator.metrics.surface.MaskSummary`, so scoring a binary case reads no mask
in full again. Other types are inflated in one call into a buffer of exactly the declared size
and viewed with ``numpy.frombuffer``.

The inflater is ISA-L's (the python-isal package; two to three times faster than zlib on masks)
when it is installed, else the standard library's ``zlib``: both release the GIL while inflating
and honour ``max_length`` exactly, so the size limits below hold with either.
:data:`DECOMPRESSOR` names the one in use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math
import mmap
import struct
import threading
import weakref
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evaluator.metrics.surface import MaskSummary, SurfaceMemo, _c_view, summarize

__all__ = [
    "DECOMPRESSOR",
    "Grid",
    "Mask",
    "MaskDecodeError",
    "MaskRows",
    "RowsBuffer",
    "ShapeMismatch",
    "decode_mask",
    "decode_rows",
    "gunzip",
    "reused_voxel_memory",
]


def _load_inflater() -> tuple[Any, str]:
    """ISA-L's zlib-compatible module when importable, else the standard library's zlib."""
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib, "zlib"
    return isal_zlib, "isal"


_INFLATER, DECOMPRESSOR = _load_inflater()


def _decompressobj() -> Any:
    """A decompressor for one gzip member (``wbits=31``) from the inflater in use."""
    return _INFLATER.decompressobj(wbits=31)


def _inflate_errors() -> tuple[type[Exception], ...]:
    return (zlib.error, _INFLATER.error)


DEFAULT_MAX_VOXEL_BYTES = 4 << 30


class MaskDecodeError(ValueError):
    """The bytes are not a readable mask; the message is one short line."""

    def problem(self) -> str:
        """The message as shown to a participant."""
        return f"cannot read the mask: {self}"


class ShapeMismatch(MaskDecodeError):
    """The header declares another shape than the reference's (found before decoding)."""

    def problem(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Grid:
    """Shape and geometry of a mask. ``spacing`` in mm in numpy axis order, ``None`` when the
    format has none (PNG, NumPy); ``affine`` only for formats that carry one."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...] | None
    affine: NDArray[np.float64] | None = None
    space: str = ""  # "nifti" (RAS) or "nrrd:<space>"; affines compare only within one space


@dataclass(frozen=True)
class Mask:
    data: NDArray[np.generic]
    grid: Grid
    min: int  # a lower bound of the values (0 for unsigned types), never above the minimum
    max: int
    #: counts, box and nonzero rows of a one-byte mask, from the same read as ``max`` (None for
    #: other types, or without Numba); scoring reuses it instead of reading the mask again
    summary: MaskSummary | None = None


def gunzip(data: bytes, *, max_bytes: int = DEFAULT_MAX_VOXEL_BYTES) -> bytes:
    """Inflate a (possibly multi-member) gzip stream, refusing output past ``max_bytes``."""
    out: list[bytes] = []
    total = 0
    rest = data
    while rest:
        d = _decompressobj()
        try:
            chunk = d.decompress(rest, max_bytes + 1 - total)
        except _inflate_errors() as exc:
            raise MaskDecodeError(f"corrupt gzip data ({exc})") from exc
        total += len(chunk)
        if total > max_bytes or d.unconsumed_tail:
            raise MaskDecodeError(f"decompressed size is over the limit {max_bytes} bytes")
        if not d.eof:
            raise MaskDecodeError("truncated gzip data")
        out.append(chunk)
        rest = d.unused_data
        if rest and not rest.startswith(b"\x1f\x8b"):
            break  # trailing garbage after the last member, as gzip(1) tolerates
    return out[0] if len(out) == 1 else b"".join(out)


def _inflate_upto(data: bytes, n: int) -> bytes:
    """The first (at most) ``n`` bytes of a gzip stream's first member; for reading a header."""
    if not data.startswith(b"\x1f\x8b"):
        raise MaskDecodeError("not gzip data")
    d = _decompressobj()
    try:
        out = d.decompress(data, n)
    except _inflate_errors() as exc:
        raise MaskDecodeError(f"corrupt gzip data ({exc})") from exc
    if len(out) < n and not d.eof:
        raise MaskDecodeError("truncated gzip data")
    return out


def _inflate_exact(data: bytes, needed: int, max_bytes: int) -> bytes:
    """Inflate the first ``needed`` bytes of a gzip stream, never producing more.

    ``needed`` comes from the file's own header (checked against the caps before this is
    called); the gzip trailer's size field is only a hint and is never trusted for allocation.
    """
    if needed > max_bytes:
        raise MaskDecodeError(f"declared data size {needed} bytes is over the limit {max_bytes}")
    pieces = list(_inflate_steps(data, 0, needed, max(needed, 1)))
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


#: voxel bytes inflated per step when a one-byte NIfTI is streamed: the step stays in the core's
#: cache while its rows are looked at
STREAM_BYTES = 1 << 20


def _inflate_steps(data: bytes, skip: int, needed: int, step: int) -> Iterator[bytes]:
    """The ``needed`` bytes after the first ``skip`` bytes of a (possibly multi-member) gzip
    stream, in pieces of exactly ``step`` bytes (the last one shorter), never inflating more.
    Errors: not gzip data, corrupt or truncated gzip data, truncated voxel data."""
    rest, total = data, 0
    parts: list[bytes] = []  # of the step being filled, when gzip members end inside it
    want = skip + needed
    while rest and total < want:
        if not rest.startswith(b"\x1f\x8b"):
            raise MaskDecodeError("not gzip data")
        d = _stream_decompressor()
        tail = rest
        while total < want:
            boundary = skip if total < skip else skip + ((total - skip) // step + 1) * step
            try:
                chunk = d.decompress(tail, min(boundary, want) - total)
            except _inflate_errors() as exc:
                raise MaskDecodeError(f"corrupt gzip data ({exc})") from exc
            # ISA-L's decompressor keeps its unread input; zlib's hands it back to pass again
            tail = getattr(d, "unconsumed_tail", b"")
            produced = len(chunk)
            total += produced
            if total > skip and produced:
                parts.append(
                    chunk if total - produced >= skip else chunk[skip - total + produced :]
                )
                del chunk  # freed with the piece, before the next step is inflated
                if (total - skip) % step == 0 or total >= want:
                    # joined once per step: many tiny members cost linear time, not quadratic
                    piece = parts[0] if len(parts) == 1 else b"".join(parts)
                    parts = []
                    yield piece
                    del piece
            if d.eof or not produced:
                break
        if total >= want:
            break
        if not d.eof:
            raise MaskDecodeError("truncated gzip data")
        rest = d.unused_data
    if total < want:
        present = max(0, total - skip)
        raise MaskDecodeError(f"truncated voxel data ({present} of {needed} bytes present)")


def _stream_decompressor() -> Any:
    """A decompressor for one gzip member that inflates a little at a time: ISA-L's own when it
    is the inflater (it keeps its unread input between calls), else a ``decompressobj``."""
    if DECOMPRESSOR == "isal" and _INFLATER is not zlib:
        from isal import igzip_lib

        factory = getattr(igzip_lib, "IgzipDecompressor", None)  # python-isal 1.0 and later
        if factory is not None:
            return factory(flag=igzip_lib.DECOMP_GZIP)
    return _decompressobj()


class _VoxelPool:
    """Memory for streamed masks, reused once a mask's array is gone.

    Fresh memory costs a page fault per 4 KiB page on first touch, which on a virtual machine
    can take longer than inflating the page's voxels; reused memory does not. A buffer comes
    back here when the last array over it is garbage collected, with the rows that were
    written into it; the next mask writes its own nonzero rows and zeroes only the rest of
    those (:func:`evaluator.metrics._compiled._store_rows`), in the same pass. The pool
    keeps at most :data:`POOL_BYTES`, only while a :meth:`reuse` block runs (one submission
    being scored, or a decoding child serving one), and lets everything go when a mask of
    another size is asked for, so that idle buffers never crowd out a larger mask under a
    memory limit.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        # re-entrant: a buffer can come back (a garbage-collected array's finalizer) on the
        # thread that holds the lock, if collection runs inside take()
        self._lock = threading.RLock()
        self._free: list[tuple[mmap.mmap, NDArray[np.uint8], int]] = []
        self._users = 0

    @contextlib.contextmanager
    def reuse(self) -> Iterator[None]:
        """Keep memory for reuse while the block runs (a submission's masks); when the last
        such block ends, every idle buffer is let go, so nothing is held between runs."""
        with self._lock:
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if not self._users:
                    self._free.clear()

    def take(self, nbytes: int, row_bytes: int) -> tuple[mmap.mmap, NDArray[np.uint8]]:
        """A buffer of ``nbytes`` and the rows (of ``row_bytes``) that may hold nonzero bytes
        (empty when it is all zeros): whoever fills it writes every row or zeroes these."""
        from evaluator.metrics import _compiled

        with self._lock:
            k = next((k for k, e in enumerate(self._free) if len(e[0]) == nbytes), None)
            if k is None:
                self._free.clear()  # another size: let the idle buffers go first
            entry = None if k is None else self._free.pop(k)
        if entry is None:
            try:
                return mmap.mmap(-1, nbytes), _CLEAN  # zeroed by the kernel
            except OSError:
                raise MemoryError from None
        buffer, dirty, dirty_bytes = entry
        if dirty_bytes == row_bytes:
            return buffer, dirty
        assert _compiled.clear_rows is not None
        voxels = np.frombuffer(buffer, dtype=np.uint8).reshape(-1, dirty_bytes)
        _compiled.clear_rows(voxels, dirty)
        del voxels
        return buffer, _CLEAN

    def give(self, buffer: mmap.mmap, rows: NDArray[np.uint8], row_bytes: int) -> None:
        with self._lock:
            held = sum(len(b) for b, _r, _w in self._free)
            if self._users and held + len(buffer) <= self.max_bytes:
                self._free.append((buffer, rows, row_bytes))


_CLEAN = np.zeros(0, dtype=np.uint8)
#: idle voxel memory kept for the next masks (see :class:`_VoxelPool`)
POOL_BYTES = 256 << 20
_POOL = _VoxelPool(POOL_BYTES)


def reused_voxel_memory() -> contextlib.AbstractContextManager[None]:
    """While this block runs, the memory of one-byte NIfTI masks that are no longer used is
    kept for the next ones (see :class:`_VoxelPool`); it is all let go when the block ends."""
    return _POOL.reuse()


def _inflate_rows(
    data: bytes, skip: int, nbytes: int, row_bytes: int
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]] | None:
    """Inflate the ``nbytes`` voxel bytes of a one-byte mask step by step into zeroed memory,
    writing only the rows (runs of ``row_bytes``) that hold a nonzero byte, while each step is
    still in the core's cache; returns the voxels and the OR of each row. ``None`` without the
    compiled loops."""
    from evaluator.metrics import _compiled

    if _compiled.store_rows is None or row_bytes <= 0 or nbytes % row_bytes:
        return None
    buffer, dirty = _POOL.take(nbytes, row_bytes)
    voxels = np.frombuffer(buffer, dtype=np.uint8)
    rows = np.zeros(nbytes // row_bytes, dtype=np.uint8)
    step = row_bytes * max(1, STREAM_BYTES // row_bytes)
    pos = 0
    # on an error the buffer is simply dropped: the traceback may still hold the array
    store = _compiled.store_rows
    for chunk in _inflate_steps(data, skip, nbytes, step):
        store(np.frombuffer(chunk, dtype=np.uint8), voxels, rows, dirty, pos, row_bytes)
        pos += len(chunk)
        del chunk  # freed before the next step is inflated, so that its memory is reused
    weakref.finalize(voxels, _POOL.give, buffer, rows, row_bytes)
    return voxels, rows


def _check_declared(
    shape: tuple[int, ...],
    itemsize: int,
    max_bytes: int,
    expected_shape: tuple[int, ...] | None,
) -> int:
    """Check a shape read from a header *before* any voxel is decoded; return its byte size."""
    if not shape or any(n < 0 for n in shape):
        raise MaskDecodeError(f"invalid shape {shape} in the header")
    if len(shape) > 3:
        raise MaskDecodeError(f"a mask must be 2-D or 3-D, got shape {shape}")
    if expected_shape is not None and tuple(shape) != tuple(expected_shape):
        raise ShapeMismatch(
            f"mask shape {tuple(shape)} differs from the reference shape {tuple(expected_shape)}"
        )
    nbytes = math.prod(shape) * itemsize
    if nbytes > max_bytes:
        raise MaskDecodeError(f"declared data size {nbytes} bytes is over the limit {max_bytes}")
    return nbytes


def _nifti_header(head: bytes) -> tuple[Any, tuple[int, ...], np.dtype[Any], int]:
    import nibabel as nib

    if len(head) < 348:
        raise MaskDecodeError("truncated NIfTI header")
    hdr_cls: type[nib.Nifti1Header]
    size_le = struct.unpack("<i", head[:4])[0]
    size_be = struct.unpack(">i", head[:4])[0]
    if 540 in (size_le, size_be):
        hdr_cls = nib.Nifti2Header
    elif 348 in (size_le, size_be):
        hdr_cls = nib.Nifti1Header
    else:
        raise MaskDecodeError("not a NIfTI file (bad header size)")
    if hdr_cls is nib.Nifti2Header and len(head) < 540:
        raise MaskDecodeError("truncated NIfTI-2 header")
    try:
        hdr = hdr_cls.from_fileobj(io.BytesIO(head[:540]), check=True)  # type: ignore[no-untyped-call]
        shape = tuple(int(n) for n in hdr.get_data_shape())
        dtype = hdr.get_data_dtype()
        offset = int(hdr.get_data_offset())
    except Exception as exc:  # nibabel raises many types on a bad header
        raise MaskDecodeError(f"bad NIfTI header ({type(exc).__name__})") from exc
    magic = bytes(hdr["magic"]).rstrip(b"\x00")
    if magic in (b"ni1", b"ni2"):
        # A ".hdr/.img" pair: the voxels live in another file, which is never opened.
        raise MaskDecodeError("a NIfTI header whose voxels are in a separate .img file")
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if offset < (540 if hdr_cls is nib.Nifti2Header else 348):
        raise MaskDecodeError(f"invalid voxel offset {offset} in the NIfTI header")
    return hdr, shape, dtype, offset


def _nifti(
    raw: bytes,
    *,
    compressed: bool,
    max_bytes: int,
    expected_shape: tuple[int, ...] | None,
) -> tuple[NDArray[np.generic], Grid, NDArray[np.uint8] | None]:
    """The voxels, the grid, and for a streamed one-byte mask the OR of each row along the
    first (fastest) axis."""
    head = _inflate_upto(raw, 540) if compressed else raw[:540]
    info = _nifti_info(head)
    shape, dtype, offset = info.shape, info.dtype, info.offset
    nbytes = _check_declared(shape, dtype.itemsize, max_bytes, expected_shape)
    if offset > max_bytes:
        raise MaskDecodeError(f"invalid voxel offset {offset} in the NIfTI header")
    streamed = None
    if compressed and dtype.itemsize == 1 and dtype.kind in "ub" and len(shape) in (2, 3):
        streamed = _inflate_rows(raw, offset, nbytes, shape[0])
    if streamed is not None:
        raw, offset = streamed[0], 0  # type: ignore[assignment]
    elif compressed:
        raw = _inflate_exact(raw, offset + nbytes, max_bytes + offset)
    elif offset + nbytes > len(raw):
        raise MaskDecodeError(
            f"truncated voxel data ({max(0, len(raw) - offset)} of {nbytes} bytes present)"
        )
    count = math.prod(shape)
    try:
        arr = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
    except (ValueError, TypeError) as exc:
        raise MaskDecodeError(f"unsupported NIfTI data type {dtype}") from exc
    if dtype.byteorder not in ("=", "|", "<" if np.little_endian else ">"):
        arr = arr.astype(dtype.newbyteorder("="))
    unscaled = arr
    arr = _apply_scaling(arr, info.slope, info.inter)
    # the rows looked at while streaming still describe the voxels when nothing rescaled them
    rows = streamed[1] if streamed is not None and arr is unscaled else None
    return arr, Grid(shape, info.zooms[: len(shape)], info.affine, "nifti"), rows


@dataclass(frozen=True)
class _NiftiInfo:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    offset: int
    zooms: tuple[float, ...]
    slope: float | None
    inter: float | None
    affine: NDArray[np.float64]  # read-only: shared by every mask with this header


@functools.lru_cache(maxsize=256)
def _nifti_info(head: bytes) -> _NiftiInfo:
    """What scoring needs from a NIfTI header (its first 540 bytes), parsed and checked by
    nibabel. Remembered per header: a prediction usually carries its reference's header byte
    for byte, and nibabel's checks take longer than inflating a small mask's header. A header
    that fails raises each time (failures are not remembered)."""
    hdr, shape, dtype, offset = _nifti_header(head)
    try:
        zooms = tuple(float(z) for z in hdr.get_zooms())
        slope, inter = hdr.get_slope_inter()
        affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
    except Exception as exc:  # nibabel raises many types on a bad header
        raise MaskDecodeError(f"bad NIfTI header ({type(exc).__name__})") from exc
    affine.flags.writeable = False
    return _NiftiInfo(shape, dtype, offset, zooms, slope, inter, affine)


def _apply_scaling(
    arr: NDArray[np.generic], slope: float | None, inter: float | None
) -> NDArray[np.generic]:
    """Apply NIfTI ``scl_slope``/``scl_inter`` (a slope of 0, NaN or None means "no scaling")."""
    if slope is None or not math.isfinite(slope) or slope == 0.0:
        return arr
    offset = inter if inter is not None and math.isfinite(inter) else 0.0
    if slope == 1.0 and offset == 0.0:
        return arr
    return np.asarray(arr, dtype=np.float64) * slope + offset


_NRRD_TYPES: dict[str, str] = {}
for _names, _code in (
    (("signed char", "int8", "int8_t"), "i1"),
    (("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
    (("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
    (
        ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
        "u2",
    ),
    (("int", "signed int", "int32", "int32_t"), "i4"),
    (("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
    (
        (
            "longlong",
            "long long",
            "long long int",
            "signed long long",
            "signed long long int",
            "int64",
            "int64_t",
        ),
        "i8",
    ),
    (
        (
            "ulonglong",
            "unsigned long long",
            "unsigned long long int",
            "uint64",
            "uint64_t",
        ),
        "u8",
    ),
    (("float",), "f4"),
    (("double",), "f8"),
):
    for _n in _names:
        _NRRD_TYPES[_n] = _code

#: NRRD fields that make a reader open another file; a mask must carry its own voxels.
_NRRD_DETACHED = ("data file", "datafile")
_NRRD_MAX_HEADER = 1 << 20


def _nrrd_header(raw: bytes) -> tuple[dict[str, Any], int]:
    """Parse the header of an NRRD file with attached data; return (fields, data offset)."""
    import nrrd

    if not raw.startswith(b"NRRD000"):
        raise MaskDecodeError("not an NRRD file (no NRRD magic)")
    end = raw.find(b"\n\n", 0, _NRRD_MAX_HEADER)
    if end < 0:
        end_crlf = raw.find(b"\r\n\r\n", 0, _NRRD_MAX_HEADER)
        if end_crlf < 0:
            raise MaskDecodeError("NRRD header has no end (blank line) in its first 1 MiB")
        header_bytes, offset = raw[:end_crlf], end_crlf + 4
    else:
        header_bytes, offset = raw[:end], end + 2
    try:
        text = header_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise MaskDecodeError("NRRD header is not ASCII text") from None
    lowered = [line.split(":", 1)[0].strip().lower() for line in text.splitlines()]
    if any(key in _NRRD_DETACHED for key in lowered):
        raise MaskDecodeError(
            "NRRD header names a separate data file; masks must carry their voxels "
            "(attached data, one .nrrd file per case)"
        )
    try:
        header = nrrd.read_header(io.StringIO(text + "\n"))
    except Exception as exc:  # pynrrd raises many types on bad input
        raise MaskDecodeError(f"unreadable NRRD header ({type(exc).__name__})") from None
    return dict(header), offset


def _nrrd(
    raw: bytes, *, max_bytes: int, expected_shape: tuple[int, ...] | None
) -> tuple[NDArray[np.generic], Grid]:
    header, offset = _nrrd_header(raw)
    type_name = str(header.get("type", "")).strip().lower()
    code = _NRRD_TYPES.get(type_name)
    if code is None:
        raise MaskDecodeError(f"unsupported NRRD type {type_name[:40]!r} (labels must be integers)")
    dtype = np.dtype(code)
    if dtype.itemsize > 1:
        endian = str(header.get("endian", "")).strip().lower()
        if endian not in ("little", "big"):
            raise MaskDecodeError("NRRD header needs 'endian: little' or 'endian: big'")
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    try:
        sizes = tuple(int(n) for n in np.asarray(header.get("sizes", ())).ravel())
        dimension = int(header.get("dimension", len(sizes)))
    except (TypeError, ValueError, OverflowError):
        raise MaskDecodeError("invalid 'sizes' in the NRRD header") from None
    if dimension != len(sizes):
        raise MaskDecodeError(f"NRRD 'dimension: {dimension}' but {len(sizes)} sizes")
    for key in ("byte skip", "byteskip", "line skip", "lineskip"):
        if key in header and int(header[key]) != 0:
            raise MaskDecodeError(f"NRRD '{key}' is not supported for masks")
    nbytes = _check_declared(sizes, dtype.itemsize, max_bytes, expected_shape)
    encoding = str(header.get("encoding", "")).strip().lower()
    body = memoryview(raw)[offset:]
    if encoding == "raw":
        if len(body) < nbytes:
            raise MaskDecodeError(f"truncated voxel data ({len(body)} of {nbytes} bytes present)")
        data: bytes | memoryview = body[:nbytes]
    elif encoding in ("gzip", "gz"):
        data = _inflate_exact(bytes(body), nbytes, max_bytes)
    elif encoding in ("bzip2", "bz2"):
        import bz2

        dec = bz2.BZ2Decompressor()
        try:
            data = dec.decompress(bytes(body), max_length=nbytes)
        except (OSError, ValueError, EOFError) as exc:
            raise MaskDecodeError(f"corrupt bzip2 data ({type(exc).__name__})") from None
        if len(data) < nbytes:
            raise MaskDecodeError(f"truncated voxel data ({len(data)} of {nbytes} bytes present)")
    else:
        raise MaskDecodeError(
            f"NRRD encoding {encoding[:40]!r} is not supported for masks (use raw or gzip)"
        )
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(sizes)).reshape(sizes, order="F")
    if dtype.byteorder not in ("=", "|", "<" if np.little_endian else ">"):
        arr = arr.astype(dtype.newbyteorder("="))
    spacing: tuple[float, ...] | None = None
    affine = None
    directions = header.get("space directions")
    if directions is not None:
        try:
            rows = [np.asarray(r, dtype=np.float64) for r in directions]
        except (TypeError, ValueError):
            raise MaskDecodeError("invalid 'space directions' in the NRRD header") from None
        spatial = [r for r in rows if r.ndim == 1 and np.all(np.isfinite(r))]
        if len(spatial) != arr.ndim or any(r.shape != (arr.ndim,) for r in spatial):
            raise MaskDecodeError(
                f"'space directions' of the NRRD header do not fit a {arr.ndim}-D mask"
            )
        spacing = tuple(float(np.linalg.norm(r)) for r in spatial)
        try:
            origin = np.asarray(
                header.get("space origin", np.zeros(arr.ndim)), dtype=np.float64
            ).ravel()
        except (TypeError, ValueError):
            raise MaskDecodeError("invalid 'space origin' in the NRRD header") from None
        if origin.shape != (arr.ndim,):
            raise MaskDecodeError(f"'space origin' of the NRRD header is not {arr.ndim}-D")
        affine = np.eye(arr.ndim + 1)
        affine[: arr.ndim, : arr.ndim] = np.stack(spatial, axis=1)
        affine[: arr.ndim, arr.ndim] = origin
    elif "spacings" in header:
        try:
            spacing = tuple(float(s) for s in np.asarray(header["spacings"]).ravel())
        except (TypeError, ValueError):
            raise MaskDecodeError("invalid 'spacings' in the NRRD header") from None
    return arr, Grid(tuple(arr.shape), spacing, affine, f"nrrd:{header.get('space', '')}")


_PNG_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I": 4, "I;16": 2, "I;16B": 2, "I;16L": 2}


def _png(
    raw: bytes, *, max_bytes: int, expected_shape: tuple[int, ...] | None
) -> tuple[NDArray[np.generic], Grid]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw), formats=["PNG"]) as im:
            if im.mode not in _PNG_BYTES_PER_PIXEL:
                raise MaskDecodeError(
                    f"PNG mask must be single-channel (mode L, P, I or I;16), got {im.mode}"
                )
            width, height = im.size
            _check_declared(
                (height, width), _PNG_BYTES_PER_PIXEL[im.mode], max_bytes, expected_shape
            )
            im.load()
            arr = np.array(im)
    except MaskDecodeError:
        raise
    except Exception as exc:  # PIL raises many types on bad input
        raise MaskDecodeError(f"unreadable PNG ({type(exc).__name__})") from None
    return arr, Grid(tuple(arr.shape), (1.0,) * arr.ndim, None, "")


def _npy_array(
    raw: bytes, *, max_bytes: int, expected_shape: tuple[int, ...] | None
) -> NDArray[np.generic]:
    """Read one ``.npy`` payload, checking its header's shape and type before the data."""
    fh = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise MaskDecodeError(f"unsupported .npy version {version}")
    except MaskDecodeError:
        raise
    except Exception as exc:  # numpy raises ValueError and others on a bad header
        raise MaskDecodeError(f"unreadable NumPy header ({type(exc).__name__})") from None
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields is not None:
        raise MaskDecodeError(f"unsupported data type {dtype} (labels must be integers)")
    shape = tuple(int(n) for n in shape)
    nbytes = _check_declared(shape, dtype.itemsize, max_bytes, expected_shape)
    start = fh.tell()
    if len(raw) - start < nbytes:
        raise MaskDecodeError(
            f"truncated voxel data ({len(raw) - start} of {nbytes} bytes present)"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=start)
    arr = arr.reshape(shape, order="F" if fortran else "C")
    if dtype.byteorder not in ("=", "|", "<" if np.little_endian else ">"):
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _npz(
    raw: bytes, *, max_bytes: int, expected_shape: tuple[int, ...] | None
) -> tuple[NDArray[np.generic], tuple[float, ...] | None]:
    import zipfile

    from evaluator.readers.safe_zip import UnsafeArchiveError, ZipLimits, iter_members, read_member

    limits = ZipLimits(
        max_members=2, max_member_bytes=max_bytes + 4096, max_total_bytes=max_bytes * 2
    )
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            members = {n: i for n, i in iter_members(zf, limits=limits)}
            keys = sorted(n.removesuffix(".npy") for n in members)
            arrays = [k for k in keys if k != "spacing"]
            if len(arrays) != 1:
                raise MaskDecodeError(
                    f".npz must hold exactly one array (plus optional 'spacing'), got {keys}"
                )
            arr = _npy_array(
                read_member(zf, members[arrays[0] + ".npy"], max_bytes=limits.max_member_bytes),
                max_bytes=max_bytes,
                expected_shape=expected_shape,
            )
            spacing: tuple[float, ...] | None = None
            if "spacing" in keys:
                sp = _npy_array(
                    read_member(zf, members["spacing.npy"], max_bytes=4096),
                    max_bytes=4096,
                    expected_shape=None,
                )
                spacing = tuple(float(s) for s in np.asarray(sp, dtype=np.float64).ravel())
    except MaskDecodeError:
        raise
    except (UnsafeArchiveError, KeyError) as exc:
        raise MaskDecodeError(f"unreadable .npz ({exc})") from None
    except Exception as exc:  # zipfile raises BadZipFile, zlib.error, ...
        raise MaskDecodeError(f"unreadable .npz ({type(exc).__name__})") from None
    return arr, spacing


def _to_labels(
    arr: NDArray[np.generic], rows: NDArray[np.uint8] | None = None
) -> tuple[NDArray[np.generic], int, int, MaskSummary | None]:
    """Check the values are non-negative integers; return (array, min, max, summary), the
    summary (:func:`evaluator.metrics.surface.summarize`) only for one-byte unsigned masks,
    whose maximum it gives in the same read (``rows``: the OR of each row along the first axis
    of a Fortran-ordered array, when the reader already has it)."""
    if arr.size == 0:
        raise MaskDecodeError("mask is empty (zero voxels)")
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if arr.dtype == np.uint8:
        summary = summarize(arr, fortran_rows=rows)
        if summary is not None:
            return arr, 0, summary.max, summary
        return arr, 0, int(arr.max()), None
    if arr.dtype.kind == "u":
        lo, hi = 0, int(arr.max())  # no pass for the minimum: unsigned values are >= 0
    elif arr.dtype.kind == "i":
        lo, hi = int(arr.min()), int(arr.max())
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise MaskDecodeError("mask holds NaN or infinite values")
        lo_f, hi_f = float(arr.min()), float(arr.max())
        if not np.array_equal(arr, np.round(arr)):
            raise MaskDecodeError("mask holds non-integer values (labels must be integers)")
        lo, hi = int(lo_f), int(hi_f)
        if lo >= 0 and hi <= 65535:
            arr = arr.astype(np.uint8 if hi <= 255 else np.uint16)
    else:
        raise MaskDecodeError(f"unsupported data type {arr.dtype} (labels must be integers)")
    if lo < 0:
        raise MaskDecodeError(f"negative label {lo} (labels are 0 for background, then 1, 2, ...)")
    return arr, lo, hi, None


def _decode(
    raw: bytes, ext: str, max_bytes: int, expected_shape: tuple[int, ...] | None
) -> tuple[NDArray[np.generic], Grid, NDArray[np.uint8] | None]:
    """The voxels, the grid, and the rows a streamed NIfTI was seen to hold (else None)."""
    if ext in (".nii.gz", ".nii"):
        return _nifti(
            raw, compressed=ext == ".nii.gz", max_bytes=max_bytes, expected_shape=expected_shape
        )
    if ext == ".nrrd":
        return (*_nrrd(raw, max_bytes=max_bytes, expected_shape=expected_shape), None)
    if ext == ".png":
        return (*_png(raw, max_bytes=max_bytes, expected_shape=expected_shape), None)
    if ext == ".npy":
        arr = _npy_array(raw, max_bytes=max_bytes, expected_shape=expected_shape)
        return arr, Grid(tuple(arr.shape), None, None, ""), None
    if ext == ".npz":
        arr, spacing = _npz(raw, max_bytes=max_bytes, expected_shape=expected_shape)
        return arr, Grid(tuple(arr.shape), spacing, None, ""), None
    raise MaskDecodeError(f"unsupported extension {ext}")


def _check_grid(arr: NDArray[np.generic], grid: Grid) -> None:
    """One place for the geometry rules every format must meet."""
    _check_geometry(tuple(arr.shape), grid)


def _check_geometry(shape: tuple[int, ...], grid: Grid) -> None:
    ndim = len(shape)
    if ndim not in (2, 3):
        raise MaskDecodeError(f"a mask must be 2-D or 3-D, got shape {shape}")
    if grid.spacing is not None:
        if len(grid.spacing) != ndim:
            raise MaskDecodeError(
                f"the header gives {len(grid.spacing)} voxel spacing(s) for a {ndim}-D mask"
            )
        if not all(math.isfinite(x) and x > 0 for x in grid.spacing):
            raise MaskDecodeError(f"invalid voxel spacing {grid.spacing} in the header")
    if grid.affine is not None and (
        grid.affine.shape not in ((ndim + 1, ndim + 1), (4, 4))
        or not np.all(np.isfinite(grid.affine))
    ):
        raise MaskDecodeError("invalid orientation (affine) in the header")


def decode_mask(
    raw: bytes,
    extension: str,
    *,
    max_voxel_bytes: int = DEFAULT_MAX_VOXEL_BYTES,
    expected_shape: tuple[int, ...] | None = None,
) -> Mask:
    """Decode the bytes of one mask file with the given extension (``.nii.gz``, ...).

    Sizes declared in the file (its header, the gzip trailer) are checked against
    ``max_voxel_bytes`` and, when given, ``expected_shape`` (the reference's) *before* any
    voxel is inflated, so a small file cannot claim gigabytes. Nothing outside ``raw`` is ever
    opened: NRRD detached data files and NIfTI ``.hdr/.img`` pairs are refused. Every problem is
    a :class:`MaskDecodeError` with a one-line reason that names no path.
    """
    ext = extension.lower()
    try:
        arr, grid, rows = _decode(raw, ext, max_voxel_bytes, expected_shape)
        _check_grid(arr, grid)
        data, lo, hi, summary = _to_labels(arr, rows)
    except MaskDecodeError:
        raise
    except MemoryError:
        raise MaskDecodeError("the mask does not fit in the decoder's memory limit") from None
    except Exception as exc:  # any other fault of a decoder on these bytes
        raise MaskDecodeError(f"unreadable {ext} file ({type(exc).__name__})") from None
    return Mask(data, grid, lo, hi, summary)


@dataclass(frozen=True)
class PackedMask:
    """A decoded one-byte mask kept compactly: only its rows (runs along the axis that is
    contiguous in memory) holding a nonzero voxel, with what :func:`unpack_mask` needs to
    give back an equal :class:`Mask`. Its arrays are shared by every mask unpacked from it and
    never written (the summary's and ``row_or`` stay writable arrays only because the compiled
    loops are compiled for those; ``which`` and ``packed`` are read-only)."""

    shape: tuple[int, ...]
    order: str  # "F" (NIfTI) or "C"
    grid: Grid
    min: int
    max: int
    summary: MaskSummary
    row_bytes: int
    which: NDArray[np.intp]  # the nonzero rows, in memory order
    packed: NDArray[np.uint8]  # their bytes, (len(which), row_bytes)
    row_or: NDArray[np.uint8]  # the OR of every row in memory order (the pool's note)

    @property
    def nbytes(self) -> int:
        """Memory held, to count against a cache's budget (the surfaces kept with the summary
        included)."""
        arrays = (self.which, self.packed, self.row_or, self.summary.rows, self.summary.spans)
        memo = self.summary.memo
        return sum(a.nbytes for a in arrays) + (0 if memo is None else memo.nbytes)


def _read_only(a: NDArray[Any]) -> NDArray[Any]:
    a.flags.writeable = False
    return a


def pack_mask(mask: Mask) -> PackedMask | None:
    """``mask`` kept compactly (see :class:`PackedMask`), or ``None`` when it is not a
    contiguous one-byte mask with a summary (other types are decoded afresh each time)."""
    data, summary = mask.data, mask.summary
    if summary is None or data.dtype != np.uint8 or data.ndim not in (2, 3) or data.size == 0:
        return None
    if data.flags.c_contiguous and not summary.transposed:
        order, memory = "C", data
    elif data.flags.f_contiguous and summary.transposed:
        order, memory = "F", data.T
    else:
        return None
    row_bytes = int(memory.shape[-1])
    row_or = np.ascontiguousarray(summary.rows).reshape(-1)
    if row_or.size * row_bytes != data.size:
        return None
    which = np.flatnonzero(row_or)
    packed = memory.reshape(-1, row_bytes)[which]  # a copy: the mask's memory goes back to the pool
    return PackedMask(
        tuple(data.shape),
        order,
        mask.grid,
        mask.min,
        mask.max,
        # its own copy of the summary, with room for the surfaces scoring will compute
        dataclasses.replace(summary, memo=SurfaceMemo()),
        row_bytes,
        _read_only(which),
        _read_only(packed),
        row_or.copy(),
    )


@dataclass(frozen=True)
class MaskRows:
    """A one-byte mask as a decoding child sends it: its rows (runs along the axis contiguous
    in memory) that hold a nonzero voxel, with their numbers in memory order; what
    :func:`pack_mask` would give of the decoded :class:`Mask`, without the mask."""

    shape: tuple[int, ...]
    order: str  # "F" (NIfTI)
    grid: Grid
    which: NDArray[np.intp]
    packed: NDArray[np.uint8]  # (len(which), row bytes)


class RowsBuffer:
    """Memory for :func:`decode_rows`, reused from one mask to the next (the caller sends each
    mask's rows before it decodes another)."""

    def __init__(self) -> None:
        self._packed = np.empty((0, 1), dtype=np.uint8)
        self._which = np.empty(0, dtype=np.intp)

    def take(self, n_rows: int, row_bytes: int) -> tuple[NDArray[np.intp], NDArray[np.uint8]]:
        if self._packed.size < n_rows * row_bytes:
            # untouched memory costs nothing until a row is written into it
            self._packed = np.empty((n_rows, row_bytes), dtype=np.uint8)
        if self._which.size < n_rows:
            self._which = np.empty(n_rows, dtype=np.intp)
        packed = self._packed.reshape(-1)[: n_rows * row_bytes].reshape(n_rows, row_bytes)
        return self._which[:n_rows], packed


def decode_rows(
    raw: bytes,
    extension: str,
    buffer: RowsBuffer,
    *,
    max_voxel_bytes: int = DEFAULT_MAX_VOXEL_BYTES,
    expected_shape: tuple[int, ...] | None = None,
) -> MaskRows | None:
    """:func:`decode_mask` then :func:`pack_mask` in one pass for a gzipped one-byte NIfTI
    mask with no scaling: each inflated step's nonzero rows are copied straight into
    ``buffer`` while the step is in the core's cache (no mask, no summary). ``None`` for any
    other file, which :func:`decode_mask` then decodes. The same checks, in the same order,
    raise the same errors as :func:`decode_mask`."""
    from evaluator.metrics import _compiled

    if extension.lower() != ".nii.gz" or _compiled.pick_rows is None:
        return None
    try:
        head = _inflate_upto(raw, 540)
        info = _nifti_info(head)
        shape, dtype, offset = info.shape, info.dtype, info.offset
        if (
            dtype.itemsize != 1
            or dtype.kind not in "ub"
            or len(shape) not in (2, 3)
            or math.prod(shape) == 0
            # rescaled values (scaling gives another array than the one it is handed)
            or _apply_scaling(_CLEAN, info.slope, info.inter) is not _CLEAN
        ):
            return None
        nbytes = _check_declared(shape, 1, max_voxel_bytes, expected_shape)
        if offset > max_voxel_bytes:
            raise MaskDecodeError(f"invalid voxel offset {offset} in the NIfTI header")
        grid = Grid(shape, info.zooms[: len(shape)], info.affine, "nifti")
        row_bytes = shape[0]
        which, packed = buffer.take(nbytes // row_bytes, row_bytes)
        step = row_bytes * max(1, STREAM_BYTES // row_bytes)
        ors = np.empty(step // row_bytes, dtype=np.uint8)
        flat = packed.reshape(-1)
        count, first = 0, 0
        pick = _compiled.pick_rows
        for chunk in _inflate_steps(raw, offset, nbytes, step):
            src = np.frombuffer(chunk, dtype=np.uint8)
            count = pick(src, row_bytes, first, ors, which, flat, count)
            first += src.size // row_bytes
            del chunk, src
        _check_geometry(shape, grid)
    except MaskDecodeError:
        raise
    except MemoryError:
        raise MaskDecodeError("the mask does not fit in the decoder's memory limit") from None
    except Exception as exc:  # any other fault of a decoder on these bytes
        raise MaskDecodeError(
            f"unreadable {extension.lower()} file ({type(exc).__name__})"
        ) from None
    return MaskRows(shape, "F", grid, which[:count], packed[:count])


def unpack_mask(packed: PackedMask) -> Mask:
    """A :class:`Mask` equal to the one that was packed, its voxels in memory from the pool
    (writing only its nonzero rows, and zeroing those a previous mask left there)."""
    data = _rows_in_pool(packed.shape, packed.order, packed.which, packed.packed, packed.row_or)
    return Mask(data, packed.grid, packed.min, packed.max, packed.summary)


def _rows_in_pool(
    shape: tuple[int, ...],
    order: str,
    which: NDArray[np.intp],
    packed: NDArray[np.uint8],
    row_or: NDArray[np.uint8],
) -> NDArray[np.uint8]:
    """A one-byte mask of ``shape`` in memory from the pool whose memory-order rows ``which``
    hold ``packed`` and the others zero (one compiled pass that also zeroes the rows the
    buffer's previous mask left); ``row_or`` goes back to the pool with the buffer."""
    from evaluator.metrics import _compiled

    assert _compiled.restore_rows is not None  # rows were noted: Numba is there
    row_bytes = int(packed.shape[1])
    buffer, dirty = _POOL.take(math.prod(shape), row_bytes)
    voxels = np.frombuffer(buffer, dtype=np.uint8)
    _compiled.restore_rows(voxels.reshape(-1, row_bytes), dirty, which, packed)
    weakref.finalize(voxels, _POOL.give, buffer, row_or, row_bytes)
    return voxels.reshape(shape, order=order)  # type: ignore[call-overload]


def restore_rows(
    shape: tuple[int, ...], order: str, which: NDArray[np.intp], packed: NDArray[np.uint8]
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], MaskSummary | None]:
    """A one-byte mask of ``shape`` (``order`` "C" or "F") whose memory-order rows ``which``
    (strictly increasing) hold ``packed`` (one row each) and whose other rows are zero, in
    memory from the pool; with the OR of every row in memory order (what
    :func:`evaluator.metrics.surface.summarize` takes as ``fortran_rows``) and the mask's
    summary, made from the rows given alone (None when the array's layout is not the one its
    order says, a degenerate shape: summarize it then). How a mask decoded in another process
    comes back compactly; the caller has checked ``which`` and ``packed`` against ``shape``
    (nothing here trusts them beyond that)."""
    from evaluator.metrics import _compiled

    assert _compiled.summary_of_rows is not None
    nbytes = math.prod(shape)
    row_bytes = int(packed.shape[1])
    n_rows = nbytes // row_bytes
    if (
        nbytes % row_bytes
        or which.shape != (packed.shape[0],)
        or (which.size and (which[0] < 0 or which[-1] >= n_rows or np.any(np.diff(which) <= 0)))
    ):
        raise ValueError("rows that do not fit the shape")
    view3 = (1,) * (3 - len(shape)) + (tuple(reversed(shape)) if order == "F" else tuple(shape))
    if view3[2] != row_bytes:  # the compiled pass indexes by the shape without bounds checks
        raise ValueError("rows that do not fit the shape")
    words = (
        packed.view(np.uint64)
        if row_bytes % 8 == 0 and packed.ctypes.data % 8 == 0
        else np.zeros((packed.shape[0], 0), dtype=np.uint64)
    )
    stats, rows, spans = _compiled.summary_of_rows(which, packed, words, view3[0], view3[1])
    row_or = rows.reshape(-1)
    arr = _rows_in_pool(shape, order, which, packed, row_or)
    read_as = _c_view(arr)  # how summarize reads it: the summary must say the same
    if read_as is None or read_as[1] != (order == "F") or arr.size == 0:
        return arr, row_or, None
    box = None
    if stats[2] >= 0:
        box3 = tuple(slice(int(stats[2 + 2 * k]), int(stats[3 + 2 * k])) for k in range(3))
        box = box3[3 - len(shape) :]
    summary = MaskSummary(int(stats[0]), int(stats[1]), box, rows, spans, order == "F", len(shape))
    return arr, row_or, summary


def declared_shape(raw: bytes, extension: str) -> tuple[int, ...] | None:
    """The shape a NIfTI file's header declares, as :func:`decode_mask` would give it, read
    from the header alone (about a microsecond once the header is known); ``None`` for other
    formats or a header that does not parse (decoding then says why)."""
    ext = extension.lower()
    if ext not in (".nii.gz", ".nii"):
        return None
    try:
        head = _inflate_upto(raw, 540) if ext == ".nii.gz" else raw[:540]
        return _nifti_info(head).shape
    except Exception:  # any fault is decoding's to report
        return None
