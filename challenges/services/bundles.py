"""Import a challenge bundle: a folder or zip holding ``challenge.yaml`` and data folders.

The format is documented in docs/bundles.md. The whole import is validated before anything is
written (:func:`bundle_checked`: the manifest, then every case's files, then the imaging data:
each reference mask against its image's shape, spacing and orientation, and its labels against
the declared classes), and the database writes are one transaction: a bad bundle changes nothing
and raises :class:`BundleError`, whose ``problems`` list every problem found (up to
:data:`MAX_PROBLEMS`), each one line naming the file or case and both values. Re-importing a
bundle with the same slugs updates the challenge, its phases and cases in place; the
public/private part of a test case, once drawn, never changes, and neither does the published
state unless the bundle says ``published``.

The data is stored content-addressed (a folder named by the bundle's digest), copied before the
transaction opens; once it commits, the copies of earlier imports of the same data set are
removed, so a challenge keeps exactly one copy of its data.

The import also measures the data once (image grid, foreground fractions and what an empty mask
scores, or class counts: ``Dataset.summary``, shown on the task card, so that a page never reads a
mask) and copies the optional starting kit into the public media folder (offered on the Data tab
by challenges.services.data).
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from challenges.models import (
    Case,
    CaseSplit,
    Challenge,
    Dataset,
    Direction,
    LeaderboardPart,
    Phase,
    RankingScheme,
    SubmissionKind,
    TaskType,
)
from challenges.models.phase import EntrySelection, PrivateRelease
from challenges.services.storage import private_storage, public_storage, storage_publish
from evaluator import ranking
from evaluator.dataset_summary import SUMMARY_VERSION, MaskSummaryError, summarize_masks
from evaluator.metrics.registry import CLASSIFICATION_METRICS, SEGMENTATION_METRICS
from evaluator.readers.masks import Grid
from evaluator.readers.safe_zip import UnsafeArchiveError, ZipLimits, safe_extract

MANIFEST = "challenge.yaml"
MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".png", ".npy", ".npz")
#: a starting kit is code and notes, not data: its files together stay under this many bytes
#: (``SCANBENCH_MAX_STARTING_KIT_BYTES`` overrides it) and under this many files
STARTING_KIT_MAX_BYTES = 50 << 20
STARTING_KIT_MAX_FILES = 500

KNOWN_METRICS = {"segmentation": SEGMENTATION_METRICS, "classification": CLASSIFICATION_METRICS}


#: at most this many problems are listed; the rest are counted
MAX_PROBLEMS = 50
#: a mask's voxel spacing may differ from its image's by this share of the larger value
SPACING_RTOL = 1e-3
#: and its axes' direction cosines by this much
DIRECTION_ATOL = 1e-3

Progress = Callable[[str, int, int], None]


class BundleError(ValueError):
    """A bundle that cannot be imported. ``problems`` holds one line per problem, each naming
    the file, field or case; the message is the only problem, or all of them one per line."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


class _Problems:
    """Problems of the data, collected (up to :data:`MAX_PROBLEMS`) rather than raised at the
    first, so that an organizer fixes them all in one round."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.more = 0

    def add(self, text: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(text.replace("\n", " "))
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        lines = list(self.items)
        if self.more:
            lines.append(f"... and {self.more} more problem(s) not listed")
        n = len(self.items) + self.more
        message = lines[0] if n == 1 else f"{n} problems:\n" + "\n".join(lines)
        raise BundleError(message, problems=lines)


@dataclass
class ImportReport:
    challenge: Challenge
    created: bool
    phases: int
    cases: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        verb = "Created" if self.created else "Updated"
        counts = ", ".join(f"{n} {split}" for split, n in sorted(self.cases.items()))
        return f"{verb} challenge '{self.challenge.slug}': {self.phases} phase(s), cases: {counts}"


# --- reading and validating ------------------------------------------------------------------


@contextmanager
def _opened_bundle(path: Path) -> Iterator[Path]:
    """Yield the bundle's root folder; a zip is extracted safely into a temporary folder."""
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise BundleError(f"{path}: no such file or folder")
    if not zipfile.is_zipfile(path):
        raise BundleError(f"{path}: neither a folder nor a zip archive")
    with tempfile.TemporaryDirectory(prefix="scanbench-bundle-") as tmp:
        limits = ZipLimits(
            max_member_bytes=settings.SCANBENCH_MAX_UNZIPPED_BYTES,
            max_total_bytes=settings.SCANBENCH_MAX_UNZIPPED_BYTES,
        )
        try:
            safe_extract(path, Path(tmp), limits=limits)
        except UnsafeArchiveError as exc:
            raise BundleError(f"{path.name}: {exc}") from exc
        root = Path(tmp)
        if not (root / MANIFEST).exists():
            # Accept a zip that wraps everything in one top-level folder.
            children = [p for p in root.iterdir() if p.is_dir()]
            if len(children) == 1 and (children[0] / MANIFEST).exists():
                root = children[0]
        yield root


