"""Import a challenge bundle: a folder or zip holding ``challenge.yaml`` and data folders.

The format is documented in docs/bundles.md. The whole import is validated before anything is
written, and the database writes are one transaction: a bad bundle changes nothing and raises
:class:`BundleError` with one message naming the file and the field. Re-importing a bundle with
the same slugs updates the challenge, its phases and cases in place; the public/private part of a
test case, once drawn, never changes.

The import also measures the data once (image grid, foreground fractions and what an empty mask
scores, or class counts: ``Dataset.summary``, shown on the task card, so that a page never reads a
mask) and copies the optional starting kit into the public media folder (offered on the Data tab
by challenges.services.data).
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
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
from challenges.models.phase import EntrySelection
from evaluator import ranking
from evaluator.dataset_summary import SUMMARY_VERSION, MaskSummaryError, summarize_masks
from evaluator.metrics.registry import CLASSIFICATION_METRICS, SEGMENTATION_METRICS
from evaluator.readers.safe_zip import UnsafeArchiveError, ZipLimits, safe_extract

MANIFEST = "challenge.yaml"
MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".png", ".npy", ".npz")
#: a starting kit is code and notes, not data: its files together stay under this many bytes
#: (``SCANBENCH_MAX_STARTING_KIT_BYTES`` overrides it) and under this many files
STARTING_KIT_MAX_BYTES = 50 << 20
STARTING_KIT_MAX_FILES = 500

KNOWN_METRICS = {"segmentation": SEGMENTATION_METRICS, "classification": CLASSIFICATION_METRICS}


class BundleError(ValueError):
    """A bundle that cannot be imported; the message names the file and the field."""


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


def _files_by_case(folder: Path, what: str, suffixes: tuple[str, ...] | None) -> dict[str, Path]:
    if not folder.is_dir():
        raise BundleError(f"{folder.name}/: {what} folder named in {MANIFEST} does not exist")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_symlink():
            raise BundleError(f"{folder.name}/{p.name}: links are not allowed in a bundle")
        if not p.is_file() or p.name.startswith("."):
            continue
        suffix = next((s for s in (suffixes or ()) if p.name.endswith(s)), None)
        if suffixes is not None and suffix is None:
            raise BundleError(
                f"{folder.name}/{p.name}: unsupported file type for {what} "
                f"(expected {', '.join(suffixes)})"
            )
        case_id = p.name[: -len(suffix)] if suffix else p.name.split(".", 1)[0]
        if case_id in found:
            raise BundleError(f"{folder.name}/{p.name}: second file for case '{case_id}'")
        found[case_id] = p
    return found


def _read_cases(root: Path, ds: _Fields, task: str, n_classes: int) -> list[_CaseSpec]:
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
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        case_id = (row["case_id"] or "").strip()
        if not case_id or "/" in case_id or case_id.startswith("."):
            raise BundleError(f"{cases_name}: line {line}: invalid case_id {case_id!r}")
        if case_id in seen:
            raise BundleError(f"{cases_name}: line {line}: duplicate case_id '{case_id}'")
        seen.add(case_id)
        split = (row["split"] or "").strip()
        if split not in CaseSplit.values:
            raise BundleError(
                f"{cases_name}: line {line}: case '{case_id}': split {split!r} is not train or test"
            )
        label = ""
        if task == TaskType.CLASSIFICATION:
            label = (row["label"] or "").strip()
            if not label.isdigit() or int(label) >= n_classes:
                raise BundleError(
                    f"{cases_name}: line {line}: case '{case_id}': label {label!r} is not a class "
                    f"index 0..{n_classes - 1}"
                )
        specs.append(_CaseSpec(case_id=case_id, split=split, label=label))
    if not any(s.split == CaseSplit.TEST for s in specs):
        raise BundleError(f"{cases_name}: no test cases: nothing could be scored")
    return specs


def _attach_files(root: Path, ds: _Fields, task: str, specs: list[_CaseSpec]) -> Path | None:
    """Attach input and label files to the cases; return the input table for tabular data."""
    by_id = {s.case_id: s for s in specs}
    inputs_name = ds.get("inputs", None)
    table: Path | None = None
    if inputs_name:
        src = root / inputs_name
        if src.is_file() and src.suffix == ".csv":
            table = src
            with src.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if "case_id" not in (reader.fieldnames or []):
                    raise BundleError(f"{inputs_name}: input table has no case_id column")
                ids = {row["case_id"] for row in reader}
            if missing := sorted(set(by_id) - ids):
                raise BundleError(f"{inputs_name}: no input row for case '{missing[0]}'")
        else:
            files = _files_by_case(src, "input", None)
            for case_id, spec in by_id.items():
                if case_id not in files:
                    raise BundleError(f"{inputs_name}/: no input file for case '{case_id}'")
                spec.input_src = files[case_id]
            if extra := sorted(set(files) - set(by_id)):
                raise BundleError(f"{inputs_name}/{files[extra[0]].name}: case not in cases file")
    if task == TaskType.SEGMENTATION:
        labels_name = ds.get("labels")
        files = _files_by_case(root / labels_name, "label mask", MASK_SUFFIXES)
        for case_id, spec in by_id.items():
            if case_id not in files:
                raise BundleError(f"{labels_name}/: no label mask for case '{case_id}'")
            spec.label_src = files[case_id]
    return table


def draw_leaderboard_parts(test_ids: list[str], fraction: float, seed: int) -> dict[str, str]:
    """The one-time seeded draw of the public part of the test set (the evaluator's
    ``public_private_split``), keeping at least one case in each part when there are two."""
    n = len(set(test_ids))
    n_public = min(max(round(fraction * n), 1), max(n - 1, 1))
    public, _ = ranking.public_private_split(test_ids, public_fraction=n_public / n, seed=seed)
    chosen = set(public)
    return {i: LeaderboardPart.PUBLIC if i in chosen else LeaderboardPart.PRIVATE for i in test_ids}


def _phase_values(p: _Fields, task: str) -> dict[str, Any]:
    p.unknown_keys(
        {
            "slug", "title", "description", "submission_kind", "opens", "closes", "daily_limit",
            "total_limit", "metrics", "primary_metric", "direction", "ranking",
            "entry_selection", "ladder", "threshold", "nsd_tolerance_mm", "time_limit_s",
            "memory_limit_mb", "gpus", "input_spec", "show_case_results",
        }
    )  # fmt: skip
    known = KNOWN_METRICS[task]
    metrics = p.get("metrics", kind=list)
    for i, m in enumerate(metrics):
        if m not in known:
            raise BundleError(
                f"{MANIFEST}: {p.where}.metrics[{i}]: unknown {task} metric {m!r} "
                f"(known: {', '.join(sorted(known))})"
            )
    primary = p.get("primary_metric", metrics[0] if metrics else ...)
    if primary not in metrics:
        raise p._fail("primary_metric", f"{primary!r} is not among the phase's metrics")
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
        "input_spec": p.get("input_spec", {}, kind=dict),
        "show_case_results": p.get("show_case_results", None, kind=bool),
    }


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


def _summary_from_specs(task: str, classes: list[str], specs: list[_CaseSpec]) -> dict[str, Any]:
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


def challenge_import_bundle(
    *, path: Path, organizer: AbstractBaseUser | None = None
) -> ImportReport:
    """Validate and import the bundle at ``path`` (folder or zip). Raises BundleError."""
    with _opened_bundle(Path(path)) as root:
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
            }
        )  # fmt: skip
        task = top.choice("task", TaskType)
        classes = top.get("classes", [], kind=list)
        if task == TaskType.CLASSIFICATION and len(classes) < 2:
            raise top._fail("classes", "a classification task needs at least two class names")
        challenge_values = {
            "title": top.get("title"),
            "summary": top.get("summary"),
            "task_type": task,
            "classes": [str(c) for c in classes],
            "input_description": top.get("input", ""),
            "output_description": top.get("output", ""),
            "data_licence": top.get("licence"),
            "data_attribution": top.get("attribution"),
            "terms": top.get("terms", "").strip(),
            "is_published": top.get("published", True, kind=bool),
        }
        slug = _slug(top, "slug")
        ds = _Fields(top.get("dataset", kind=dict), "dataset")
        ds.unknown_keys(
            {"slug", "description", "cases", "inputs", "labels", "public_fraction", "seed"}
        )
        ds_slug = _slug(ds, "slug", "main")
        fraction = ds.get("public_fraction", 0.3, kind=float)
        if not 0.0 < fraction < 1.0:
            raise ds._fail("public_fraction", "must lie strictly between 0 and 1")
        seed = ds.get("seed", 0, kind=int)
        specs = _read_cases(root, ds, task, max(len(classes), 2))
        table = _attach_files(root, ds, task, specs)
        raw_phases = top.get("phases", kind=list)
        if not raw_phases:
            raise top._fail("phases", "at least one phase is needed")
        phases: dict[str, dict[str, Any]] = {}
        for i, raw in enumerate(raw_phases):
            pf = _Fields(raw, f"phases[{i}]")
            phase_slug = _slug(pf, "slug")
            if phase_slug in phases:
                raise pf._fail("slug", f"duplicate phase slug {phase_slug!r}")
            phases[phase_slug] = _phase_values(pf, task)

        kit = _starting_kit(root, top, ds)
        summary = _summary_from_specs(task, challenge_values["classes"], specs)
        digest = _bundle_digest(root)[:16]
        return _write(
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
            digest=digest,
            organizer=organizer,
            kit=kit,
            summary=summary,
        )


def _store_tree(src: Path, *, root: Path, rel: str) -> str:
    """Copy a validated folder (no links, size-capped: :func:`_starting_kit`) under ``root``."""
    for p in sorted(src.rglob("*")):
        if p.is_file():
            _store(p, root=root, rel=f"{rel}/{p.relative_to(src).as_posix()}")
    (root / rel).mkdir(parents=True, exist_ok=True)
    return rel


def _store(src: Path, *, root: Path, rel: str) -> str:
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return rel


@transaction.atomic
def _write(
    *,
    slug: str,
    challenge_values: dict[str, Any],
    ds_slug: str,
    ds_values: dict[str, Any],
    specs: list[_CaseSpec],
    table: Path | None,
    phases: dict[str, dict[str, Any]],
    digest: str,
    organizer: AbstractBaseUser | None,
    kit: Path | None = None,
    summary: dict[str, Any] | None = None,
) -> ImportReport:
    """Write the validated bundle. Files go to a folder named by the bundle's digest, so the rows
    of a previous import keep pointing at intact files if this transaction rolls back."""
    challenge, created = Challenge.objects.update_or_create(slug=slug, defaults=challenge_values)
    if organizer is not None:
        challenge.organizers.add(organizer)  # type: ignore[arg-type]
    dataset, _ = Dataset.objects.update_or_create(
        challenge=challenge, slug=ds_slug, defaults=ds_values
    )
    base = f"challenges/{slug}/{ds_slug}/{digest}"
    media = Path(settings.MEDIA_ROOT)
    private = Path(settings.SCANBENCH_PRIVATE_ROOT)
    if table is not None:
        dataset.input_table = _store(table, root=media, rel=f"{base}/inputs/{table.name}")
    dataset.starting_kit = "" if kit is None else _store_tree(kit, root=media, rel=f"{base}/kit")
    dataset.summary = summary or {}
    dataset.save(update_fields=["input_table", "starting_kit", "summary"])

    existing = {c.case_id: c for c in Case.objects.filter(dataset=dataset)}
    keep_parts = {i: c.leaderboard_part for i, c in existing.items() if c.split == CaseSplit.TEST}
    new_test = [
        s.case_id for s in specs if s.split == CaseSplit.TEST and s.case_id not in keep_parts
    ]
    drawn = (
        draw_leaderboard_parts(new_test, dataset.public_fraction, dataset.split_seed)
        if new_test
        else {}
    )
    to_create, to_update = [], []
    for s in specs:
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
        part = ""
        if s.split == CaseSplit.TEST:
            part = keep_parts.get(s.case_id) or drawn[s.case_id]
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
    for phase_slug, values in phases.items():
        Phase.objects.update_or_create(
            challenge=challenge, slug=phase_slug, defaults={"dataset": dataset, **values}
        )
    counts: dict[str, int] = {}
    for s in specs:
        counts[s.split] = counts.get(s.split, 0) + 1
    return ImportReport(challenge=challenge, created=created, phases=len(phases), cases=counts)
