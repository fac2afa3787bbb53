"""``score()``: read, validate and score one submission against a reference.

This is the API the platform's worker calls and the CLI's ``score`` command wraps::

    report = score("segmentation", Path("ref/"), Path("preds.zip"),
                   options=ScoreOptions(nsd_tolerance=2.0, case_ids=public_ids))
    report.aggregates["dice"], report.cases["case_001"]["hd95"], report.to_json()

Bad predictions raise :class:`~evaluator.errors.InvalidSubmission` (one line, safe to show to the
participant); a bad reference raises :class:`~evaluator.errors.InvalidReference`.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from evaluator._lru import recall, remember
from evaluator._version import __version__
from evaluator.aggregation import aggregate_cases
from evaluator.case_table import CaseTable
from evaluator.errors import EvaluatorInputError, InvalidReference, InvalidSubmission
from evaluator.metrics.classification import (
    BINARY_METRIC_NAMES,
    THRESHOLD_FREE_METRICS,
    binary_metrics,
    multiclass_metrics,
)
from evaluator.metrics.registry import CLASSIFICATION_METRICS, SEGMENTATION_METRICS, metric_info
from evaluator.metrics.segmentation import (
    SEGMENTATION_METRIC_NAMES,
    case_metrics_and_counts,
    empty_label_metrics,
)
from evaluator.readers import kept
from evaluator.readers.isolated import DecodeLimits, Decoder, decode_table_isolated
from evaluator.readers.masks import (
    Grid,
    Mask,
    MaskDecodeError,
    declared_shape,
    decode_mask,
    reused_voxel_memory,
)
from evaluator.readers.safe_zip import UnsafeArchiveError, ZipLimits, iter_members, read_member
from evaluator.readers.sources import (
    CaseFile,
    CaseFiles,
    digest_of,
    known_digest,
    list_case_files,
    note_digest,
)
from evaluator.stats.intervals import (
    Interval,
    bootstrap_mean_intervals,
    delong_interval,
    wilson_interval,
)

__all__ = ["ScoreOptions", "ScoreReport", "score"]

Task = Literal["classification", "segmentation"]
_T = TypeVar("_T")
_R = TypeVar("_R")
_MAX_LISTED = 5


@dataclass(frozen=True)
class ScoreOptions:
    """How to score. Defaults follow ``docs/metrics.md``.

    ``case_ids`` restricts scoring to those reference cases (the public or private part of the
    test set); validation of ids (missing, unknown) always runs against the whole reference.
    ``labels`` declares the segmentation labels (default: every label found in the scored
    reference masks; declare them when scoring a subset so that the label set cannot depend on
    it). ``on_missing="worst"`` scores a missing case with the worst value of every metric
    instead of rejecting the submission. ``workers`` is the number of threads scoring cases
    (default: the CPU count, at most 4). ``isolation``, when given, decodes the predictions in a
    separate locked-down process with those limits (:mod:`evaluator.readers.isolated`); the
    platform always sets it, a laptop may leave it out. ``predictions_name`` is the name
    messages use for the predictions (the participant's own file name; default: the path's).
    """

    threshold: float = 0.5
    nsd_tolerance: float = 1.0
    sens_at_spec_target: float = 0.9
    bootstrap: int = 1000
    seed: int = 0
    confidence_level: float = 0.95
    metrics: Collection[str] | None = None
    case_ids: Collection[str] | None = None
    labels: Sequence[int] | None = None
    on_missing: Literal["error", "worst"] = "error"
    workers: int | None = None
    limits: ZipLimits = field(default_factory=ZipLimits)
    isolation: DecodeLimits | None = None
    predictions_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "nsd_tolerance": self.nsd_tolerance,
            "sens_at_spec_target": self.sens_at_spec_target,
            "bootstrap": self.bootstrap,
            "seed": self.seed,
            "confidence_level": self.confidence_level,
            "metrics": sorted(self.metrics) if self.metrics is not None else None,
            "restricted_to_case_ids": self.case_ids is not None,
            "labels": list(self.labels) if self.labels is not None else None,
            "on_missing": self.on_missing,
            "isolated_decoding": self.isolation is not None,
        }


@dataclass
class ScoreReport:
    """The result of :func:`score`; :meth:`to_json` gives the ``metrics.json`` content."""

    aggregates: dict[str, float | None]
    # ``{case_id: {metric: value}}``: a CaseTable (columns) or a plain dict
    cases: Mapping[str, dict[str, float | None]]
    meta: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        cases = self.cases.to_dict() if isinstance(self.cases, CaseTable) else dict(self.cases)
        return {"aggregates": self.aggregates, "cases": cases, "meta": self.meta}


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _file_key(path: Path) -> tuple[str, int, int] | None:
    """Identity of a file's content for the in-process caches: path, size and mtime (ns)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), st.st_size, st.st_mtime_ns) if path.is_file() else None