class _Fields:
    """Typed access to one mapping of challenge.yaml with messages that name the field."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise BundleError(f"{MANIFEST}: {where or 'top level'}: expected a mapping")
        self.data = data
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _fail(self, key: str, problem: str) -> BundleError:
        return BundleError(f"{MANIFEST}: {self._name(key)}: {problem}")

    def get(self, key: str, default: Any = ..., *, kind: type | tuple[type, ...] = str) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise self._fail(key, "missing required field")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self._fail(key, f"expected {names}, got {value!r}")
        return value

    def choice(self, key: str, choices: type[Any], default: Any = ...) -> str:
        value = self.get(key, default)
        allowed = [c.value for c in choices]
        if value not in allowed:
            raise self._fail(key, f"{value!r} is not one of {', '.join(allowed)}")
        return str(value)

    def when(self, key: str, default: Any = ...) -> datetime | None:
        value = self.get(key, default, kind=(str, datetime, type(parse_date("2000-01-01"))))
        if value is None:
            return None
        if isinstance(value, datetime):
            parsed: datetime | None = value
        elif not isinstance(value, str):  # a date
            parsed = datetime(value.year, value.month, value.day)
        else:
            try:
                parsed = parse_datetime(value)
                if parsed is None and (day := parse_date(value)) is not None:
                    parsed = datetime(day.year, day.month, day.day)
            except ValueError:
                parsed = None
        if parsed is None:
            raise self._fail(key, f"{value!r} is not a date (use ISO 8601, e.g. 2026-01-31)")
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        return parsed

    def unknown_keys(self, allowed: set[str]) -> None:
        extra = sorted(set(self.data) - allowed)
        if extra:
            raise BundleError(
                f"{MANIFEST}: {self.where or 'top level'}: unknown field(s) {', '.join(extra)}"
            )


@dataclass
class _CaseSpec:
    case_id: str
    split: str
    label: str = ""
    part: str = ""  # an explicit leaderboard part (test cases), else drawn
    input_src: Path | None = None
    label_src: Path | None = None


def _slug(fields: _Fields, key: str, default: Any = ...) -> str:
    from django.core.validators import validate_slug

    value = fields.get(key, default)
    try:
        validate_slug(value)
    except Exception as exc:
        raise fields._fail(key, f"{value!r} is not a slug (letters, digits, - and _)") from exc
    if len(value) > 64:
        raise fields._fail(key, "longer than 64 characters")
    return str(value)


def _files_by_case(
    folder: Path, what: str, suffixes: tuple[str, ...] | None, problems: _Problems
) -> dict[str, Path]:
    if not folder.is_dir():
        raise BundleError(f"{folder.name}/: {what} folder named in {MANIFEST} does not exist")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_symlink():
            problems.add(f"{folder.name}/{p.name}: links are not allowed in a bundle")
            continue
        if not p.is_file() or p.name.startswith("."):
            continue
        suffix = next((s for s in (suffixes or ()) if p.name.endswith(s)), None)
        if suffixes is not None and suffix is None:
            problems.add(
                f"{folder.name}/{p.name}: unsupported file type for {what} "
                f"(expected {', '.join(suffixes)})"
            )
            continue
        case_id = p.name[: -len(suffix)] if suffix else p.name.split(".", 1)[0]
        if case_id in found:
            problems.add(
                f"{folder.name}/{p.name}: second {what} file for case '{case_id}' "
                f"(the first is {found[case_id].name})"
            )
            continue
        found[case_id] = p
    return found


def _class_names(classes: list[str]) -> str:
    return ", ".join(str(c) for c in classes)


def _read_cases(
    root: Path, ds: _Fields, task: str, classes: list[str], problems: _Problems
) -> list[_CaseSpec]:
    n_classes = max(len(classes), 2)
    cases_name = ds.get("cases")
    cases_path = root / cases_name
    if not cases_path.is_file():
        raise BundleError(f"{cases_name}: file named in {MANIFEST} dataset.cases does not exist")
    try:
        with cases_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = set(reader.fieldnames or [])
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BundleError(f"{cases_name}: not a readable UTF-8 CSV file ({exc})") from exc
    needed = {"case_id", "split"} | ({"label"} if task == TaskType.CLASSIFICATION else set())
    if missing := needed - columns:
        raise BundleError(f"{cases_name}: missing column(s) {', '.join(sorted(missing))}")
    specs: list[_CaseSpec] = []
    seen: dict[str, int] = {}
    known = len(problems.items) + problems.more
    for line, row in enumerate(rows, start=2):
        case_id = (row["case_id"] or "").strip()
        if not case_id or "/" in case_id or case_id.startswith("."):
            problems.add(f"{cases_name}: line {line}: invalid case_id {case_id!r}")
            continue
        if case_id in seen:
            problems.add(
                f"{cases_name}: line {line}: duplicate case_id '{case_id}' "
                f"(first listed on line {seen[case_id]})"
            )
            continue
        seen[case_id] = line
        split = (row["split"] or "").strip()
        if split not in CaseSplit.values:
            problems.add(
                f"{cases_name}: line {line}: case '{case_id}': split {split!r} is not train or test"
            )
            continue
        label = ""
        if task == TaskType.CLASSIFICATION:
            label = (row["label"] or "").strip()
            if not label.isdigit() or int(label) >= n_classes:
                problems.add(
                    f"{cases_name}: line {line}: case '{case_id}': label {label!r} is not a class "
                    f"index 0..{n_classes - 1} ({_class_names(classes)})"
                )
                continue
        part = (row.get("leaderboard_part") or "").strip()
        if part and (split != CaseSplit.TEST or part not in LeaderboardPart.values):
            problems.add(
                f"{cases_name}: line {line}: case '{case_id}': leaderboard_part {part!r} must be "
                "public or private, and only on a test case (or empty: drawn)"
            )
            continue
        specs.append(_CaseSpec(case_id=case_id, split=split, label=label, part=part))
    row_problems = len(problems.items) + problems.more > known
    if not row_problems and not any(s.split == CaseSplit.TEST for s in specs):
        problems.add(f"{cases_name}: no test cases: nothing could be scored")
    return specs


def _attach_files(
    root: Path, ds: _Fields, task: str, specs: list[_CaseSpec], problems: _Problems
) -> Path | None:
    """Attach input and label files to the cases; return the input table for tabular data.
    Every case needs its input (row or file) and, for segmentation, its label mask."""
    by_id = {s.case_id: s for s in specs}
    inputs_name = ds.get("inputs", None)
    table: Path | None = None
    if inputs_name:
        src = root / inputs_name
        if src.is_file() and src.suffix == ".csv":
            table = src
            try:
                with src.open(newline="", encoding="utf-8") as fh:
                    reader = csv.DictReader(fh)
                    if "case_id" not in (reader.fieldnames or []):
                        raise BundleError(f"{inputs_name}: input table has no case_id column")
                    ids = {(row["case_id"] or "").strip() for row in reader}
            except (UnicodeDecodeError, csv.Error) as exc:
                raise BundleError(f"{inputs_name}: not a readable UTF-8 CSV file ({exc})") from exc
            for case_id in by_id:
                if case_id not in ids:
                    problems.add(f"{inputs_name}: case '{case_id}': no input row")
        else:
            files = _files_by_case(src, "input", None, problems)
            for case_id, spec in by_id.items():
                if case_id not in files:
                    problems.add(f"case '{case_id}': no image in {inputs_name}/")
                else:
                    spec.input_src = files[case_id]
            for extra in sorted(set(files) - set(by_id)):
                problems.add(f"{inputs_name}/{files[extra].name}: case not in cases file")
    if task == TaskType.SEGMENTATION:
        labels_name = ds.get("labels")
        files = _files_by_case(root / labels_name, "label mask", MASK_SUFFIXES, problems)
        for case_id, spec in by_id.items():
            if case_id not in files:
                problems.add(f"case '{case_id}': no label mask in {labels_name}/")
            else:
                spec.label_src = files[case_id]
    return table


# --- the imaging data: each mask against its image and the declared labels -------------------


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _spacing_text(spacing: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in spacing) + ") mm"


def _directions(affine: Any, n: int) -> Any:
    """The unit direction of each of the first ``n`` axes (columns of the affine)."""
    import numpy as np

    block = np.asarray(affine, dtype=np.float64)[:n, :n]
    norms = np.linalg.norm(block, axis=0)
    norms[norms == 0] = 1.0
    return block / norms


def _compare_grids(case_id: str, mask: Grid, image: Grid) -> list[str]:
    """One line per difference between a mask's grid and its image's (spatial axes only: an
    image may carry channels after them)."""
    import numpy as np

    from evaluator.readers.headers import axis_codes

    found: list[str] = []
    n = len(mask.shape)
    image_shape = image.shape[:n] if len(image.shape) > n else image.shape
    if tuple(mask.shape) != tuple(image_shape):
        found.append(
            f"case {case_id}: mask shape {_shape_text(mask.shape)} differs from image shape "
            f"{_shape_text(image.shape)}"
        )
        return found  # spacing and orientation of other grids say nothing more
    if mask.spacing is not None and image.spacing is not None:
        ms, im = mask.spacing[:n], image.spacing[:n]
        if len(ms) == len(im) and any(
            abs(a - b) > SPACING_RTOL * max(abs(a), abs(b)) for a, b in zip(ms, im, strict=True)
        ):
            found.append(
                f"case {case_id}: mask spacing {_spacing_text(ms)} differs from image spacing "
                f"{_spacing_text(im)}"
            )
    if mask.affine is not None and image.affine is not None and mask.space == image.space:
        k = min(n, 3, mask.affine.shape[0] - 1, image.affine.shape[0] - 1)
        md, idr = _directions(mask.affine, k), _directions(image.affine, k)
        if not np.allclose(md, idr, atol=DIRECTION_ATOL, rtol=0):
            mc, ic = axis_codes(mask.affine, mask.space), axis_codes(image.affine, image.space)
            if mc != ic and mask.space == "nifti":
                found.append(
                    f"case {case_id}: mask orientation {mc} differs from image orientation {ic}"
                )
            else:
                found.append(
                    f"case {case_id}: mask axis directions {np.round(md, 3).tolist()} differ "
                    f"from image axis directions {np.round(idr, 3).tolist()}"
                )
    return found


def _check_imaging(
    specs: list[_CaseSpec],
    classes: list[str],
    ds: _Fields,
    problems: _Problems,
    progress: Progress | None,
) -> None:
    """Read every reference mask once (its labels and grid) and the header of its image, and
    add a line per problem. Masks are read one at a time."""
    import numpy as np

    from evaluator.readers.headers import HEADER_EXTENSIONS, read_grid
    from evaluator.readers.masks import MaskDecodeError, decode_mask
    from evaluator.readers.sources import split_extension

    max_bytes = settings.SCANBENCH_MAX_UNZIPPED_BYTES
    inputs_name = str(ds.get("inputs", "inputs") or "inputs").rstrip("/")
    top = len(classes)
    with_mask = [s for s in specs if s.label_src is not None]
    for done, spec in enumerate(with_mask):
        if progress is not None:
            progress("checking", done, len(with_mask))
        assert spec.label_src is not None
        ext = split_extension(spec.label_src.name, MASK_SUFFIXES)
        try:
            mask = decode_mask(
                spec.label_src.read_bytes(), ext[1] if ext else "", max_voxel_bytes=max_bytes
            )
        except (MaskDecodeError, OSError) as exc:
            problems.add(f"{spec.label_src.name}: case '{spec.case_id}': {exc} (label mask)")
            continue
        if top and mask.max > top:
            extra = [int(v) for v in np.unique(np.asarray(mask.data)) if int(v) > top]
            names = ", ".join(str(v) for v in extra[:10]) + (", ..." if len(extra) > 10 else "")
            problems.add(
                f"case {spec.case_id}: mask holds label{'s' if len(extra) > 1 else ''} {names}, "
                f"the bundle declares labels 0..{top} (background, {_class_names(classes)})"
            )
        grid = mask.grid
        del mask
        if spec.input_src is None:
            continue
        image_ext = split_extension(spec.input_src.name, HEADER_EXTENSIONS)
        if image_ext is None:
            continue  # a format whose header is not read: not compared
        try:
            image = read_grid(spec.input_src, image_ext[1], max_bytes=max_bytes)
        except MaskDecodeError as exc:
            problems.add(f"{inputs_name}/{spec.input_src.name}: case '{spec.case_id}': {exc}")
            continue
        for line in _compare_grids(spec.case_id, grid, image):
            problems.add(line)


def draw_leaderboard_parts(test_ids: list[str], fraction: float, seed: int) -> dict[str, str]:
    """The one-time seeded draw of the public part of the test set (the evaluator's
    ``public_private_split``), keeping at least one case in each part when there are two."""
    n = len(set(test_ids))
    n_public = min(max(round(fraction * n), 1), max(n - 1, 1))
    public, _ = ranking.public_private_split(test_ids, public_fraction=n_public / n, seed=seed)
    chosen = set(public)
    return {i: LeaderboardPart.PUBLIC if i in chosen else LeaderboardPart.PRIVATE for i in test_ids}


def _gpu_queue(p: _Fields) -> str:
    """A phase's ``gpu_queue``: empty (any gpu worker) or ``gpu-<kind>``."""
    from challenges.models.phase import GPU_QUEUE_PATTERN

    value = str(p.get("gpu_queue", "", kind=str))
    if value and not re.match(GPU_QUEUE_PATTERN, value):
        raise p._fail("gpu_queue", f"{value!r} is not gpu or gpu-<kind> (such as gpu-h100)")
    return value


