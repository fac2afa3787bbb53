"""Export a challenge as a bundle of its own format (docs/bundles.md, "Exporting a challenge").

The export is the inverse of :func:`challenges.services.bundles.challenge_import_bundle`: it
writes ``challenge.yaml`` (keys in the documented order, every field the importer reads), the
cases file, the inputs, the label masks, the starting kit and the terms, so that importing it
gives the same challenge, data set, cases (ids, splits, leaderboard parts, labels, the bytes of
every file) and phases. It is trusted code for organizers and operators: it reads the hidden test
labels (classification labels from the database, test masks from ``SCANBENCH_PRIVATE_ROOT``)
unless told to leave them out. Submissions, results, users, teams and memberships are never
exported.

The cases file carries every test case's stored leaderboard part (``leaderboard_part``), so a
fresh import keeps the parts whatever the seeded draw would give; ``requires_approval`` and each
phase's ``private_release`` are written too. What the bundle format still cannot carry is listed
by :func:`bundle_export_losses` (the ``export_challenge`` command prints it): phases on another
data set than the bundle's one.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from challenges.models import Case, CaseSplit, Challenge, Dataset, Phase, TaskType
from challenges.services.bundles import MANIFEST, MASK_SUFFIXES

CASES_FILE = "cases.csv"
PROGRAMS_FOLDER = "programs"
INPUTS_FOLDER = "inputs"
LABELS_FOLDER = "labels"
KIT_FOLDER = "starting-kit"
#: members of an exported zip carry this time, so that the same challenge gives the same bytes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class BundleExportError(ValueError):
    """A challenge that cannot be written as a bundle (a missing stored file, more than one data
    set); the message names the case or the file."""


# --- what the format cannot carry -------------------------------------------------------------


def _dataset(challenge: Challenge) -> Dataset:
    datasets = list(Dataset.objects.filter(challenge=challenge).order_by("slug"))
    if len(datasets) != 1:
        raise BundleExportError(
            f"challenge '{challenge.slug}' has {len(datasets)} data sets; "
            "a bundle holds exactly one"
        )
    return datasets[0]


def bundle_export_losses(*, challenge: Challenge) -> list[str]:
    """What importing an export of ``challenge`` would not give back, one line each (empty: the
    round trip is lossless). Submissions, results and users are never exported and not listed."""
    dataset = _dataset(challenge)
    lines: list[str] = []
    for phase in Phase.objects.filter(challenge=challenge).order_by("opens_at", "slug"):
        if phase.dataset_id != dataset.pk:
            lines.append(f"phase '{phase.slug}': on another data set")
    return lines


# --- the manifest -----------------------------------------------------------------------------


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _phase_manifest(phase: Phase) -> dict[str, Any]:
    """Every field :func:`challenges.services.bundles._phase_values` reads, in its order."""
    values: dict[str, Any] = {"slug": phase.slug, "title": phase.title}
    if phase.description:
        values["description"] = phase.description
    values["submission_kind"] = phase.submission_kind
    values["opens"] = _iso(phase.opens_at)
    if phase.closes_at is not None:
        values["closes"] = _iso(phase.closes_at)
    values.update(
        daily_limit=phase.daily_limit,
        total_limit=phase.total_limit,
        metrics=list(phase.metrics),
        primary_metric=phase.primary_metric,
        direction=phase.primary_direction,
        ranking=phase.ranking_scheme,
        entry_selection=phase.entry_selection,
        ladder=phase.use_ladder,
        threshold=phase.decision_threshold,
        nsd_tolerance_mm=phase.nsd_tolerance_mm,
        time_limit_s=phase.time_limit_s,
        memory_limit_mb=phase.memory_limit_mb,
        gpus=phase.gpus,
        input_spec=dict(phase.input_spec or {}),
    )
    if phase.gpu_queue:
        values["gpu_queue"] = phase.gpu_queue
    if phase.show_case_results is not None:
        values["show_case_results"] = phase.show_case_results
    values["private_release"] = phase.private_release
    if phase.scoring_program:
        values["scoring_program"] = f"{PROGRAMS_FOLDER}/{phase.slug}/program"
        values["reference_data"] = f"{PROGRAMS_FOLDER}/{phase.slug}/reference"
        values["columns"] = [dict(c) for c in phase.leaderboard_columns or []]
    return values


def _manifest(
    challenge: Challenge,
    dataset: Dataset,
    *,
    inputs: str | None,
    labels: str | None,
    kit: str | None,
) -> dict[str, Any]:
    """``challenge.yaml`` as a mapping, keys in the order of docs/bundles.md."""
    top: dict[str, Any] = {
        "slug": challenge.slug,
        "title": challenge.title,
        "summary": challenge.summary,
        "task": challenge.task_type,
        "classes": [str(c) for c in challenge.classes or []],
    }
    if challenge.input_description:
        top["input"] = challenge.input_description
    if challenge.output_description:
        top["output"] = challenge.output_description
    top["licence"] = challenge.data_licence
    top["attribution"] = challenge.data_attribution
    top["published"] = challenge.is_published
    top["requires_approval"] = challenge.requires_approval
    if challenge.terms:
        top["terms"] = challenge.terms
    if kit:
        top["starting_kit"] = kit
    ds: dict[str, Any] = {"slug": dataset.slug}
    if dataset.description:
        ds["description"] = dataset.description
    ds["cases"] = CASES_FILE
    if inputs:
        ds["inputs"] = inputs
    if labels:
        ds["labels"] = labels
    ds["public_fraction"] = dataset.public_fraction
    ds["seed"] = dataset.split_seed
    top["dataset"] = ds
    phases = Phase.objects.filter(challenge=challenge).order_by("opens_at", "slug")
    top["phases"] = [_phase_manifest(p) for p in phases]
    return top


# --- the data ---------------------------------------------------------------------------------


def _source(root: Path, rel: str, what: str, case_id: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise BundleExportError(f"case '{case_id}': stored {what} {rel} is missing")
    return path


def _input_name(case_id: str, stored: str) -> str:
    """``<case_id>.<ext>``, the extension of the stored file kept (the importer takes the case
    id of an input from its name up to the first dot)."""
    name = Path(stored).name
    if name.startswith(f"{case_id}."):
        return name
    return f"{case_id}.{name.split('.', 1)[1]}" if "." in name else case_id


def _mask_name(case_id: str, stored: str) -> str:
    name = Path(stored).name
    suffix = next((s for s in MASK_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise BundleExportError(f"case '{case_id}': stored mask {stored} has no mask suffix")
    return f"{case_id}{suffix}"


def _copy_table(src: Path, dest: Path, *, drop_label: bool) -> None:
    """Copy the input table; without test labels a ``label`` column (kept in storage, never
    served) is left out."""
    if not drop_label:
        shutil.copyfile(src, dest)
        return
    with src.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        if "label" not in columns:
            shutil.copyfile(src, dest)
            return
        kept = [c for c in columns if c != "label"]
        with dest.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(kept)
            for row in reader:
                writer.writerow([row[c] for c in kept])


def _write_programs(challenge: Challenge, dest: Path, *, include_test_labels: bool) -> None:
    """Each program-scored phase's scoring program and reference folder, under
    ``programs/<phase>/``; the reference is hidden data: left out without test labels."""
    private = Path(settings.SCANBENCH_PRIVATE_ROOT)
    for phase in Phase.objects.filter(challenge=challenge).exclude(scoring_program=""):
        folder = dest / PROGRAMS_FOLDER / phase.slug
        for rel, name in ((phase.scoring_program, "program"), (phase.reference_data, "reference")):
            src = private / rel
            if not src.is_dir():
                raise BundleExportError(f"phase '{phase.slug}': stored {name} {rel} is missing")
            if name == "reference" and not include_test_labels:
                (folder / name).mkdir(parents=True)
                continue
            shutil.copytree(src, folder / name, symlinks=True)


def _write_bundle(challenge: Challenge, dest: Path, *, include_test_labels: bool) -> None:
    media = Path(settings.MEDIA_ROOT)
    private = Path(settings.SCANBENCH_PRIVATE_ROOT)
    if challenge.task_type == TaskType.PROGRAM:
        raise BundleExportError(
            f"{challenge.slug}: imported from a Codabench bundle, it has no cases to write in "
            "this format; export it from its original bundle"
        )
    _write_programs(challenge, dest, include_test_labels=include_test_labels)
    dataset = _dataset(challenge)
    classification = challenge.task_type == TaskType.CLASSIFICATION
    cases = list(Case.objects.filter(dataset=dataset).order_by("case_id"))

    inputs: str | None = None
    if dataset.input_table:
        table = media / dataset.input_table
        if not table.is_file():
            raise BundleExportError(f"stored input table {dataset.input_table} is missing")
        inputs = table.name if table.name not in (CASES_FILE, MANIFEST) else "inputs.csv"
        _copy_table(table, dest / inputs, drop_label=not include_test_labels)
    elif any(c.input_file for c in cases):
        inputs = f"{INPUTS_FOLDER}/"
        (dest / INPUTS_FOLDER).mkdir()
        for c in cases:
            if c.input_file:
                src = _source(media, c.input_file, "input", c.case_id)
                shutil.copyfile(src, dest / INPUTS_FOLDER / _input_name(c.case_id, c.input_file))

    labels: str | None = None
    if challenge.task_type == TaskType.SEGMENTATION:
        labels = f"{LABELS_FOLDER}/"
        (dest / LABELS_FOLDER).mkdir()
        for c in cases:
            if not c.label_file or (c.split == CaseSplit.TEST and not include_test_labels):
                continue
            root = private if c.split == CaseSplit.TEST else media
            src = _source(root, c.label_file, "label mask", c.case_id)
            shutil.copyfile(src, dest / LABELS_FOLDER / _mask_name(c.case_id, c.label_file))

    with (dest / CASES_FILE).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        # the stored leaderboard part of every test case, so that a fresh import keeps it
        # whatever the draw of public_fraction and seed would give now
        header = ["case_id", "split", *(["label"] if classification else []), "leaderboard_part"]
        writer.writerow(header)
        for c in cases:
            row = [c.case_id, c.split]
            if classification:
                hidden = c.split == CaseSplit.TEST and not include_test_labels
                row.append("" if hidden else c.label)
            writer.writerow([*row, c.leaderboard_part if c.split == CaseSplit.TEST else ""])

    kit: str | None = None
    if dataset.starting_kit:
        src = media / dataset.starting_kit
        if not src.is_dir():
            raise BundleExportError(f"stored starting kit {dataset.starting_kit} is missing")
        shutil.copytree(src, dest / KIT_FOLDER, symlinks=True)
        kit = KIT_FOLDER

    manifest = _manifest(challenge, dataset, inputs=inputs, labels=labels, kit=kit)
    (dest / MANIFEST).write_text(
        yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=100),
        encoding="utf-8",
    )


# --- the services -----------------------------------------------------------------------------


def challenge_export_bundle(
    *, challenge: Challenge, out: Path, include_test_labels: bool = True
) -> Path:
    """Write ``challenge`` as a bundle folder at ``out`` (which must not exist, or be an empty
    folder) and return it. Trusted: reads the hidden test labels, and writes them unless
    ``include_test_labels`` is false (a bundle without them is for sharing the data, and the
    importer refuses it). The folder is written beside ``out`` and renamed into place, so a
    failed export leaves nothing. Raises :class:`BundleExportError`."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleExportError(f"{out}: exists and is not an empty folder: not overwritten")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_bundle(challenge, work, include_test_labels=include_test_labels)
        if out.exists():
            out.rmdir()
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def challenge_export_zip(
    *, challenge: Challenge, out: Path, include_test_labels: bool = True
) -> Path:
    """Write ``challenge`` as a zip of its bundle at ``out`` (a file that must not exist) and
    return it: ``challenge.yaml`` at the top, members sorted and dated 1980-01-01, so that the
    same challenge gives the same bytes. Otherwise as :func:`challenge_export_bundle`."""
    out = Path(out)
    if out.exists():
        raise BundleExportError(f"{out}: exists: not overwritten")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="scanbench-export-") as tmp:
        folder = challenge_export_bundle(
            challenge=challenge, out=Path(tmp) / "bundle", include_test_labels=include_test_labels
        )
        part = out.with_name(f".{out.name}.part")
        try:
            with zipfile.ZipFile(part, "w", allowZip64=True) as zf:
                for path in sorted(folder.rglob("*")):
                    if not path.is_file():
                        continue
                    info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), _ZIP_TIME)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    with path.open("rb") as src, zf.open(info, "w", force_zip64=True) as dest:
                        shutil.copyfileobj(src, dest, 1 << 20)
            part.replace(out)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    return out