# A small in-process cache, keyed by (path, size, mtime): a worker scores the public and the
# private part of one submission, and many submissions against one reference, so the same files
# are parsed again and again. Parsed tables are treated as read-only. File digests are
# remembered by evaluator.readers.sources, for single files and a folder's files alike.
_CACHE_SIZE = 8
_table_cache: dict[tuple[Any, ...], Any] = {}


def _sha256_path(path: Path) -> str:
    """sha256 of a file, or of a folder's sorted ``relative path, file sha256`` manifest."""
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        return _sha256_tree(path)
    digest = known_digest(st)
    if digest is None:
        digest = _sha256_file(path)
        note_digest(st, digest)
    return digest


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_tree(path: Path) -> str:
    """The manifest digest of a folder: ``relative path NUL file sha256 LF`` for every regular
    file below it (symbolic links neither followed nor listed), in the order of their path
    components, as ``sorted(path.rglob("*"))`` gives them."""
    root = path.resolve()
    files: list[tuple[list[str], str, str, os.stat_result]] = []
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for e in entries:
                rel = prefix + e.name
                if e.is_dir(follow_symlinks=False):
                    stack.append((Path(e.path), rel + "/"))
                elif e.is_file(follow_symlinks=False):
                    files.append((rel.split("/"), rel, e.path, e.stat(follow_symlinks=False)))
    manifest = hashlib.sha256()
    for _parts, rel, full, st in sorted(files, key=lambda f: f[0]):
        # a file the scorer read is hashed already (evaluator.readers.sources); another is
        # read here
        digest = known_digest(st)
        if digest is None:
            digest = _sha256_file(Path(full))
            note_digest(st, digest)
        manifest.update(rel.encode() + b"\0")
        manifest.update(digest.encode() + b"\n")
    return manifest.hexdigest()


def _check_ids(
    ref_ids: Collection[str],
    pred_ids: Collection[str],
    pred_display: str,
    on_missing: str,
) -> list[str]:
    """Raise on unknown ids, and on missing ids unless they are to get worst values."""
    unknown = sorted(set(pred_ids) - set(ref_ids))
    missing = sorted(set(ref_ids) - set(pred_ids))
    _refuse_ids(unknown, missing, pred_display, on_missing)
    return missing


def _refuse_ids(
    unknown: Sequence[str], missing: Sequence[str], pred_display: str, on_missing: str
) -> None:
    """The participant's error for ids of the predictions the reference lacks, and for ids of
    the reference the predictions lack unless they are to get worst values (both sorted)."""
    if unknown:
        raise InvalidSubmission(
            f"{len(unknown)} unknown case id(s) not in the test set: {_listing(unknown)}",
            file=pred_display,
            case=unknown[0],
        )
    if missing and on_missing == "error":
        raise InvalidSubmission(
            f"{len(missing)} case(s) missing from the predictions: {_listing(missing)}",
            file=pred_display,
            case=missing[0],
        )


def _scored_ids(ref_ids: Sequence[str], case_ids: Collection[str] | None) -> list[str]:
    if case_ids is None:
        return sorted(ref_ids)
    wanted = {str(c) for c in case_ids}
    _refuse_absent(sorted(wanted - set(ref_ids)))
    return sorted(wanted)


def _refuse_absent(absent: Sequence[str]) -> None:
    """The reference's (organizer's) error for scored case ids it does not have (sorted)."""
    if absent:
        raise InvalidReference(f"case_ids not in the reference: {_listing(absent)}")


def score(
    task: str,
    reference: Path,
    predictions: Path,
    *,
    options: ScoreOptions | None = None,
) -> ScoreReport:
    """Score ``predictions`` against ``reference`` for a ``"classification"`` or
    ``"segmentation"`` task; see the module docstring and ``docs/evaluator.md``."""
    options = options or ScoreOptions()
    reference, predictions = Path(reference), Path(predictions)
    if task not in ("segmentation", "classification"):
        raise ValueError(f"unknown task {task!r}: expected 'classification' or 'segmentation'")
    digest: Future[str] | None = None
    hasher = None
    if options.isolation is not None:
        # the decoding child reads the participant's files, so the scorer never hashes them as
        # it reads (see _sha256_tree): they are hashed meanwhile on a thread of their own
        hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scanbench-digest")
        digest = hasher.submit(_sha256_path, predictions)
    try:
        if task == "segmentation":
            report = _score_segmentation(reference, predictions, options)
        else:
            report = _score_classification(reference, predictions, options)
        predictions_sha256 = digest.result() if digest is not None else _sha256_path(predictions)
    finally:
        if hasher is not None:  # done, or not waited for when scoring failed
            hasher.shutdown(wait=False, cancel_futures=True)
    report.meta["reference_sha256"] = _sha256_path(reference)
    report.meta["predictions_sha256"] = predictions_sha256
    return report


def _base_meta(task: str, options: ScoreOptions) -> dict[str, Any]:
    return {
        "evaluator": "scanbench-evaluator",
        "version": __version__,
        "task": task,
        "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": options.to_json(),
    }