def _phase_values(p: _Fields, task: str) -> dict[str, Any]:
    p.unknown_keys(
        {
            "slug", "title", "description", "submission_kind", "opens", "closes", "daily_limit",
            "total_limit", "metrics", "primary_metric", "direction", "ranking",
            "entry_selection", "ladder", "threshold", "nsd_tolerance_mm", "time_limit_s",
            "memory_limit_mb", "gpus", "gpu_queue", "input_spec", "show_case_results",
            "private_release", "scoring_program", "reference_data", "columns",
        }
    )  # fmt: skip
    known = KNOWN_METRICS[task]
    program = p.get("scoring_program", "")
    metrics = p.get("metrics", kind=list)
    columns: list[dict[str, Any]] = []
    if program:
        # the keys of the program's scores.json: not the registry's metrics
        if not metrics or not all(isinstance(m, str) and 0 < len(m) <= 64 for m in metrics):
            raise p._fail("metrics", "with a scoring_program: the keys of its scores, 1-64 chars")
        columns = _columns(p, metrics)
    else:
        for i, m in enumerate(metrics):
            if m not in known:
                raise BundleError(
                    f"{MANIFEST}: {p.where}.metrics[{i}]: unknown {task} metric {m!r} "
                    f"(known: {', '.join(sorted(known))})"
                )
        if p.data.get("columns") is not None or p.data.get("reference_data") is not None:
            raise p._fail("columns", "columns and reference_data go with a scoring_program")
    primary = p.get("primary_metric", metrics[0] if metrics else ...)
    if primary not in metrics:
        raise p._fail("primary_metric", f"{primary!r} is not among the phase's metrics")
    if program:
        sorting = next((c["sorting"] for c in columns if c["key"] == primary), "desc")
        default_direction = Direction.HIGHER if sorting == "desc" else Direction.LOWER
    else:
        default_direction = Direction.HIGHER if known[primary].higher_is_better else Direction.LOWER
    opens = p.when("opens", None) or timezone.now()
    closes = p.when("closes", None)
    if closes is not None and closes <= opens:
        raise p._fail("closes", "the phase closes before it opens")
    daily = p.get("daily_limit", 5, kind=int)
    total = p.get("total_limit", 100, kind=int)
    if daily < 0 or total < 0 or daily > total:
        raise p._fail("daily_limit", "limits must be non-negative and daily ≤ total")
    threshold = p.get("threshold", 0.5, kind=float)
    if not 0.0 < threshold < 1.0:
        raise p._fail("threshold", "the decision threshold must lie strictly between 0 and 1")
    return {
        "title": p.get("title"),
        "description": p.get("description", ""),
        "submission_kind": p.choice("submission_kind", SubmissionKind, SubmissionKind.PREDICTIONS),
        "opens_at": opens,
        "closes_at": closes,
        "daily_limit": daily,
        "total_limit": total,
        "metrics": metrics,
        "primary_metric": primary,
        "primary_direction": p.choice("direction", Direction, default_direction),
        "ranking_scheme": p.choice("ranking", RankingScheme, RankingScheme.AGGREGATE_THEN_RANK),
        "entry_selection": p.choice("entry_selection", EntrySelection, EntrySelection.BEST),
        "use_ladder": p.get("ladder", False, kind=bool),
        "decision_threshold": threshold,
        "nsd_tolerance_mm": p.get("nsd_tolerance_mm", 2.0, kind=float),
        "time_limit_s": p.get("time_limit_s", 600, kind=int),
        "memory_limit_mb": p.get("memory_limit_mb", 4096, kind=int),
        "gpus": p.get("gpus", 0, kind=int),
        "gpu_queue": _gpu_queue(p),
        "input_spec": p.get("input_spec", {}, kind=dict),
        "show_case_results": p.get("show_case_results", None, kind=bool),
        "private_release": p.choice("private_release", PrivateRelease, PrivateRelease.ON_CLOSE),
        "leaderboard_columns": columns,
        # paths inside the bundle, checked and stored by the plan (not Phase fields)
        PROGRAM_KEY: {"scoring_program": program, "reference_data": p.get("reference_data", "")}
        if program
        else None,
    }


