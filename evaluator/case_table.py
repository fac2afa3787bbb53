"""Per-case values as columns: one array per metric over the scored cases, in case order.

A :class:`CaseTable` is what :func:`evaluator.score` returns as ``report.cases``. It reads like
the mapping ``{case_id: {metric: value}}`` (undefined values are ``None``), but keeps one
float64 array per metric, so that scoring 10,000 cases builds no 10,000 dictionaries and the
platform stores the values as a compact binary document (:meth:`CaseTable.to_bytes`) rather
than JSON text. The leaderboard reads whole columns (:meth:`CaseTable.column_array`).

Binary layout (little endian), version 1::

    b"SBCT" | version u8 | header length u32 | header (JSON, UTF-8) |
    case ids (zlib of the ids joined by "\\n") | one array per column

The header holds ``n`` (cases), ``ids_bytes`` (length of the compressed ids) and ``columns``,
a list of ``[name, dtype]`` with dtype ``"f8"`` (float64, NaN = undefined) or ``"u1"`` (a
column whose every value is exactly 0 or 1, one byte each). Values round-trip exactly.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

MAGIC = b"SBCT"
VERSION = 1
_HEAD = struct.Struct("<4sBI")
_DTYPES: dict[str, np.dtype[Any]] = {"f8": np.dtype("<f8"), "u1": np.dtype("u1")}
# A stored document is checked against these before any array is built from it.
MAX_HEADER_BYTES = 1 << 20
MAX_CASES = 10_000_000


class CaseTableError(ValueError):
    """A stored per-case document that cannot be read (damaged or of an unknown version)."""


FloatArray = NDArray[np.float64]


class CaseTable(Mapping[str, dict[str, float | None]]):
    """Per-case values of one scoring: ``ids`` (case order) and one float64 column per metric."""

    __slots__ = ("_columns", "_ids", "_index")

    def __init__(self, ids: Sequence[str], columns: Mapping[str, Any]) -> None:
        self._ids: list[str] = list(ids)
        if set(map(type, self._ids)) - {str}:  # one pass in C when they are strings already
            self._ids = [str(i) for i in self._ids]
        self._columns: dict[str, FloatArray] = {}
        for name, values in columns.items():
            arr = np.array(values, dtype=np.float64)  # a copy: the table owns its columns
            if arr.shape != (len(self._ids),):
                raise ValueError(
                    f"column {name!r} has {arr.size} values for {len(self._ids)} cases"
                )
            self._columns[str(name)] = arr
        self._index: dict[str, int] | None = None

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Mapping[str, Mapping[str, float | None]]) -> CaseTable:
        """From ``{case_id: {metric: value}}`` (``None`` or a missing key = undefined)."""
        if isinstance(rows, CaseTable):
            return rows
        ids = list(rows)
        names: dict[str, None] = {}
        for row in rows.values():
            for k in row:
                names.setdefault(k, None)
        columns = {
            name: [math.nan if (v := rows[c].get(name)) is None else float(v) for c in ids]
            for name in names
        }
        return cls(ids, columns)

    # -- the mapping view -----------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def metrics(self) -> list[str]:
        return list(self._columns)

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __getitem__(self, case_id: str) -> dict[str, float | None]:
        if self._index is None:
            self._index = {c: i for i, c in enumerate(self._ids)}
        i = self._index[case_id]
        return {name: _value(col[i]) for name, col in self._columns.items()}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CaseTable):
            return (
                self._ids == other._ids
                and self._columns.keys() == other._columns.keys()
                and all(
                    np.array_equal(a, other._columns[k], equal_nan=True)
                    for k, a in self._columns.items()
                )
            )
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CaseTable({len(self._ids)} cases, columns {self.metrics})"

    def column_array(self, metric: str) -> FloatArray | None:
        """The values of one metric in case order (NaN = undefined); None if absent."""
        return self._columns.get(metric)

    def column(self, metric: str) -> dict[str, float | None]:
        """``{case_id: value}`` of one metric (None = undefined or absent)."""
        col = self._columns.get(metric)
        if col is None:
            return dict.fromkeys(self._ids)
        return dict(zip(self._ids, _values(col), strict=True))

    def to_dict(self) -> dict[str, dict[str, float | None]]:
        """The plain ``{case_id: {metric: value}}`` (JSON output)."""
        cols = {name: _values(col) for name, col in self._columns.items()}
        return {c: {name: vals[i] for name, vals in cols.items()} for i, c in enumerate(self._ids)}

    # -- the stored form ------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        arrays: list[bytes] = []
        spec: list[list[str]] = []
        for name, col in self._columns.items():
            if col.size and bool(np.all((col == 0.0) | (col == 1.0))):
                spec.append([name, "u1"])
                arrays.append(col.astype(np.uint8).tobytes())
            else:
                spec.append([name, "f8"])
                arrays.append(col.astype("<f8").tobytes())
        ids = zlib.compress("\n".join(self._ids).encode("utf-8"), 1)
        header = json.dumps(
            {"n": len(self._ids), "ids_bytes": len(ids), "columns": spec},
            separators=(",", ":"),
        ).encode("utf-8")
        return b"".join([_HEAD.pack(MAGIC, VERSION, len(header)), header, ids, *arrays])

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> CaseTable:
        buf = memoryview(data).cast("B")
        if len(buf) < _HEAD.size:
            raise CaseTableError("per-case document too short")
        magic, version, hlen = _HEAD.unpack_from(buf, 0)
        if magic != MAGIC or version != VERSION:
            raise CaseTableError(f"not a per-case document of version {VERSION}")
        if hlen > MAX_HEADER_BYTES or _HEAD.size + hlen > len(buf):
            raise CaseTableError("per-case document header is damaged")
        try:
            header = json.loads(bytes(buf[_HEAD.size : _HEAD.size + hlen]))
            n, ids_len = int(header["n"]), int(header["ids_bytes"])
            spec = [(str(name), _DTYPES[dt]) for name, dt in header["columns"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise CaseTableError(f"per-case document header is damaged ({exc})") from None
        pos = _HEAD.size + hlen
        need = pos + ids_len + sum(n * dt.itemsize for _name, dt in spec)
        if not 0 <= n <= MAX_CASES or ids_len < 0 or need != len(buf):
            raise CaseTableError("per-case document has the wrong length")
        try:
            text = zlib.decompress(bytes(buf[pos : pos + ids_len])).decode("utf-8")
        except (zlib.error, UnicodeDecodeError) as exc:
            raise CaseTableError(f"per-case ids are damaged ({exc})") from None
        ids = text.split("\n") if n else []
        if len(ids) != n:
            raise CaseTableError("per-case ids do not match the header")
        pos += ids_len
        table = cls.__new__(cls)
        table._ids = ids
        table._columns = {}
        table._index = None
        for name, dt in spec:
            size = n * dt.itemsize
            arr = np.frombuffer(buf[pos : pos + size], dtype=dt)
            table._columns[name] = arr.astype(np.float64)  # a writable copy, float64
            pos += size
        return table


def _value(x: np.float64) -> float | None:
    v = float(x)
    return None if math.isnan(v) else v


def _values(col: FloatArray) -> list[float | None]:
    out: list[float | None] = col.tolist()
    if np.isnan(col).any():
        out = [None if v != v else v for v in out]  # NaN is the only value unequal to itself
    return out


def as_case_table(cases: Mapping[str, Mapping[str, float | None]] | None) -> CaseTable:
    """A CaseTable from either form (a table, or the plain mapping of older results)."""
    if cases is None:
        return CaseTable([], {})
    return CaseTable.from_rows(cases)