# --------------------------------------------------------------------------- segmentation


def _spacing_of(grid: Grid) -> tuple[float, ...]:
    return grid.spacing if grid.spacing is not None else (1.0,) * len(grid.shape)


def _check_grid(ref: Grid, pred: Grid, display: str, case_id: str) -> None:
    if ref.shape != pred.shape:
        raise InvalidSubmission(
            f"mask shape {pred.shape} differs from the reference shape {ref.shape}",
            file=display,
            case=case_id,
        )
    # equal values (the usual case: a prediction carries its reference's header) skip the
    # tolerance checks, which take tens of microseconds each
    if (
        ref.spacing is not None
        and pred.spacing is not None
        and ref.spacing != pred.spacing
        and not np.allclose(ref.spacing, pred.spacing, rtol=1e-4, atol=1e-5)
    ):
        raise InvalidSubmission(
            f"voxel spacing {tuple(round(s, 6) for s in pred.spacing)} differs from the "
            f"reference spacing {tuple(round(s, 6) for s in ref.spacing)} (not resampled)",
            file=display,
            case=case_id,
        )
    if (
        ref.affine is not None
        and pred.affine is not None
        and ref.space == pred.space
        and ref.affine is not pred.affine
        and ref.affine.tobytes() != pred.affine.tobytes()
        and not np.allclose(ref.affine, pred.affine, rtol=1e-4, atol=1e-3)
    ):
        raise InvalidSubmission(
            "image grid (origin/orientation in the header) differs from the reference "
            "(copy the header of the test input)",
            file=display,
            case=case_id,
        )


def _decode(
    f: CaseFile, role: str, limits: ZipLimits, expected_shape: tuple[int, ...] | None = None
) -> Mask:
    raw = f.read()
    digest_of(raw)  # not needed here: the reader lets go of its note of these bytes
    return _decode_raw(f, raw, role, limits, expected_shape)


def _decode_raw(
    f: CaseFile,
    raw: bytes,
    role: str,
    limits: ZipLimits,
    expected_shape: tuple[int, ...] | None = None,
    digest: str | None = None,
) -> Mask:
    """:func:`_decode` of bytes already read from ``f`` (``digest``: their sha256, when the
    reader hashed them)."""
    err = InvalidReference if role == "reference" else InvalidSubmission

    def decode(raw: bytes) -> Mask:
        try:
            return decode_mask(
                raw,
                f.extension,
                max_voxel_bytes=limits.max_member_bytes,
                expected_shape=expected_shape,
            )
        except MaskDecodeError as exc:
            raise err(exc.problem(), file=f.display, case=f.case_id) from exc

    if role == "reference" and expected_shape is None:
        # scored again and again by a worker: kept decoded between submissions
        return kept.reference_mask(raw, f.extension, limits.max_member_bytes, decode, digest)
    return decode(raw)


#: cases a decoding child is asked for ahead of the one being loaded, when each has at most
#: _ASK_AHEAD_VOXELS voxels: an answer is kept until its case is scored, about the size of the
#: mask's rows that hold a voxel for a one-byte mask, the whole array for wider types
_ASK_AHEAD = 3
_ASK_AHEAD_VOXELS = 1 << 23  # 256 x 256 x 128