PROGRAM_KEY = "_program"


def _columns(p: _Fields, metrics: list[str]) -> list[dict[str, Any]]:
    """A program-scored phase's board columns: ``columns`` as given (key, title, sorting
    desc|asc, precision, hidden), else one per metric; every metric has one."""
    raw = p.get("columns", None, kind=list)
    if raw is None:
        return [{"key": m, "title": m, "sorting": "desc", "precision": 4, "hidden": False}
                for m in metrics]  # fmt: skip
    out = []
    for i, c in enumerate(raw):
        cf = _Fields(c, f"{p.where}.columns[{i}]")
        cf.unknown_keys({"key", "title", "sorting", "precision", "hidden"})
        key = str(cf.get("key"))
        sorting = cf.get("sorting", "desc")
        if sorting not in ("desc", "asc"):
            raise cf._fail("sorting", "desc (larger is better) or asc (smaller is better)")
        precision = cf.get("precision", 4, kind=int)
        if not 0 <= precision <= 12:
            raise cf._fail("precision", "decimals between 0 and 12")
        hidden = cf.get("hidden", False, kind=bool)
        title = str(cf.get("title", key))
        out.append(
            {"key": key, "title": title, "sorting": sorting, "precision": precision,
             "hidden": hidden}
        )  # fmt: skip
    if missing := [m for m in metrics if m not in {c["key"] for c in out}]:
        raise p._fail("columns", f"no column for metric(s) {', '.join(missing)}")
    return out


