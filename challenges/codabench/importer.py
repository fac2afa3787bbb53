"""Import a Codabench version-2 bundle as a Scanbench challenge (docs/codabench.md).

The bundle is read and checked by :mod:`challenges.codabench.parse` before anything is written.
The organizers' programs and data are copied into the private storage root (never served), the
starting kit and public data into the public one, in folders named by the bundle's digest; the
rows are then written in one transaction. A phase becomes a Scanbench phase scored by its first
task's scoring program (``Phase.scoring_program``), with the bundle's leaderboard columns; a task
with an ingestion program makes it a code phase. Solutions become baseline entries. Everything
that is not mapped is listed in the report the import returns.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.text import slugify

from challenges.codabench.parse import (
    CodabenchError,
    Column,
    Competition,
    CPhase,
    CTask,
    open_codabench_bundle,
    read_competition,
)
from challenges.models import (
    Challenge,
    Dataset,
    Direction,
    Phase,
    Submission,
    SubmissionKind,
    TaskType,
)

MANIFEST = "competition.yaml"
#: Codabench's "no limit" (null) as Scanbench limits
UNLIMITED_DAILY, UNLIMITED_TOTAL = 1000, 100_000


def is_codabench_bundle(path: Path) -> bool:
    """Whether ``path`` (a folder or zip) has ``competition.yaml`` at its top or in its one
    top-level folder, and no Scanbench ``challenge.yaml`` there."""
    if path.is_dir():
        tops = [path, *[p for p in path.iterdir() if p.is_dir()]]
        return (
            any((t / MANIFEST).is_file() for t in tops) and not (path / "challenge.yaml").is_file()
        )
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    top = {n for n in names if n.count("/") <= 1 and n.rsplit("/", 1)[-1] == MANIFEST}
    return bool(top) and "challenge.yaml" not in names


@dataclass
class CodabenchImport:
    challenge: Challenge
    created: bool
    phases: int
    baselines: list[Submission] = field(default_factory=list)
    report: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        verb = "Created" if self.created else "Updated"
        lines = [
            f"{verb} challenge '{self.challenge.slug}' from a Codabench bundle: "
            f"{self.phases} phase(s), {len(self.baselines)} solution(s) submitted as baselines"
        ]
        if self.report:
            lines.append(f"Not mapped ({len(self.report)}):")
            lines += [f"  - {line}" for line in self.report]
        return "\n".join(lines)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            with p.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def _copy_tree(src: Path, dest: Path) -> None:
    """Copy a checked folder (the parser refused links) or a single file into ``dest``."""
    if dest.exists():
        return  # the same digest: the same bytes
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    if src.is_dir():
        shutil.copytree(src, tmp, symlinks=False)
    else:
        tmp.mkdir(parents=True)
        shutil.copyfile(src, tmp / src.name)
    tmp.replace(dest)


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                info = zipfile.ZipInfo(p.relative_to(folder).as_posix(), (1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, p.read_bytes())
    return buffer.getvalue()


def _unique_slugs(phases: list[CPhase]) -> list[str]:
    seen: set[str] = set()
    out = []
    for p in phases:
        base = slugify(p.name)[:56] or f"phase-{p.index}"
        slug, n = base, 2
        while slug in seen:
            slug, n = f"{base}-{n}", n + 1
        seen.add(slug)
        out.append(slug)
    return out


def _summary(comp: Competition) -> str:
    parts = [comp.description.strip() or comp.title]
    for page in comp.pages:
        parts.append(f"{page.title}\n\n{page.markdown.strip()}")
    return "\n\n".join(parts)


def _first_task(comp: Competition, phase: CPhase) -> CTask:
    if not phase.task_indexes:
        raise CodabenchError(f"{MANIFEST}: phase '{phase.name}': no task to score it with")
    task = comp.tasks[phase.task_indexes[0]]
    if task.scoring_program is None:
        raise CodabenchError(
            f"{MANIFEST}: task '{task.name}' (phase '{phase.name}'): no scoring_program; "
            "Scanbench scores a Codabench phase with its task's scoring program"
        )
    return task


def codabench_import(
    *,
    path: Path,
    organizer: User | None = None,
    slug: str | None = None,
    on_written: Callable[[CodabenchImport], None] | None = None,
) -> CodabenchImport:
    """Import the Codabench bundle at ``path`` (folder or zip). Raises CodabenchError, having
    written nothing, for a bundle that cannot be imported. ``on_written`` is called inside the
    import's transaction (the upload's log and state commit with the rows)."""
    with open_codabench_bundle(path) as root:
        comp = read_competition(root)
        return _import(comp, root, organizer=organizer, slug=slug, on_written=on_written)


def _checked(comp: Competition) -> tuple[list[CTask], list[Column]]:
    tasks = [_first_task(comp, p) for p in comp.phases]
    board = comp.leaderboards[0] if comp.leaderboards else None
    if board is None or not board.columns:
        raise CodabenchError(f"{MANIFEST}: no leaderboard columns: nothing to rank entries by")
    return tasks, sorted(board.columns, key=lambda c: c.index)


def codabench_dry_run(path: Path, *, slug: str | None = None) -> dict[str, Any]:
    """What importing the bundle would do, in the shape of the Scanbench importer's dry-run
    report (``BundlePlan.report``), plus ``format`` and ``not_mapped`` (every line of the
    mapping report). Raises CodabenchError for a bundle that cannot be imported."""
    with open_codabench_bundle(path) as root:
        comp = read_competition(root)
        tasks, columns = _checked(comp)
        digest = _digest(root)
    first = comp.phases[0]
    return {
        "format": "codabench",
        "slug": slug or slugify(comp.title)[:64] or "codabench-challenge",
        "title": comp.title,
        "task": TaskType.PROGRAM.value,
        "classes": [],
        "published": None,
        "dataset": "main",
        "cases": {},
        "summary": {},
        "starting_kit": first.starting_kit is not None or first.public_data is not None,
        "phases": [
            {
                "slug": phase_slug,
                "title": p.name,
                "submission_kind": "code" if t.ingestion_program else "predictions",
                "metrics": [c.key for c in columns],
                "primary_metric": columns[0].key,
                "opens_at": _utc(p.start),
                "closes_at": _utc(p.end),
                "daily_limit": p.max_submissions_per_day,
                "total_limit": p.max_submissions,
            }
            for p, phase_slug, t in zip(comp.phases, _unique_slugs(comp.phases), tasks, strict=True)
        ],
        "solutions": len(comp.solutions),
        "digest": digest,
        "not_mapped": list(comp.report),
        "problems": [],
    }


def _utc(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _import(
    comp: Competition,
    root: Path,
    *,
    organizer: User | None,
    slug: str | None,
    on_written: Callable[[CodabenchImport], None] | None = None,
) -> CodabenchImport:
    report = list(comp.report)
    slug = slug or slugify(comp.title)[:64] or "codabench-challenge"
    tasks, columns = _checked(comp)
    digest = _digest(root)
    private = Path(settings.SCANBENCH_PRIVATE_ROOT) / "challenges" / slug / "codabench" / digest
    media_rel = f"challenges/{slug}/main/{digest}"
    media = Path(settings.MEDIA_ROOT) / media_rel
    made = [p for p in (private, media) if not p.exists()]
    try:
        stored: dict[int, dict[str, str]] = {}
        for task in {t.index: t for t in tasks}.values():
            rels: dict[str, str] = {}
            for kind in ("scoring_program", "reference_data", "ingestion_program", "input_data"):
                src = getattr(task, kind)
                dest = private / f"task-{task.index}" / kind
                if src is None:
                    if kind == "reference_data":
                        dest.mkdir(parents=True, exist_ok=True)  # a program that needs none
                    else:
                        continue
                else:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    _copy_tree(src, dest)
                rels[kind] = os.path.relpath(dest, settings.SCANBENCH_PRIVATE_ROOT)
            stored[task.index] = rels
        kit_rel = ""
        first = comp.phases[0]
        if first.starting_kit is not None or first.public_data is not None:
            kit = media / "kit"
            if first.starting_kit is not None:
                _copy_tree(first.starting_kit, kit)
            if first.public_data is not None:
                kit.mkdir(parents=True, exist_ok=True)
                _copy_tree(first.public_data, kit / "public_data")
                report.append(
                    "public_data is offered inside the starting kit (starting-kit.zip, folder "
                    "public_data/) on the Data tab"
                )
            kit_rel = f"{media_rel}/kit"
        for p in comp.phases[1:]:
            if p.starting_kit is not None or p.public_data is not None:
                report.append(
                    f"phase '{p.name}': its own starting kit / public data is not offered; the "
                    "Data tab offers the first phase's"
                )
        if comp.image is not None:
            report.append("image (the logo) is not shown: Scanbench pages have no logo")
        if comp.pages:
            report.append(f"{len(comp.pages)} page(s) appended to the challenge's overview")
        report.append(
            "licence and attribution are not in Codabench bundles: set them in the console "
            "before publishing (they read 'see the terms' until then)"
        )
        with transaction.atomic():
            result = _write(comp, slug, tasks, stored, columns, kit_rel, organizer, report)
            if on_written is not None:
                on_written(result)
    except BaseException:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return result


def _write(
    comp: Competition,
    slug: str,
    tasks: list[CTask],
    stored: dict[int, dict[str, str]],
    columns: list[Column],
    kit_rel: str,
    organizer: User | None,
    report: list[str],
) -> CodabenchImport:
    from challenges.services.baselines import _add

    challenge, created = Challenge.objects.update_or_create(
        slug=slug,
        defaults={
            "title": comp.title[:200],
            "summary": _summary(comp),
            "task_type": TaskType.PROGRAM,
            "classes": [],
            "input_description": "",
            "output_description": "",
            "data_licence": "See the terms",
            "data_attribution": "See the terms and the overview",
            "terms": comp.terms.strip(),
        },
    )
    if organizer is not None:
        challenge.organizers.add(organizer)
    dataset, _ = Dataset.objects.update_or_create(
        challenge=challenge, slug="main", defaults={"starting_kit": kit_rel, "summary": {}}
    )
    keys = [c.key for c in columns]
    primary = columns[0]
    column_values = [
        {"key": c.key, "title": c.title, "sorting": c.sorting, "precision": c.precision,
         "hidden": c.hidden}
        for c in columns
    ]  # fmt: skip
    slugs = _unique_slugs(comp.phases)
    phases: dict[int, Phase] = {}
    for p, phase_slug, task in zip(comp.phases, slugs, tasks, strict=True):
        total = p.max_submissions if p.max_submissions is not None else UNLIMITED_TOTAL
        daily = p.max_submissions_per_day
        daily = min(daily if daily is not None else UNLIMITED_DAILY, total)
        rels = stored[task.index]
        phase, _ = Phase.objects.update_or_create(
            challenge=challenge,
            slug=phase_slug,
            defaults={
                "dataset": dataset,
                "title": p.name[:200],
                "description": p.description,
                "submission_kind": SubmissionKind.CODE
                if "ingestion_program" in rels
                else SubmissionKind.PREDICTIONS,
                "opens_at": p.start,
                "closes_at": p.end,
                "daily_limit": daily,
                "total_limit": total,
                "metrics": keys,
                "primary_metric": primary.key,
                "primary_direction": Direction.HIGHER
                if primary.sorting == "desc"
                else Direction.LOWER,
                "time_limit_s": p.execution_time_limit_s or 600,
                "show_case_results": False,
                "scoring_program": rels["scoring_program"],
                "reference_data": rels["reference_data"],
                "ingestion_program": rels.get("ingestion_program", ""),
                "input_data": rels.get("input_data", ""),
                "leaderboard_columns": column_values,
            },
        )
        phases[p.index] = phase
    for gone in Phase.objects.filter(challenge=challenge).exclude(slug__in=slugs):
        report.append(
            f"phase '{gone.slug}' is not in this bundle: kept as it was (close it in the console)"
        )
    baselines: list[Submission] = []
    if comp.solutions and organizer is None:
        report.append("solutions were not submitted as baselines: no organizer was given")
    elif comp.solutions:
        assert organizer is not None
        for sol in comp.solutions:
            body = _zip_folder(sol.path) if sol.path.is_dir() else sol.path.read_bytes()
            targets = [
                p.index
                for p, task in zip(comp.phases, tasks, strict=True)
                if task.index in sol.task_indexes
            ]
            for index in targets:
                phase = phases[index]
                added = _add(
                    phase=phase,
                    user=organizer,
                    name=f"Solution {sol.index}",
                    body=body,
                    comment="A solution of the Codabench bundle, submitted at import.",
                    suffix=".zip",
                    kind=phase.submission_kind,
                )
                baselines += [added] if added else []
    return CodabenchImport(
        challenge=challenge,
        created=created,
        phases=len(phases),
        baselines=baselines,
        report=report,
    )