class _PredictionMasks:
    """The participant's masks: decoded here (a laptop) or in a locked-down child (the platform)."""

    def __init__(self, predictions: Path, options: ScoreOptions):
        self._files: CaseFiles | None = None
        self._decoder: Decoder | None = None
        self._limits = options.limits
        self._order: list[str] = []
        self._position: dict[str, int] = {}
        self._references: Mapping[str, CaseFile] = {}
        self._asked: set[str] = set()
        self._read_ahead: dict[str, tuple[bytes, str | None]] = {}
        if options.isolation is not None:
            self._decoder = Decoder(
                "segmentation", predictions, _shown(predictions, options), options.isolation
            )
            self.display = self._decoder.display
            self.names = {c: d for c, (d, _e) in self._decoder.cases.items()}
            self.decoding = list(self._decoder.isolation)
        else:
            self._files = list_case_files(
                predictions,
                role="predictions",
                limits=options.limits,
                display=_shown(predictions, options),
            )
            self.display = self._files.display
            self.names = {c: f.display for c, f in self._files.files.items()}
            self.decoding = ["in-process"]

    def plan(self, order: Sequence[str], references: Mapping[str, CaseFile]) -> None:
        """The cases in the order they will be scored (those with a prediction), with their
        references: a decoding child is then asked for the next few ahead of need."""
        self._order = [c for c in order if self._decoder is not None and c in self._decoder.cases]
        self._position = {c: k for k, c in enumerate(self._order)}
        self._references = references

    def reference_bytes(self, case_id: str, reference: CaseFile) -> tuple[bytes, str | None]:
        """The reference file's bytes and their sha256 when the reader hashed them: read
        ahead by :meth:`prefetch` (once), else now."""
        got = self._read_ahead.pop(case_id, None)
        if got is None:
            raw = reference.read()
            return raw, digest_of(raw)
        return got

    def prefetch(self, case_id: str, reference: CaseFile, raw: bytes) -> None:
        """With a decoding child, ask it for this case now and for the next
        :data:`_ASK_AHEAD` cases of the plan, each with the shape its reference's header
        declares, so that the child decodes predictions while this side scores (:meth:`decode`
        takes the answers). The references read for their headers are kept for
        :meth:`reference_bytes`."""
        if self._decoder is None:
            return
        self._ask(case_id, reference, raw)
        k = self._position.get(case_id)
        if k is None:
            return
        for later in self._order[k + 1 : k + 1 + _ASK_AHEAD]:
            if later in self._asked:
                continue
            ref = self._references[later]
            try:
                got = ref.read()
            except EvaluatorInputError:
                continue  # reported by its own case, in case order, when it is read then
            self._read_ahead[later] = (got, digest_of(got))
            self._ask(later, ref, got, _ASK_AHEAD_VOXELS)

    def _ask(
        self, case_id: str, reference: CaseFile, raw: bytes, max_voxels: int | None = None
    ) -> None:
        assert self._decoder is not None
        self._asked.add(case_id)
        shape = declared_shape(raw, reference.extension)
        if shape is None or case_id not in self._decoder.cases:
            return
        if max_voxels is not None and math.prod(shape) > max_voxels:
            self._asked.discard(case_id)  # asked for when its turn comes
            return
        self._decoder.request(case_id, expected_shape=shape)

    def decode(self, case_id: str, expected_shape: tuple[int, ...]) -> Mask:
        if self._decoder is not None:
            return self._decoder.mask(case_id, expected_shape=expected_shape)
        assert self._files is not None
        return _decode(self._files.files[case_id], "predictions", self._limits, expected_shape)

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
        if self._files is not None:
            self._files.close()

    def __enter__(self) -> _PredictionMasks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _CaseResult:
    case_id: str
    per_label: dict[int, dict[str, float]]
    ref_labels: set[int]
    pred_labels: set[int]
    diagonal: float
    pred_display: str


def _load_case(
    case_id: str, ref_file: CaseFile, preds: _PredictionMasks | None, options: ScoreOptions
) -> tuple[Mask, Mask | None]:
    """Read and decode one case's reference and prediction (each file read once); a decoding
    child is asked for the prediction before the reference is decoded here."""
    if preds is not None:
        raw, digest = preds.reference_bytes(case_id, ref_file)
        preds.prefetch(case_id, ref_file, raw)
    else:
        raw = ref_file.read()
        digest = digest_of(raw)
    ref = _decode_raw(ref_file, raw, "reference", options.limits, digest=digest)
    del raw
    if preds is None:
        return ref, None
    return ref, preds.decode(case_id, ref.grid.shape)


def _score_case(
    case_id: str,
    ref_file: CaseFile,
    preds: _PredictionMasks | None,
    options: ScoreOptions,
    metric_names: Collection[str],
    kd_workers: int = -1,
) -> _CaseResult:
    ref, pred = _load_case(case_id, ref_file, preds, options)
    return _score_loaded(case_id, ref, pred, preds, options, metric_names, kd_workers)


def _score_loaded(
    case_id: str,
    ref: Mask,
    pred: Mask | None,
    preds: _PredictionMasks | None,
    options: ScoreOptions,
    metric_names: Collection[str],
    kd_workers: int = -1,
) -> _CaseResult:
    spacing = _spacing_of(ref.grid)
    diagonal = float(
        math.sqrt(sum((n * s) ** 2 for n, s in zip(ref.grid.shape, spacing, strict=True)))
    )
    if preds is None or pred is None:
        present = {lab for lab in range(1, ref.max + 1) if np.any(ref.data == lab)}
        return _CaseResult(case_id, {}, present, set(), diagonal, "")
    display = preds.names[case_id]
    _check_grid(ref.grid, pred.grid, display, case_id)
    declared = options.labels
    if declared is not None and pred.max > max(declared, default=0):
        raise InvalidSubmission(
            f"label {pred.max} is not a label of this challenge "
            f"(labels: 0, {', '.join(map(str, declared))})",
            file=display,
            case=case_id,
        )
    top = max(ref.max, pred.max)
    labels = _labels_to_count(ref, pred, top, display, case_id)
    per_label, counts = case_metrics_and_counts(
        ref.data,
        pred.data,
        spacing,
        labels=labels,
        nsd_tolerance=options.nsd_tolerance,
        metrics=metric_names,
        max_label=top,
        workers=kd_workers,
        summaries=(ref.summary, pred.summary),
    )
    ref_labels = {lab for lab, c in counts.items() if c.n_ref > 0}
    pred_labels = {lab for lab, c in counts.items() if c.n_pred > 0}
    return _CaseResult(case_id, per_label, ref_labels, pred_labels, diagonal, display)


