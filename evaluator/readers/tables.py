"""Reading classification references and predictions (CSV) strictly.

Reference: ``case_id,label`` with integer class labels. Predictions, one of:

* ``case_id,score``: binary only, the probability of class 1;
* ``case_id,class_0,class_1,...``: one probability column per class (rows summing to 1);
* ``case_id,label``: hard labels (threshold-free metrics are then undefined).

Every problem raises ``InvalidSubmission``/``InvalidReference`` naming the file, the case and what
is wrong; a message about predictions never reveals a reference label.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from evaluator._lru import recall, remember
from evaluator.errors import EvaluatorInputError, InvalidReference, InvalidSubmission

__all__ = [
    "ClassificationPredictions",
    "ClassificationReference",
    "read_predictions_csv",
    "read_reference_csv",
]

#: tolerance on "probabilities of a row sum to 1" (CSV rounding)
ROW_SUM_TOLERANCE = 1e-3
_MAX_LISTED = 5


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


@dataclass(frozen=True)
class ClassificationReference:
    case_ids: list[str]
    labels: NDArray[np.int64]
    classes: list[int]

    @property
    def binary(self) -> bool:
        return set(self.classes) <= {0, 1}

    @cached_property
    def index(self) -> dict[str, int]:
        """Row of each case id (built once: both leaderboard parts use it)."""
        return {c: i for i, c in enumerate(self.case_ids)}

    @cached_property
    def _id_order(self) -> tuple[NDArray[np.intp], NDArray[np.object_]]:
        """Each row's place among the ids in Python's string order, and the ids as an array."""
        order = sorted(range(len(self.case_ids)), key=self.case_ids.__getitem__)
        places = np.empty(len(order), dtype=np.intp)
        places[np.asarray(order, dtype=np.intp)] = np.arange(len(order), dtype=np.intp)
        ids = np.empty(len(order), dtype=object)
        ids[:] = self.case_ids
        return places, ids

    def rows_of(
        self, case_ids: Sequence[Any] | None
    ) -> tuple[NDArray[np.intp], list[str], list[str]]:
        """The rows of ``case_ids`` (all when None; each id once, as a string) in id order, those
        ids, and the ids that are not in this reference (sorted).

        The answer for an id list is remembered (the eight lists used last), because every
        submission of a phase scores the same leaderboard parts; only sorting integers and
        one dictionary lookup per id are left for a list seen the first time."""
        memo: dict[Any, Any] = self.__dict__.setdefault("_rows_memo", {})
        key: Any = None if case_ids is None else tuple(case_ids)  # a copy: lists change
        try:
            hit = recall(memo, key)
        except TypeError:  # an unhashable id: known by its text
            key = tuple(map(str, case_ids or ()))
            hit = recall(memo, key)
        if hit is not None:
            return hit
        places, ids = self._id_order
        if case_ids is None:
            rows = np.argsort(places, kind="stable")
            absent: list[str] = []
        else:
            wanted = list(dict.fromkeys(map(str, case_ids)))
            found = np.fromiter(
                map(self.index.get, wanted, repeat(-1)), dtype=np.intp, count=len(wanted)
            )
            absent = sorted(w for w, r in zip(wanted, found.tolist(), strict=True) if r < 0)
            rows = found[found >= 0]
            rows = rows[np.argsort(places[rows], kind="stable")]
        rows.setflags(write=False)  # shared by every submission that scores this part
        return remember(memo, key, (rows, ids[rows].tolist(), absent), 8)


@dataclass(frozen=True)
class ClassificationPredictions:
    case_ids: list[str]
    #: (n, n_classes) probabilities in the order of ``classes``, or hard labels one-hot encoded
    probs: NDArray[np.float64]
    hard_labels: bool
    kind: str  # "score", "class_columns" or "label"

    @cached_property
    def index(self) -> dict[str, int]:
        """Row of each case id (built once: both leaderboard parts use it)."""
        return {c: i for i, c in enumerate(self.case_ids)}

    def rows_in(self, ref: ClassificationReference) -> tuple[NDArray[np.intp], list[str]]:
        """For each row of ``ref``, the row of these predictions with its case id (-1: none),
        and the ids of these predictions that ``ref`` does not have (sorted). One dictionary
        lookup per prediction; remembered for the last reference (both leaderboard parts)."""
        memo = self.__dict__.get("_rows_in")
        if memo is not None and memo[0] is ref:
            return memo[1]
        n = len(self.case_ids)
        at = np.fromiter(map(ref.index.get, self.case_ids, repeat(-1)), dtype=np.intp, count=n)
        known = at >= 0
        unknown = sorted(self.case_ids[i] for i in np.flatnonzero(~known).tolist())
        row_of_ref = np.full(len(ref.case_ids), -1, dtype=np.intp)
        row_of_ref[at[known]] = np.flatnonzero(known)
        if int(np.count_nonzero(row_of_ref >= 0)) != int(np.count_nonzero(known)):
            # the readers refuse repeated ids; only a table from elsewhere can get here
            raise InvalidSubmission("the predictions repeat a case id")
        row_of_ref.setflags(write=False)
        self.__dict__["_rows_in"] = (ref, (row_of_ref, unknown))
        return row_of_ref, unknown


#: a header line longer than this is not a header of any table Scanbench reads
_MAX_HEADER_CHARS = 1 << 16


def _check_header(
    text: str, display: str, err: type[EvaluatorInputError], max_columns: int
) -> None:
    """Refuse a table whose header has more columns than any valid file of its kind, before the
    parser sees it (a parser's cost grows with columns times rows)."""
    line = text.lstrip("\r\n").split("\n", 1)[0]
    if len(line) > _MAX_HEADER_CHARS:
        raise err(f"the header line is over {_MAX_HEADER_CHARS} characters long", file=display)
    try:
        header = next(csv.reader([line], skipinitialspace=True))
    except (csv.Error, StopIteration):
        raise err("unreadable CSV header", file=display) from None
    if len(header) > max_columns:
        raise err(
            f"{len(header)} columns in the header, at most {max_columns} expected", file=display
        )


def _parse(text: str, dtype: Any) -> pd.DataFrame:
    """pandas' C parser with the rules of every table here: no value is taken for missing
    (an empty field stays empty), blanks after a comma are skipped."""
    return pd.read_csv(
        io.StringIO(text), dtype=dtype, keep_default_na=False, na_filter=False,
        skipinitialspace=True,
    )  # fmt: skip


def _numbers_first(text: str) -> pd.DataFrame | None:
    """The table with every column but ``case_id`` read straight into float64 by the CSV
    parser (the same values as Python's float(), tested); None when some value is not a finite
    number, and then the caller reads every column as text, which gives the precise error.
    Valid files, nearly all of them, are parsed once and build no text objects for their
    numbers."""
    dtypes: defaultdict[str, Any] = defaultdict(lambda: np.float64)
    dtypes["case_id"] = str
    try:
        df = _parse(text, dtypes)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, TypeError):
        return None
    numbers = [c for c in df.columns if str(c).strip() != "case_id"]
    if "case_id" not in df.columns or any(df[c].dtype != np.float64 for c in numbers):
        return None
    if numbers and not np.isfinite(df[numbers].to_numpy()).all():
        return None
    return df