def _bundle_folder(root: Path, rel: str, where: str) -> Path:
    """A folder named by the manifest: inside the bundle, and no link anywhere in it."""
    src = root / rel
    if src.is_symlink() or not src.is_dir() or not src.resolve().is_relative_to(root.resolve()):
        raise BundleError(f"{MANIFEST}: {where}: {rel!r} is not a folder inside the bundle")
    for q in src.rglob("*"):
        if q.is_symlink():
            raise BundleError(f"{MANIFEST}: {where}: {q.relative_to(root)} is a link")
    return src


def _plan_programs(
    root: Path, phases: dict[str, dict[str, Any]], problems: _Problems
) -> dict[str, dict[str, Path | None]]:
    """Check the scoring program (its metadata and command) and reference folder of every
    program-scored phase; take the paths out of the phase values."""
    from evaluator.sandbox import ProgramError, program_read

    out: dict[str, dict[str, Path | None]] = {}
    for slug, values in phases.items():
        given = values.pop(PROGRAM_KEY, None)
        if not given:
            continue
        where = f"phase '{slug}'"
        try:
            program = _bundle_folder(root, given["scoring_program"], f"{where}.scoring_program")
            program_read(program)
            reference = (
                _bundle_folder(root, given["reference_data"], f"{where}.reference_data")
                if given["reference_data"]
                else None
            )
        except ProgramError as exc:
            problems.add(f"{MANIFEST}: {where}.scoring_program: {exc}")
            continue
        except BundleError as exc:
            problems.add(str(exc))
            continue
        out[slug] = {"scoring_program": program, "reference_data": reference}
    return out


def _bundle_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            with p.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()


def _starting_kit(root: Path, top: _Fields, ds: _Fields) -> Path | None:
    """The bundle's ``starting_kit`` folder, checked: inside the bundle, no links, no data
    folder of the bundle in it or around it (a kit of ``.`` would publish the test labels),
    and small (:data:`STARTING_KIT_MAX_BYTES`, :data:`STARTING_KIT_MAX_FILES`)."""
    name = top.get("starting_kit", None)
    if name is None:
        return None
    where = f"{MANIFEST}: starting_kit: {name}"
    src = root / name
    base = root.resolve()
    if src.is_symlink() or not src.resolve().is_relative_to(base):
        raise BundleError(f"{where}: not a folder inside the bundle")
    if not src.is_dir():
        raise BundleError(f"{where}: no such folder in the bundle")
    kit = src.resolve()
    if kit == base:
        raise BundleError(f"{where}: the kit cannot be the whole bundle")
    data_paths = [ds.get(key, None) for key in ("cases", "inputs", "labels")]
    for other in [MANIFEST, *(p for p in data_paths if p)]:
        path = (root / other).resolve()
        if path == kit or kit in path.parents or path in kit.parents:
            raise BundleError(f"{where}: overlaps {other}, which is not public")
    cap = int(getattr(settings, "SCANBENCH_MAX_STARTING_KIT_BYTES", STARTING_KIT_MAX_BYTES))
    entries = sorted(src.rglob("*"))
    for p in entries:  # links first: nothing is measured through one
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            raise BundleError(f"{rel}: links are not allowed in a bundle")
        if not p.is_dir() and not p.is_file():
            raise BundleError(f"{rel}: not a regular file")
    total, files = 0, 0
    for p in entries:
        if p.is_dir():
            continue
        files += 1
        total += p.stat().st_size
        if files > STARTING_KIT_MAX_FILES:
            raise BundleError(f"{where}: more than {STARTING_KIT_MAX_FILES} files")
        if total > cap:
            raise BundleError(f"{where}: larger than {cap} bytes (code and notes, not data)")
    if not files:
        raise BundleError(f"{where}: the folder is empty")
    return src


def _declared_labels(classes: list[str]) -> list[int] | None:
    """The segmentation labels the scorer is told (challenges.services.scoring): 1..n."""
    return list(range(1, len(classes) + 1)) if classes else None


def _classification_summary(rows: list[tuple[str, str]], n_classes: int) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for split in CaseSplit.values:
        labels = [label for s, label in rows if s == split]
        if labels:
            counts = {str(k): labels.count(str(k)) for k in range(n_classes)}
            splits[split] = {"cases": len(labels), "classes": counts}
    return {"version": SUMMARY_VERSION, "task": TaskType.CLASSIFICATION, "splits": splits}