#: above this many candidate labels, count only the labels actually present (one bincount)
_DENSE_LABELS = 32
MAX_LABEL = 65535


def _labels_to_count(ref: Mask, pred: Mask, top: int, display: str, case_id: str) -> list[int]:
    """The labels to score in one case: 1..max, or only those present when the maximum is large
    (so that a stray huge label value cannot make scoring loop over thousands of labels)."""
    if pred.max > MAX_LABEL:
        raise InvalidSubmission(
            f"label {pred.max} is too large (labels above {MAX_LABEL} are not supported)",
            file=display,
            case=case_id,
        )
    if ref.max > MAX_LABEL:
        raise InvalidReference(f"label {ref.max} is too large", case=case_id)
    if top <= _DENSE_LABELS:
        return list(range(1, top + 1))
    present: set[int] = set()
    for mask in (ref, pred):
        counts = np.bincount(np.asarray(mask.data).ravel(order="K").astype(np.intp, copy=False))
        present.update(int(v) for v in np.flatnonzero(counts) if v != 0)
    return sorted(present)


#: cases a lone scoring thread's reader decodes ahead of it (bounds the memory held)
_PREFETCH = 2


def _run_pipelined(
    ids: Sequence[str],
    load: Callable[[str], _T],
    compute: Callable[[str, _T], _R],
    workers: int,
) -> list[_R]:
    """``[compute(i, load(i)) for i in ids]`` with reading and inflating (which release the GIL)
    overlapped with scoring.

    With one worker, a reader thread decodes the next :data:`_PREFETCH` cases while the calling
    thread scores the current one. With more, each of ``workers`` threads loads and scores whole
    cases, so that one thread's inflating overlaps another's scoring (a separate reader thread
    there only adds hand-offs). Results are in ``ids`` order, and so is the error raised: the one
    of the first case (in order) whose loading or scoring fails, as in a sequential loop.
    """
    if len(ids) <= 1:
        return [compute(i, load(i)) for i in ids]
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scanbench-score") as pool:
            return list(pool.map(lambda i: compute(i, load(i)), ids))
    results: list[_R] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scanbench-read") as reader:
        loads: dict[int, Future[_T]] = {
            k: reader.submit(load, ids[k]) for k in range(min(_PREFETCH, len(ids)))
        }
        try:
            for k, cid in enumerate(ids):
                loaded = loads.pop(k).result()
                if k + _PREFETCH < len(ids):
                    loads[k + _PREFETCH] = reader.submit(load, ids[k + _PREFETCH])
                results.append(compute(cid, loaded))
                del loaded
        finally:
            for f in loads.values():
                f.cancel()
    return results


def _score_segmentation(reference: Path, predictions: Path, options: ScoreOptions) -> ScoreReport:
    metric_names = list(options.metrics or SEGMENTATION_METRIC_NAMES)
    for m in metric_names:
        if m not in SEGMENTATION_METRICS:
            raise ValueError(f"unknown segmentation metric {m!r}")
    with (
        reused_voxel_memory(),
        list_case_files(reference, role="reference", limits=options.limits) as refs,
        _PredictionMasks(predictions, options) as preds,
    ):
        if not refs.files:
            raise InvalidReference("no reference masks found", file=refs.display)
        decoding = preds.decoding
        missing = set(_check_ids(refs.files, preds.names, preds.display, options.on_missing))
        scored = _scored_ids(list(refs.files), options.case_ids)
        workers = max(1, options.workers or min(4, os.cpu_count() or 1))
        preds.plan([c for c in scored if c not in missing], refs.files)

        results = _run_pipelined(
            scored,
            lambda cid: _load_case(
                cid, refs.files[cid], None if cid in missing else preds, options
            ),
            lambda cid, loaded: _score_loaded(
                cid,
                loaded[0],
                loaded[1],
                None if cid in missing else preds,
                options,
                metric_names,
                # cases run in parallel already: one thread per nearest-neighbour query
                1 if workers > 1 else -1,
            ),
            workers,
        )

    if options.labels is not None:
        labels = sorted({int(lab) for lab in options.labels if int(lab) != 0})
    else:
        labels = sorted(set().union(*(r.ref_labels for r in results)))
    allowed = set(labels)
    for r in results:
        extra = sorted(r.pred_labels - allowed)
        if extra:
            raise InvalidSubmission(
                f"label {extra[0]} does not occur in the reference "
                f"(labels: 0{''.join(', ' + str(lab) for lab in labels)})",
                file=r.pred_display,
                case=r.case_id,
            )
    if not labels:
        labels = [1]  # every reference is empty: score label 1 so that the conventions apply
    multi = labels != [1]

    def key(metric: str, lab: int) -> str:
        return f"{metric}/{lab}" if multi else metric

    cases: dict[str, dict[str, float | None]] = {}
    filled: dict[str, list[str]] = {}
    for r in results:
        values: dict[str, float | None] = {}
        for m in metric_names:
            info = SEGMENTATION_METRICS[m]
            per_label_vals = []
            for lab in labels:
                if r.case_id in missing:
                    v = info.worst_value if info.worst_value is not None else r.diagonal
                    filled.setdefault(key(m, lab), []).append(r.case_id)
                else:
                    v = r.per_label.get(lab, empty_label_metrics())[m]
                    if math.isnan(v) and not info.nan_is_undefined:
                        v = info.worst_value if info.worst_value is not None else r.diagonal
                        filled.setdefault(key(m, lab), []).append(r.case_id)
                per_label_vals.append(v)
                if multi:
                    values[key(m, lab)] = _finite_or_none(v)
            if multi:
                defined = [v for v in per_label_vals if not math.isnan(v)]
                values[m] = float(np.mean(defined)) if defined else None
            else:
                values[m] = _finite_or_none(per_label_vals[0])
        cases[r.case_id] = values

    agg = aggregate_cases(cases)
    meta = _base_meta("segmentation", options)
    prevalence = {
        str(lab): (sum(lab in r.ref_labels for r in results) / len(results) if results else None)
        for lab in labels
    }
    meta.update(
        {
            "n_cases": len(cases),
            "decoding": decoding,
            "labels": labels,
            "missing_cases": sorted(missing & set(scored)),
            "worst_filled": {k: len(v) for k, v in sorted(filled.items())},
            "worst_filled_cases": {k: sorted(v) for k, v in sorted(filled.items())},
            "n_in_mean": agg.n_in_mean,
            "undefined": {k: v for k, v in agg.undefined.items() if v},
            "prevalence": prevalence,
            "intervals": _mean_intervals(cases, options),
            "metrics": {m: SEGMENTATION_METRICS[m].to_json() for m in metric_names},
        }
    )
    return ScoreReport(dict(agg.means), cases, meta)