def _read_table(
    raw: bytes,
    display: str,
    err: type[EvaluatorInputError],
    max_columns: int,
    *,
    numbers: bool = False,
) -> tuple[pd.DataFrame, list[str]]:
    """The CSV as a table of text columns, and its case ids (stripped); with ``numbers``,
    columns other than ``case_id`` come as float64 when every value reads as a finite number
    (else as text, as without)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise err("not a UTF-8 text CSV file", file=display) from None
    if not text.strip():
        raise err("the CSV file is empty", file=display)
    _check_header(text, display, err, max_columns)
    df = _numbers_first(text) if numbers else None
    try:
        if df is None:
            df = _parse(text, str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise err(f"unreadable CSV ({exc})", file=display) from exc
    df.columns = [str(c).strip() for c in df.columns]
    seen = Counter(df.columns)
    dupes = sorted(c for c, n in seen.items() if n > 1)
    if dupes:
        raise err(f"duplicate column(s): {_listing(dupes)}", file=display)
    if "case_id" not in df.columns:
        raise err(
            f"missing column 'case_id' (columns found: {_listing(list(df.columns))})", file=display
        )
    # str.strip over a plain list: several times faster than pandas' string accessor; the
    # checks run on that list too, and pandas' own only to name the repeated ids
    ids = [s.strip() for s in df["case_id"].tolist()]
    df["case_id"] = ids
    if "" in ids:
        raise err(f"empty case_id on data row {ids.index('') + 1}", file=display)
    if len(set(ids)) != len(ids):
        dup = df["case_id"][df["case_id"].duplicated()].unique().tolist()
        raise err(f"duplicate case id(s): {_listing(dup)}", file=display, case=str(dup[0]))
    return df, ids


def _numbers(
    df: pd.DataFrame, column: str, display: str, err: type[EvaluatorInputError]
) -> NDArray[np.float64]:
    if df[column].dtype == np.float64:  # read as finite numbers already (_numbers_first)
        return df[column].to_numpy(dtype=np.float64)
    # pandas' number parser skips surrounding blanks itself; the stripped text is only built
    # (and parsed again, the original rule) when some value does not read as a finite number.
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        text = df[column].str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raw_value = text.iloc[i]
        if raw_value == "":
            problem = f"column '{column}' is empty"
        elif math.isnan(values[i]) and raw_value.lower() not in ("nan", "-nan", "+nan"):
            problem = f"column '{column}' is not a number ({raw_value[:40]!r})"
        else:
            problem = f"column '{column}' is {'NaN' if math.isnan(values[i]) else 'infinite'}"
        more = f" ({bad.size} rows affected)" if bad.size > 1 else ""
        raise err(problem + more, file=display, case=str(df["case_id"].iloc[i]))
    return values


def _integers(
    df: pd.DataFrame, column: str, display: str, err: type[EvaluatorInputError]
) -> NDArray[np.int64]:
    values = _numbers(df, column, display, err)
    frac = np.flatnonzero(values != np.round(values))
    if frac.size:
        i = int(frac[0])
        raise err(
            f"column '{column}' must be an integer class label",
            file=display,
            case=str(df["case_id"].iloc[i]),
        )
    return values.astype(np.int64)


def read_reference_csv(raw: bytes, display: str) -> ClassificationReference:
    """Parse a ``case_id,label`` reference."""
    err = InvalidReference
    df, ids = _read_table(raw, display, err, max_columns=2)
    if set(df.columns) != {"case_id", "label"}:
        raise err(
            f"a reference must have exactly the columns case_id,label "
            f"(found: {_listing(list(df.columns))})",
            file=display,
        )
    if len(df) == 0:
        raise err("the reference has no cases", file=display)
    labels = _integers(df, "label", display, err)
    if labels.min() < 0:
        raise err("negative class label", file=display)
    classes = sorted({int(v) for v in labels} | {0, 1})
    if len(classes) > 2:
        classes = list(range(max(classes) + 1))
    return ClassificationReference(ids, labels, classes)


def read_predictions_csv(
    raw: bytes, display: str, *, classes: Sequence[int]
) -> ClassificationPredictions:
    """Parse predictions for a reference with the given ``classes`` (sorted class labels)."""
    err = InvalidSubmission
    df, ids = _read_table(raw, display, err, max_columns=len(classes) + 1, numbers=True)
    cols = [c for c in df.columns if c != "case_id"]
    class_cols = [f"class_{k}" for k in classes]
    binary = list(classes) == [0, 1]
    expected = (
        "case_id,score or case_id,class_0,class_1 or case_id,label"
        if binary
        else f"case_id,{','.join(class_cols)} or case_id,label"
    )
    n = len(df)
    if set(cols) == {"score"} and binary:
        s = _numbers(df, "score", display, err)
        _check_unit_interval(df, s, "score", display)
        probs = np.stack([1.0 - s, s], axis=1)
        return ClassificationPredictions(ids, probs, False, "score")
    if set(cols) == set(class_cols):
        probs = np.empty((n, len(classes)))
        for j, c in enumerate(class_cols):
            probs[:, j] = _numbers(df, c, display, err)
            _check_unit_interval(df, probs[:, j], c, display)
        sums = probs.sum(axis=1)
        off = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
        if off.size:
            i = int(off[0])
            raise err(
                f"class probabilities sum to {sums[i]:.6g}, not 1 (tolerance "
                f"{ROW_SUM_TOLERANCE:g})",
                file=display,
                case=str(df["case_id"].iloc[i]),
            )
        return ClassificationPredictions(ids, probs, False, "class_columns")
    if set(cols) == {"label"}:
        labels = _integers(df, "label", display, err)
        allowed = set(classes)
        bad = [i for i, v in enumerate(labels) if int(v) not in allowed]
        if bad:
            raise err(
                f"label {int(labels[bad[0]])} is not a class of this challenge "
                f"(classes: {', '.join(map(str, classes))})",
                file=display,
                case=str(df["case_id"].iloc[bad[0]]),
            )
        index = {k: j for j, k in enumerate(classes)}
        probs = np.zeros((n, len(classes)))
        probs[np.arange(n), [index[int(v)] for v in labels]] = 1.0
        return ClassificationPredictions(ids, probs, True, "label")
    raise err(
        f"wrong columns: found {','.join(['case_id', *cols])}; expected {expected}", file=display
    )


def _check_unit_interval(
    df: pd.DataFrame, values: NDArray[np.float64], column: str, display: str
) -> None:
    bad = np.flatnonzero((values < 0.0) | (values > 1.0))
    if bad.size:
        i = int(bad[0])
        raise InvalidSubmission(
            f"column '{column}' is {values[i]:.6g}, outside [0, 1] (probabilities expected)",
            file=display,
            case=str(df["case_id"].iloc[i]),
        )