def _measure(
    task: str, classes: list[str], cases: list[tuple[str, str, str, Path | None]]
) -> dict[str, Any]:
    """The data set's summary from ``(case_id, split, label, mask path)`` of every case; masks
    are read one at a time. Raises MaskSummaryError naming the file and the case."""
    if task == TaskType.CLASSIFICATION:
        return _classification_summary([(c[1], c[2]) for c in cases], max(len(classes), 2))
    masks = ((case_id, split, path) for case_id, split, _, path in cases if path is not None)
    return summarize_masks(
        masks,
        labels=_declared_labels(classes),
        max_voxel_bytes=settings.SCANBENCH_MAX_UNZIPPED_BYTES,
    )


def _summary_from_specs(
    task: str, classes: list[str], specs: list[_CaseSpec], progress: Progress | None = None
) -> dict[str, Any]:
    if progress is not None:
        progress("measuring", 0, len(specs))
    try:
        return _measure(task, classes, [(s.case_id, s.split, s.label, s.label_src) for s in specs])
    except MaskSummaryError as exc:
        raise BundleError(f"{exc} (label mask)") from exc


def dataset_summary_refresh(*, dataset: Dataset) -> dict[str, Any]:
    """Measure the stored cases of ``dataset`` again and save ``Dataset.summary``: for data
    imported before summaries existed, and for cases made without a bundle (tests). Reads
    every mask once, one at a time (train masks from MEDIA_ROOT, test masks from
    SCANBENCH_PRIVATE_ROOT); never call it while serving a page."""
    media = Path(settings.MEDIA_ROOT)
    private = Path(settings.SCANBENCH_PRIVATE_ROOT)
    rows = Case.objects.filter(dataset=dataset).order_by("split", "case_id")
    cases = [
        (
            case_id,
            split,
            label,
            ((private if split == CaseSplit.TEST else media) / label_file) if label_file else None,
        )
        for case_id, split, label, label_file in rows.values_list(
            "case_id", "split", "label", "label_file"
        )
    ]
    challenge = dataset.challenge
    summary = _measure(challenge.task_type, list(challenge.classes or []), cases)
    dataset.summary = summary
    dataset.save(update_fields=["summary"])
    return summary


# --- the service ------------------------------------------------------------------------------


def _utc(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when else None


@dataclass
class BundlePlan:
    """A validated bundle: everything the import writes, read from the files and checked."""

    slug: str
    challenge_values: dict[str, Any]
    ds_slug: str
    ds_values: dict[str, Any]
    specs: list[_CaseSpec]
    table: Path | None
    phases: dict[str, dict[str, Any]]
    digest: str
    kit: Path | None
    summary: dict[str, Any]
    #: program-scored phases: their scoring program and reference folders in the bundle
    programs: dict[str, dict[str, Path | None]] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """What the import would do, as JSON (the dry run's report; no file path in it)."""
        cases: dict[str, int] = {}
        for s in self.specs:
            cases[s.split] = cases.get(s.split, 0) + 1
        v = self.challenge_values
        return {
            "slug": self.slug,
            "title": v["title"],
            "task": v["task_type"],
            "classes": v["classes"],
            "published": v.get("is_published"),
            "dataset": self.ds_slug,
            "cases": cases,
            "summary": self.summary,
            "starting_kit": self.kit is not None,
            "phases": [
                {
                    "slug": slug,
                    "title": p["title"],
                    "submission_kind": p["submission_kind"],
                    "metrics": p["metrics"],
                    "primary_metric": p["primary_metric"],
                    "opens_at": _utc(p["opens_at"]),
                    "closes_at": _utc(p["closes_at"]),
                    "daily_limit": p["daily_limit"],
                    "total_limit": p["total_limit"],
                    "scoring_program": slug in self.programs,
                }
                for slug, p in self.phases.items()
            ],
            "digest": self.digest,
            "problems": [],
        }


def _plan(root: Path, progress: Progress | None) -> BundlePlan:
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"{MANIFEST}: not found at the top of the bundle")
    try:
        data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BundleError(f"{MANIFEST}: not valid YAML ({exc})".replace("\n", " ")) from exc
    top = _Fields(data, "")
    top.unknown_keys(
        {
            "slug", "title", "summary", "task", "classes", "input", "output", "licence",
            "attribution", "dataset", "phases", "published", "terms", "starting_kit",
            "requires_approval",
        }
    )  # fmt: skip
    task = top.choice("task", TaskType)
    classes = [str(c) for c in top.get("classes", [], kind=list)]
    if task == TaskType.CLASSIFICATION and len(classes) < 2:
        raise top._fail("classes", "a classification task needs at least two class names")
    challenge_values: dict[str, Any] = {
        "title": top.get("title"),
        "summary": top.get("summary"),
        "task_type": task,
        "classes": classes,
        "input_description": top.get("input", ""),
        "output_description": top.get("output", ""),
        "data_licence": top.get("licence"),
        "data_attribution": top.get("attribution"),
        "terms": top.get("terms", "").strip(),
    }
    # New challenges start unpublished; a re-import keeps the state unless the bundle says.
    published = top.get("published", None, kind=bool)
    if published is not None:
        challenge_values["is_published"] = published
    approval = top.get("requires_approval", None, kind=bool)
    if approval is not None:
        challenge_values["requires_approval"] = approval
    slug = _slug(top, "slug")
    ds = _Fields(top.get("dataset", kind=dict), "dataset")
    ds.unknown_keys({"slug", "description", "cases", "inputs", "labels", "public_fraction", "seed"})
    ds_slug = _slug(ds, "slug", "main")
    fraction = ds.get("public_fraction", 0.3, kind=float)
    if not 0.0 < fraction < 1.0:
        raise ds._fail("public_fraction", "must lie strictly between 0 and 1")
    seed = ds.get("seed", 0, kind=int)
    raw_phases = top.get("phases", kind=list)
    if not raw_phases:
        raise top._fail("phases", "at least one phase is needed")

    problems = _Problems()
    phases: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(raw_phases):
        try:
            pf = _Fields(raw, f"phases[{i}]")
            phase_slug = _slug(pf, "slug")
            if phase_slug in phases:
                raise pf._fail("slug", f"duplicate phase slug {phase_slug!r}")
            phases[phase_slug] = _phase_values(pf, task)
        except BundleError as exc:
            problems.add(str(exc))
    kit: Path | None = None
    try:
        kit = _starting_kit(root, top, ds)
    except BundleError as exc:
        problems.add(str(exc))
    programs = _plan_programs(root, phases, problems)
    specs = _read_cases(root, ds, task, classes, problems)
    table = _attach_files(root, ds, task, specs, problems)
    if task == TaskType.SEGMENTATION:
        _check_imaging(specs, classes, ds, problems, progress)
    problems.raise_if_any()

    summary = _summary_from_specs(task, classes, specs, progress)
    return BundlePlan(
        slug=slug,
        challenge_values=challenge_values,
        ds_slug=ds_slug,
        ds_values={
            "description": ds.get("description", ""),
            "public_fraction": fraction,
            "split_seed": seed,
        },
        specs=specs,
        table=table,
        phases=phases,
        digest=_bundle_digest(root)[:16],
        kit=kit,
        summary=summary,
        programs=programs,
    )