def _mean_intervals(
    cases: Mapping[str, Mapping[str, float | None]], options: ScoreOptions
) -> dict[str, dict[str, object]]:
    if options.bootstrap <= 0 or not cases:
        return {}
    keys = list(next(iter(cases.values())).keys())
    columns = {
        k: np.array(
            [math.nan if c.get(k) is None else c[k] for c in cases.values()], dtype=np.float64
        )
        for k in keys
    }
    # one set of resamples for every metric (the same draws each would get alone)
    got = bootstrap_mean_intervals(
        columns, n_resamples=options.bootstrap, seed=options.seed, level=options.confidence_level
    )
    return {k: got[k].to_json() for k in keys}


# ------------------------------------------------------------------------- classification


def _shown(path: Path, options: ScoreOptions) -> str:
    """The predictions' name in messages: the participant's file name, never a server path."""
    return options.predictions_name or path.name or "predictions"


def _read_csv_bytes(
    path: Path, role: str, limits: ZipLimits, shown: str | None = None
) -> tuple[bytes, str]:
    err = InvalidReference if role == "reference" else InvalidSubmission
    shown = shown or path.name or str(path)
    if path.is_symlink():
        raise err("symbolic links are not allowed", file=shown)
    if path.is_dir():
        csvs = sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv")
        if len(csvs) != 1:
            raise err(
                f"expected exactly one .csv file in the folder, found {len(csvs)}", file=shown
            )
        path, shown = csvs[0], f"{shown}/{csvs[0].name}"
    if not path.exists():
        raise err("no such file", file=shown)
    if path.suffix.lower() == ".zip":
        import zipfile

        try:
            with zipfile.ZipFile(path) as zf:
                members = [
                    (n, i)
                    for n, i in iter_members(zf, limits=limits)
                    if n.lower().endswith(".csv") and not n.rsplit("/", 1)[-1].startswith(".")
                ]
                if len(members) != 1:
                    raise err(
                        f"expected exactly one .csv file in the archive, found {len(members)}",
                        file=shown,
                    )
                name, info = members[0]
                return read_member(zf, info, max_bytes=limits.max_member_bytes), f"{shown}:{name}"
        except UnsafeArchiveError as exc:
            raise err(exc.problem, file=f"{shown}:{exc.member}" if exc.member else shown) from exc
        except zipfile.BadZipFile as exc:
            raise err(f"not a readable zip archive ({exc})", file=shown) from exc
    try:
        size = path.stat().st_size
        if size > limits.max_member_bytes:
            raise err(f"file size {size} bytes is over the limit", file=shown)
        return path.read_bytes(), shown
    except OSError as exc:
        raise err(f"cannot be read ({exc.strerror or type(exc).__name__})", file=shown) from exc


def _score_classification(reference: Path, predictions: Path, options: ScoreOptions) -> ScoreReport:
    metric_names = list(options.metrics or BINARY_METRIC_NAMES)
    for m in metric_names:
        if m not in CLASSIFICATION_METRICS:
            raise ValueError(f"unknown classification metric {m!r}")
    from evaluator.readers.tables import (  # pandas
        ClassificationPredictions,
        read_predictions_csv,
        read_reference_csv,
    )

    ref_key = ("reference", _file_key(reference), options.limits)
    if ref_key[1] is not None and (known := recall(_table_cache, ref_key)) is not None:
        ref, ref_display = known
    else:
        ref_raw, ref_display = _read_csv_bytes(reference, "reference", options.limits)
        ref = read_reference_csv(ref_raw, ref_display)
        if ref_key[1] is not None:
            remember(_table_cache, ref_key, (ref, ref_display), _CACHE_SIZE)
    pred_key = (
        "predictions",
        _file_key(predictions),
        options.limits,
        tuple(ref.classes),
        options.isolation,
    )
    decoding = ["in-process"]
    if pred_key[1] is not None and (known := recall(_table_cache, pred_key)) is not None:
        pred, pred_display, decoding = known
    elif options.isolation is not None:
        pred_display, ids, probs, hard, kind, decoding = decode_table_isolated(
            predictions,
            _shown(predictions, options),
            options.isolation,
            classes=ref.classes,
        )
        if probs.shape[1] != len(ref.classes):
            raise InvalidSubmission("the decoder sent an invalid table", file=pred_display)
        pred = ClassificationPredictions(ids, probs, hard, kind)
        if pred_key[1] is not None:
            remember(_table_cache, pred_key, (pred, pred_display, decoding), _CACHE_SIZE)
    else:
        pred_raw, pred_display = _read_csv_bytes(
            predictions, "predictions", options.limits, _shown(predictions, options)
        )
        pred = read_predictions_csv(pred_raw, pred_display, classes=ref.classes)
        if pred_key[1] is not None:
            remember(_table_cache, pred_key, (pred, pred_display, decoding), _CACHE_SIZE)

    # The same checks and order as _check_ids and _scored_ids, on arrays: what depends only on
    # the reference and the part's ids is worked out once per phase, not per submission.
    pred_row_of_ref, unknown = pred.rows_in(ref)
    n_missing = int(np.count_nonzero(pred_row_of_ref < 0))
    # every missing id is listed only when that is an error
    missing_all = (
        sorted(np.asarray(ref.case_ids, dtype=object)[pred_row_of_ref < 0].tolist())
        if n_missing and options.on_missing == "error"
        else []
    )
    _refuse_ids(unknown, missing_all, pred_display, options.on_missing)
    ref_pos, scored, absent_ids = ref.rows_of(options.case_ids)
    _refuse_absent(absent_ids)
    k = len(ref.classes)
    n = len(scored)
    pred_pos = pred_row_of_ref[ref_pos]
    missing_here = [scored[i] for i in np.flatnonzero(pred_pos < 0).tolist()]
    y = np.asarray(ref.labels, dtype=np.int64)[ref_pos]
    absent = pred_pos < 0
    if len(pred.case_ids):
        probs = np.asarray(pred.probs, dtype=np.float64)[np.maximum(pred_pos, 0)]
    else:
        probs = np.zeros((n, k))
    if absent.any():
        # worst prediction for a missing case: all probability on a wrong class
        rows = np.flatnonzero(absent)
        cls_pos = np.searchsorted(np.asarray(ref.classes), y[rows])
        probs[rows] = 0.0
        probs[rows, (cls_pos + 1) % k] = 1.0

    binary = ref.binary
    level = options.confidence_level
    intervals: dict[str, dict[str, object]] = {}
    extra_meta: dict[str, Any] = {}
    if binary:
        s = probs[:, 1]
        values, thr = binary_metrics(
            y,
            s,
            threshold=options.threshold,
            sens_at_spec_target=options.sens_at_spec_target,
            hard_labels=pred.hard_labels,
            metrics=metric_names,
        )
        extra_meta["sens_at_spec_threshold"] = thr
        flagged = s >= options.threshold
        correct = flagged == (y == 1)
        per_case_brier = (s - y) ** 2
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        tp = int((flagged & (y == 1)).sum())
        tn = int((~flagged & (y == 0)).sum())
        if "sensitivity" in metric_names:
            intervals["sensitivity"] = wilson_interval(tp, n_pos, level=level).to_json()
        if "specificity" in metric_names:
            intervals["specificity"] = wilson_interval(tn, n_neg, level=level).to_json()
        if "auc_roc" in metric_names and not pred.hard_labels:
            intervals["auc_roc"] = delong_interval(y, s, level=level)[2].to_json()
    else:
        onehot = (y[:, None] == np.asarray(ref.classes)[None, :]).astype(np.float64)
        values, thrs = multiclass_metrics(
            y,
            probs,
            ref.classes,
            threshold=options.threshold,
            sens_at_spec_target=options.sens_at_spec_target,
            hard_labels=pred.hard_labels,
            metrics=metric_names,
        )
        extra_meta["sens_at_spec_threshold"] = {str(c): t for c, t in thrs.items()}
        correct = np.argmax(probs, axis=1) == np.argmax(onehot, axis=1)
        per_case_brier = np.mean((probs - onehot) ** 2, axis=1)
        for j, cls in enumerate(ref.classes):
            yc = (y == cls).astype(np.int64)
            flagged = probs[:, j] >= options.threshold
            if "sensitivity" in metric_names:
                intervals[f"sensitivity/{cls}"] = wilson_interval(
                    int((flagged & (yc == 1)).sum()), int(yc.sum()), level=level
                ).to_json()
            if "specificity" in metric_names:
                intervals[f"specificity/{cls}"] = wilson_interval(
                    int((~flagged & (yc == 0)).sum()), int((yc == 0).sum()), level=level
                ).to_json()
            if "auc_roc" in metric_names and not pred.hard_labels:
                intervals[f"auc_roc/{cls}"] = delong_interval(yc, probs[:, j], level=level)[
                    2
                ].to_json()
    intervals.update(
        _classification_bootstrap(
            y,
            probs,
            ref.classes,
            binary,
            pred.hard_labels,
            options,
            metric_names,
            skip=set(intervals),
        )
    )
    # One column per value, in case order (evaluator.case_table): the probabilities scored
    # (worst values for missing cases included) are kept so that set-level metrics (AUC,
    # sensitivity, ...) can be recomputed on resamples for rank intervals.
    columns: dict[str, Any] = {"correct": correct.astype(np.float64)}
    if not pred.hard_labels:
        columns["brier"] = per_case_brier
    if binary:
        columns["p/1"] = probs[:, 1]
    else:
        for j, cls in enumerate(ref.classes):
            columns[f"p/{cls}"] = probs[:, j]
    cases = CaseTable(scored, columns)
    aggregates = {m: _finite_or_none(v) for m, v in values.items()}
    undefined_reason = {
        m: "hard-label predictions carry no scores"
        for m in THRESHOLD_FREE_METRICS
        if pred.hard_labels and m in metric_names
    }
    for m, v in aggregates.items():
        if v is None and m not in undefined_reason:
            undefined_reason[m] = "undefined for these cases (e.g. only one class present)"
    meta = _base_meta("classification", options)
    meta.update(
        {
            "n_cases": len(scored),
            "classes": ref.classes,
            "prediction_kind": pred.kind,
            "decoding": decoding,
            "prevalence": {
                str(c): (float(np.mean(y == c)) if len(y) else None) for c in ref.classes
            },
            "missing_cases": missing_here,  # in id order already
            "worst_filled": {"*": len(missing_here)} if n_missing else {},
            "n_in_mean": {"*": len(scored)},
            "undefined": undefined_reason,
            "intervals": intervals,
            "metrics": {m: metric_info("classification", m).to_json() for m in metric_names},
            **extra_meta,
        }
    )
    return ScoreReport(aggregates, cases, meta)