@contextmanager
def bundle_checked(path: Path, *, progress: Progress | None = None) -> Iterator[BundlePlan]:
    """Open and validate the bundle at ``path`` (folder or zip), writing nothing but a
    temporary folder for a zip; yield its :class:`BundlePlan`, valid inside the block (its
    files live there). Raises :class:`BundleError` with every problem found. The dry run of an
    upload and the import both call this, so they check exactly the same things."""
    with _opened_bundle(Path(path)) as root:
        yield _plan(root, progress)


def challenge_import_bundle(
    *,
    path: Path,
    organizer: AbstractBaseUser | None = None,
    progress: Progress | None = None,
    on_written: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Validate and import the bundle at ``path`` (folder or zip). Raises BundleError.

    ``progress(stage, done, total)`` is called as the work advances (outside the transaction,
    except the last stage); ``on_written(report)`` runs inside the import's transaction, so what
    it writes commits or rolls back with the import."""
    with bundle_checked(Path(path), progress=progress) as plan:
        return _import_plan(plan, organizer=organizer, progress=progress, on_written=on_written)


def _data_folders(slug: str, ds_slug: str) -> list[Path]:
    """The folders holding every stored copy of a data set (public and private)."""
    rel = Path("challenges") / slug / ds_slug
    return [Path(settings.MEDIA_ROOT) / rel, Path(settings.SCANBENCH_PRIVATE_ROOT) / rel]


def _remove_other_copies(slug: str, ds_slug: str, digest: str) -> None:
    """Remove the copies of earlier imports of the data set (after the commit that stopped
    pointing at them)."""
    for parent in _data_folders(slug, ds_slug):
        if not parent.is_dir():
            continue
        for child in parent.iterdir():
            if child.name != digest and child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)


def _store_tree(src: Path, *, root: Path, rel: str) -> str:
    """Copy a validated folder (no links, size-capped: :func:`_starting_kit`) under ``root``."""
    for p in sorted(src.rglob("*")):
        if p.is_file():
            _store(p, root=root, rel=f"{rel}/{p.relative_to(src).as_posix()}")
    (root / rel).mkdir(parents=True, exist_ok=True)
    return rel


def _store(src: Path, *, root: Path, rel: str) -> str:
    """Copy ``src`` to ``root/rel``. The folder is named by the bundle's digest, so a file
    already there of the same size holds the same bytes and is left alone (rows of the current
    import may be reading it)."""
    dest = root / rel
    if dest.is_file() and dest.stat().st_size == src.stat().st_size:
        return rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)
    return rel


@dataclass
class _Stored:
    table: str = ""
    kit: str = ""
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # case -> (input, label)
    programs: dict[str, dict[str, str]] = field(default_factory=dict)  # phase -> Phase fields


def _store_test_reference(plan: BundlePlan, root: Path, rel: str) -> str:
    """The default reference of a scoring program: the test split's labels, as
    ``labels.csv`` (``case_id,label``; classification) or ``<case_id><suffix>`` masks
    (segmentation), in a private folder."""
    folder = root / rel
    folder.mkdir(parents=True, exist_ok=True)
    test = [s for s in plan.specs if s.split == CaseSplit.TEST]
    if plan.challenge_values["task_type"] == TaskType.CLASSIFICATION:
        rows = "".join(f"{s.case_id},{s.label}\n" for s in test)
        (folder / "labels.csv").write_text("case_id,label\n" + rows, encoding="utf-8")
    else:
        for s in test:
            if s.label_src is not None:
                suffix = next(
                    (x for x in MASK_SUFFIXES if s.label_src.name.lower().endswith(x)),
                    s.label_src.suffix,
                )
                _store(s.label_src, root=root, rel=f"{rel}/{s.case_id}{suffix}")
    return rel


def _copy_files(plan: BundlePlan, progress: Progress | None) -> _Stored:
    base = f"challenges/{plan.slug}/{plan.ds_slug}/{plan.digest}"
    media = Path(settings.MEDIA_ROOT)
    private = Path(settings.SCANBENCH_PRIVATE_ROOT)
    stored = _Stored()
    if plan.table is not None:
        stored.table = _store(plan.table, root=media, rel=f"{base}/inputs/{plan.table.name}")
    if plan.kit is not None:
        stored.kit = _store_tree(plan.kit, root=media, rel=f"{base}/kit")
    for phase_slug, given in plan.programs.items():
        rel = f"{base}/programs/{phase_slug}"
        program = given["scoring_program"]
        assert program is not None
        fields = {"scoring_program": _store_tree(program, root=private, rel=f"{rel}/program")}
        reference = given["reference_data"]
        if reference is not None:
            fields["reference_data"] = _store_tree(reference, root=private, rel=f"{rel}/reference")
        else:
            fields["reference_data"] = _store_test_reference(plan, private, f"{rel}/reference")
        stored.programs[phase_slug] = fields
    total = len(plan.specs)
    for done, s in enumerate(plan.specs):
        if progress is not None and done % 20 == 0:
            progress("copying", done, total)
        input_rel = (
            _store(s.input_src, root=media, rel=f"{base}/{s.split}/{s.input_src.name}")
            if s.input_src
            else ""
        )
        label_rel = ""
        if s.label_src is not None:
            # Train masks are public (for training); test masks are hidden.
            if s.split == CaseSplit.TRAIN:
                label_rel = _store(
                    s.label_src, root=media, rel=f"{base}/train-labels/{s.label_src.name}"
                )
            else:
                label_rel = _store(
                    s.label_src, root=private, rel=f"{base}/labels/{s.label_src.name}"
                )
        stored.files[s.case_id] = (input_rel, label_rel)
    if progress is not None:
        progress("copying", total, total)
    return stored


def _publish(plan: BundlePlan) -> None:
    """On S3, copy the data set's stored files to the buckets (same keys as the paths under
    MEDIA_ROOT and SCANBENCH_PRIVATE_ROOT); on the file system they are already in place."""
    rel = f"challenges/{plan.slug}/{plan.ds_slug}/{plan.digest}"
    storage_publish(storage=public_storage(), root=Path(settings.MEDIA_ROOT), rel=rel)
    storage_publish(storage=private_storage(), root=Path(settings.SCANBENCH_PRIVATE_ROOT), rel=rel)


def _import_plan(
    plan: BundlePlan,
    *,
    organizer: AbstractBaseUser | None,
    progress: Progress | None,
    on_written: Callable[[ImportReport], None] | None,
) -> ImportReport:
    """Copy the files (outside the transaction: a long copy holds no lock), then write the rows
    in one transaction; after its commit, remove the earlier copies. If the transaction fails,
    a copy folder this import made is removed again."""
    folders = [p / plan.digest for p in _data_folders(plan.slug, plan.ds_slug)]
    existed = [p.exists() for p in folders]
    try:
        stored = _copy_files(plan, progress)
        _publish(plan)
        if progress is not None:
            progress("writing", 0, 1)
        with transaction.atomic():
            report = _write(plan=plan, stored=stored, organizer=organizer)
            if on_written is not None:
                on_written(report)
            slug, ds_slug, digest = plan.slug, plan.ds_slug, plan.digest
            transaction.on_commit(lambda: _remove_other_copies(slug, ds_slug, digest))
    except BaseException:
        for folder, was_there in zip(folders, existed, strict=True):
            if not was_there:
                shutil.rmtree(folder, ignore_errors=True)
        raise
    return report


def _write(
    *, plan: BundlePlan, stored: _Stored, organizer: AbstractBaseUser | None
) -> ImportReport:
    """Write the rows of a validated bundle whose files are stored; call inside a
    transaction."""
    challenge, created = Challenge.objects.update_or_create(
        slug=plan.slug, defaults=plan.challenge_values
    )
    if organizer is not None:
        challenge.organizers.add(organizer)  # type: ignore[arg-type]
    dataset, _ = Dataset.objects.update_or_create(
        challenge=challenge, slug=plan.ds_slug, defaults=plan.ds_values
    )
    if plan.table is not None:
        dataset.input_table = stored.table
    dataset.starting_kit = stored.kit
    dataset.summary = plan.summary or {}
    dataset.save(update_fields=["input_table", "starting_kit", "summary"])

    specs = plan.specs
    existing = {c.case_id: c for c in Case.objects.filter(dataset=dataset)}
    keep_parts = {i: c.leaderboard_part for i, c in existing.items() if c.split == CaseSplit.TEST}
    # A stored part never changes; a new test case takes its part from the bundle, if given,
    # else from the draw over the new test cases without one.
    new_test = [
        s.case_id
        for s in specs
        if s.split == CaseSplit.TEST and s.case_id not in keep_parts and not s.part
    ]
    drawn = (
        draw_leaderboard_parts(new_test, dataset.public_fraction, dataset.split_seed)
        if new_test
        else {}
    )
    to_create, to_update = [], []
    for s in specs:
        input_rel, label_rel = stored.files[s.case_id]
        part = ""
        if s.split == CaseSplit.TEST:
            part = keep_parts.get(s.case_id) or s.part or drawn[s.case_id]
        values = {
            "split": s.split,
            "leaderboard_part": part,
            "input_file": input_rel,
            "label": s.label,
            "label_file": label_rel,
        }
        if s.case_id in existing:
            case = existing[s.case_id]
            for k, v in values.items():
                setattr(case, k, v)
            to_update.append(case)
        else:
            to_create.append(Case(dataset=dataset, case_id=s.case_id, **values))
    spec_ids = {s.case_id for s in specs}
    Case.objects.filter(dataset=dataset).exclude(case_id__in=spec_ids).delete()
    Case.objects.bulk_create(to_create, batch_size=2000)
    Case.objects.bulk_update(
        to_update,
        ["split", "leaderboard_part", "input_file", "label", "label_file"],
        batch_size=2000,
    )
    for phase_slug, values in plan.phases.items():
        programs = stored.programs.get(phase_slug, {"scoring_program": "", "reference_data": ""})
        Phase.objects.update_or_create(
            challenge=challenge,
            slug=phase_slug,
            defaults={"dataset": dataset, **values, **programs},
        )
    counts: dict[str, int] = {}
    for s in specs:
        counts[s.split] = counts.get(s.split, 0) + 1
    return ImportReport(challenge=challenge, created=created, phases=len(plan.phases), cases=counts)