def _classification_bootstrap(
    y: np.ndarray[Any, np.dtype[np.int64]],
    probs: np.ndarray[Any, np.dtype[np.float64]],
    classes: list[int],
    binary: bool,
    hard: bool,
    options: ScoreOptions,
    metric_names: Collection[str],
    skip: Collection[str],
) -> dict[str, dict[str, object]]:
    """Percentile bootstrap over cases for every aggregate without a closed-form interval."""
    if options.bootstrap <= 0 or len(y) == 0:
        return {}
    rng = np.random.default_rng(options.seed)
    samples: dict[str, list[float]] = {}
    for _ in range(options.bootstrap):
        idx = rng.integers(0, len(y), size=len(y))
        if binary:
            vals, _t = binary_metrics(
                y[idx],
                probs[idx, 1],
                threshold=options.threshold,
                sens_at_spec_target=options.sens_at_spec_target,
                hard_labels=hard,
                metrics=metric_names,
            )
        else:
            vals, _ts = multiclass_metrics(
                y[idx],
                probs[idx],
                classes,
                threshold=options.threshold,
                sens_at_spec_target=options.sens_at_spec_target,
                hard_labels=hard,
                metrics=metric_names,
            )
        for m, v in vals.items():
            if m not in skip:
                samples.setdefault(m, []).append(v)
    alpha = (1.0 - options.confidence_level) / 2.0
    out: dict[str, dict[str, object]] = {}
    for m, vs in samples.items():
        arr = np.asarray(vs)
        arr = arr[~np.isnan(arr)]
        if arr.size == 0:
            out[m] = Interval(None, None, "bootstrap", options.confidence_level).to_json()
            continue
        lo, hi = np.quantile(arr, [alpha, 1 - alpha])
        out[m] = Interval(float(lo), float(hi), "bootstrap", options.confidence_level).to_json()
    return out
