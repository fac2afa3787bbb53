"""Read a Codabench version-2 competition bundle into plain, checked dataclasses.

A Codabench bundle is a folder or zip with ``competition.yaml`` (``version: 2``) at its top and
the files it names. :func:`open_codabench_bundle` yields the bundle's root folder (a zip is
extracted with the evaluator's safe extractor); :func:`read_competition` reads and checks
``competition.yaml`` and returns a :class:`Competition`. Nothing touches the database.

Every problem that stops the reading raises :class:`CodabenchError`, one line naming the file
and the problem. Everything Scanbench does not map (a Codabench feature, an unknown key, a
dataset named only by its Codabench key) is listed in ``Competition.report``, one line each, and
never dropped silently. The format, the defaults and the mapping are documented in
docs/codabench.md; the defaults are Codabench's own (its v2 unpacker and models).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from evaluator.readers.safe_zip import UnsafeArchiveError, ZipLimits, safe_extract

MANIFEST = "competition.yaml"
MAX_MANIFEST_BYTES = 1 << 20  # competition.yaml is settings, not data
MAX_TEXT_BYTES = 1 << 20  # a page or the terms
UNZIPPED_SUFFIX = ".unzipped"  # folder next to a nested zip that holds its members

# Codabench's defaults (src/apps/competitions/unpackers/v2.py, leaderboards/models.py and the
# phase model): applied where the key is absent.
DEFAULT_MAX_SUBMISSIONS_PER_DAY = 5
DEFAULT_MAX_SUBMISSIONS = 100
DEFAULT_EXECUTION_TIME_LIMIT_S = 600
DEFAULT_SORTING = "desc"
DEFAULT_PRECISION = 2

DATE_HELP = "use YYYY-MM-DD or YYYY-MM-DD HH:MM, UTC"
TASK_FILES = ("scoring_program", "ingestion_program", "input_data", "reference_data")

# Keys Scanbench reads, per mapping; any other key gets a report line.
_TOP_KEYS = {"version", "title", "description", "image", "terms", "pages", "phases", "tasks"}
_TOP_KEYS |= {"solutions", "leaderboards"}
_PAGE_KEYS = {"title", "file"}
_PHASE_KEYS = {"index", "name", "description", "start", "end", "max_submissions_per_day"}
_PHASE_KEYS |= {"max_submissions", "execution_time_limit", "tasks", "starting_kit", "public_data"}
_TASK_KEYS = {"index", "name", "description", "key", *TASK_FILES}
_SOLUTION_KEYS = {"index", "tasks", "path", "key"}
_LEADERBOARD_KEYS = {"title", "key", "columns"}
_COLUMN_KEYS = {"title", "key", "index", "sorting", "precision", "hidden"}
_COLUMN_KEYS |= {"computation", "computation_indexes"}

# Codabench features Scanbench does not carry over, and why (the report line's reason).
_TOP_UNMAPPED = {
    "docker_image": "programs run in Scanbench's evaluator image",
    "queue": "Scanbench runs every submission on its own evaluation workers",
    "registration_auto_approve": "Scanbench members join by accepting the terms",
    "enable_detailed_results": "Scanbench has no detailed-results page",
    "show_detailed_results_in_submission_panel": "Scanbench has no detailed-results page",
    "show_detailed_results_in_leaderboard": "Scanbench has no detailed-results page",
    "auto_run_submissions": "Scanbench scores every submission when it arrives",
    "can_participants_make_submissions_public": "Scanbench has no public submissions",
    "make_programs_available": "programs stay with the organizers",
    "make_input_data_available": "data downloads follow Scanbench's own rules",
    "competition_type": "Scanbench has one kind of challenge",
    "reward": "Scanbench has no reward field; put it in a page",
    "contact_email": "Scanbench has no contact field; put it in a page",
    "fact_sheet": "Scanbench asks no questions with a submission",
    "forum_enabled": "Scanbench has no forum",
}
_PHASE_UNMAPPED = {
    "solutions": "Codabench ignores it on import too; solutions are read from 'solutions'",
    "auto_migrate_to_this_phase": "Scanbench does not re-submit entries into a new phase",
    "hide_output": "Scanbench never shows program output to participants",
    "hide_prediction_output": "Scanbench never shows program output to participants",
    "hide_score_output": "Scanbench never shows program output to participants",
    "accepts_only_result_submissions": "the submission kind comes from the task's programs",
}
_TASK_UNMAPPED = {
    "ingestion_only_during_scoring": "Scanbench runs ingestion before scoring",
    "is_public": "Scanbench has no shared task library",
}
_SOLUTION_UNMAPPED = {
    "name": "a solution is named by its index",
    "description": "a solution is named by its index",
}
_LEADERBOARD_UNMAPPED = {
    "index": "Scanbench has one leaderboard per phase",
    "hidden": "leaderboard visibility follows Scanbench's public/private parts",
    "submission_rule": "the entry selection is set on the Scanbench phase",
    "primary_index": "Scanbench ranks by the first column",
}


class CodabenchError(ValueError):
    """The bundle cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Page:
    title: str
    markdown: str


@dataclass(frozen=True)
class CTask:
    """A Codabench task; each path is a folder inside the extracted bundle."""

    index: int
    name: str
    description: str
    scoring_program: Path | None
    ingestion_program: Path | None
    input_data: Path | None
    reference_data: Path | None


@dataclass(frozen=True)
class CPhase:
    """A Codabench phase; ``index`` is its position after sorting by the bundle's index."""

    index: int
    name: str
    description: str
    start: datetime
    end: datetime | None
    max_submissions_per_day: int | None
    max_submissions: int | None
    execution_time_limit_s: int | None
    task_indexes: list[int]
    starting_kit: Path | None
    public_data: Path | None


@dataclass(frozen=True)
class Solution:
    index: int
    task_indexes: list[int]
    path: Path


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    index: int
    sorting: str  # 'desc' (larger is better) or 'asc' (smaller is better)
    precision: int
    hidden: bool


@dataclass(frozen=True)
class Leaderboard:
    title: str
    key: str
    columns: list[Column]


@dataclass(frozen=True)
class Competition:
    title: str
    description: str
    image: Path | None
    terms: str
    pages: list[Page]
    phases: list[CPhase]
    tasks: dict[int, CTask]
    solutions: list[Solution]
    leaderboards: list[Leaderboard]
    report: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _DatasetKey:
    """A file field naming a Codabench dataset by its key (a UUID) instead of a bundle path."""

    key: str


# --------------------------------------------------------------------------- opening


def _find_root(folder: Path, name: str) -> Path:
    """The folder holding competition.yaml: ``folder`` itself or its one top-level folder."""
    if (folder / MANIFEST).is_file():
        return folder
    children = [p for p in folder.iterdir() if p.is_dir() and p.name != "__MACOSX"]
    if len(children) == 1 and (children[0] / MANIFEST).is_file():
        return children[0]
    raise CodabenchError(f"{name}: no {MANIFEST} at the top (or in one top-level folder)")


def _zip_limits() -> ZipLimits:
    cap = int(settings.SCANBENCH_MAX_UNZIPPED_BYTES)
    return ZipLimits(max_member_bytes=cap, max_total_bytes=cap)


@contextmanager
def open_codabench_bundle(path: Path) -> Iterator[Path]:
    """Yield the root folder of the bundle at ``path`` (a folder, or a zip extracted safely into
    a temporary folder that is removed afterwards). A single top-level folder is accepted as a
    wrapper. Raises CodabenchError."""
    path = Path(path)
    if path.is_dir():
        yield _find_root(path, path.name)
        return
    if not path.is_file():
        raise CodabenchError(f"{path.name}: no such file or folder")
    if not zipfile.is_zipfile(path):
        raise CodabenchError(f"{path.name}: neither a folder nor a zip archive")
    with tempfile.TemporaryDirectory(prefix="scanbench-codabench-") as tmp:
        try:
            safe_extract(path, Path(tmp), limits=_zip_limits())
        except UnsafeArchiveError as exc:
            raise CodabenchError(f"{path.name}: {exc}") from exc
        yield _find_root(Path(tmp), path.name)


# --------------------------------------------------------------------------- yaml


class _Loader(yaml.SafeLoader):
    """The safe loader, except that timestamps stay strings: a bad date such as 2024-13-45
    then reaches the phase check, which names the phase, instead of failing the whole file."""


def _timestamp_as_text(loader: _Loader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def _load_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if path.is_symlink() or not path.is_file():
        raise CodabenchError(f"{MANIFEST}: not a regular file")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise CodabenchError(f"{MANIFEST}: larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except UnicodeDecodeError as exc:
        raise CodabenchError(f"{MANIFEST}: not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise CodabenchError(f"{MANIFEST}: not valid YAML{line}") from exc
    if not isinstance(data, dict):
        raise CodabenchError(f"{MANIFEST}: expected a mapping at the top")
    version = data.get("version")
    if version is None:
        raise CodabenchError(
            f"{MANIFEST}: no version (Codabench reads that as version 1); "
            "Scanbench reads Codabench version 2 bundles"
        )
    if isinstance(version, bool) or str(version) != "2":
        raise CodabenchError(
            f"{MANIFEST}: version {version} is not supported; "
            "Scanbench reads Codabench version 2 bundles"
        )
    return data


# --------------------------------------------------------------------------- reading


class _Reader:
    """Reads one bundle; ``report`` collects what is not mapped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root.resolve()
        self.report: list[str] = []
        self.unzipped: dict[Path, Path] = {}

    # -- helpers

    def fail(self, problem: str) -> CodabenchError:
        return CodabenchError(f"{MANIFEST}: {problem}")

    def note(self, line: str) -> None:
        self.report.append(f"{MANIFEST}: {line}")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{where}: expected a mapping")
        return value

    def items(self, data: dict[str, Any], key: str, where: str) -> list[Any]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(f"{where}{key}: expected a list")
        return value

    def text(self, data: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(f"{where}: no {key}")
            return ""
        if isinstance(value, bool | dict | list):
            raise self.fail(f"{where}: {key} must be text")
        return str(value)

    def integer(self, value: Any, what: str, *, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{what} {value!r} is not a whole number >= {minimum}")
        return value

    def flag(self, value: Any, what: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"{what} {value!r} is not true or false")
        return value

    def unmapped(
        self, data: dict[str, Any], known: set[str], reasons: dict[str, str], where: str
    ) -> None:
        """One report line for every key of ``data`` that Scanbench does not read."""
        prefix = f"{where}: " if where else ""
        for key, value in data.items():
            if key in known:
                continue
            if key in reasons:
                shown = _short(value)
                self.note(f"{prefix}{key} {shown} is not used: {reasons[key]}")
            else:
                self.note(f"{prefix}unknown key {key!r} ignored")

    def inside(self, value: Any, what: str) -> Path | None:
        """The bundle path ``value`` names, checked: inside the bundle and free of symbolic links
        (on the way and, for a folder, within). None if nothing is there."""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{what}: expected a path in the bundle, got {value!r}")
        rel = Path(value.strip())
        if rel.is_absolute() or ".." in rel.parts:
            raise self.fail(f"{what} {value!r} leaves the bundle")
        current = self.root
        for part in rel.parts:
            current = current / part
            if current.is_symlink():
                raise self.fail(f"{what} {value!r} is a symbolic link; links are not followed")
            if not current.exists():
                return None
        resolved = current.resolve()
        if resolved != self.base and not resolved.is_relative_to(self.base):
            raise self.fail(f"{what} {value!r} leaves the bundle")
        if current.is_dir():
            for p in current.rglob("*"):
                if p.is_symlink():
                    inner = p.relative_to(self.root).as_posix()
                    raise self.fail(f"{what} {value!r} holds a symbolic link ({inner})")
        return current

    def file(self, value: Any, what: str) -> Path:
        """A regular file of the bundle (image, terms, page)."""
        path = self.inside(value, what)
        if path is None:
            raise self.fail(f"{what} {value!r} does not exist in the bundle")
        if not path.is_file():
            raise self.fail(f"{what} {value!r} is not a file")
        return path

    def read_text(self, value: Any, what: str) -> str:
        path = self.file(value, what)
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise self.fail(f"{what} {value!r} is larger than {MAX_TEXT_BYTES} bytes")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} {value!r} is not UTF-8 text") from exc

    def folder(self, value: Any, what: str) -> Path | _DatasetKey:
        """A data field: a folder of the bundle, a zip of the bundle (extracted into a folder
        next to it) or, where nothing is at that path, a Codabench dataset key (a UUID), as
        Codabench itself resolves these fields."""
        path = self.inside(value, what)
        if path is None:
            try:
                uuid.UUID(str(value).strip())
            except ValueError:
                raise self.fail(f"{what} {value!r} does not exist in the bundle") from None
            return _DatasetKey(str(value).strip())
        if path.is_dir():
            return path
        if not zipfile.is_zipfile(path):
            raise self.fail(f"{what} {value!r} is neither a folder nor a zip archive")
        return self.unzip(path, value)

    def unzip(self, path: Path, value: str) -> Path:
        """Extract a nested zip safely into ``<name>.unzipped`` next to it (once per read)."""
        if path in self.unzipped:
            return self.unzipped[path]
        dest = path.with_name(path.name + UNZIPPED_SUFFIX)
        if dest.is_symlink() or dest.is_file():
            raise self.fail(f"{value!r}: {dest.name} is in the way of its extraction")
        if dest.is_dir():
            shutil.rmtree(dest)
        dest.mkdir()
        try:
            safe_extract(path, dest, limits=_zip_limits())
        except UnsafeArchiveError as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise CodabenchError(f"{value}: {exc}") from exc
        self.unzipped[path] = dest
        return dest

    def when(self, value: Any, what: str, *, required: bool) -> datetime | None:
        if value is None or value == "":
            if required:
                raise self.fail(f"{what} is missing ({DATE_HELP})")
            return None
        return _parse_when(value, what)

    # -- sections

    def pages(self, data: dict[str, Any]) -> list[Page]:
        pages = []
        for i, raw in enumerate(self.items(data, "pages", ""), start=1):
            page = self.mapping(raw, f"page {i}")
            title = self.text(page, "title", f"page {i}", required=True)
            where = f"page {title!r}"
            if "file" not in page:
                raise self.fail(f"{where}: no file")
            pages.append(Page(title=title, markdown=self.read_text(page["file"], f"{where}: file")))
            self.unmapped(page, _PAGE_KEYS, {}, where)
        return pages

    def tasks(self, data: dict[str, Any]) -> tuple[dict[int, CTask], dict[int, str]]:
        """The bundle's tasks, and the tasks that only name an existing Codabench task."""
        tasks: dict[int, CTask] = {}
        keyed: dict[int, str] = {}
        raw_tasks = self.items(data, "tasks", "")
        if not raw_tasks:
            raise self.fail("no tasks")
        for i, raw in enumerate(raw_tasks, start=1):
            task = self.mapping(raw, f"task {i}")
            if "index" not in task:
                raise self.fail(f"task {i}: no index")
            index = self.integer(task["index"], f"task {i}: index")
            where = f"task {index}"
            if index in tasks or index in keyed:
                raise self.fail(f"{where}: index used by two tasks")
            if "key" in task:
                # Codabench links an existing task and ignores the other fields.
                keyed[index] = str(task["key"])
                continue
            name = self.text(task, "name", where, required=True)
            where = f"task {index} ({name!r})"
            if "scoring_program" not in task:
                raise self.fail(f"{where}: no scoring_program")
            files: dict[str, Path | None] = {}
            for kind in TASK_FILES:
                if task.get(kind) is None:
                    files[kind] = None
                    continue
                found = self.folder(task[kind], f"{where}: {kind}")
                if isinstance(found, _DatasetKey):
                    raise self.fail(
                        f"{where}: {kind} is the Codabench dataset key {found.key!r}, which is "
                        "not in the bundle; it is needed to score (export the competition with "
                        "its files, or put the folder in the bundle)"
                    )
                files[kind] = found
            tasks[index] = CTask(
                index=index,
                name=name,
                description=self.text(task, "description", where),
                scoring_program=files["scoring_program"],
                ingestion_program=files["ingestion_program"],
                input_data=files["input_data"],
                reference_data=files["reference_data"],
            )
            self.unmapped(task, _TASK_KEYS, _TASK_UNMAPPED, where)
        return tasks, keyed

    def task_list(self, value: Any, what: str, defined: set[int]) -> list[int]:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(f"{what}: tasks must be a list of task indexes")
        indexes = [self.integer(v, f"{what}: task") for v in value]
        for index in indexes:
            if index not in defined:
                raise self.fail(f"{what}: task {index} is not defined in tasks")
        return indexes

    def solutions(self, data: dict[str, Any], defined: set[int]) -> list[Solution]:
        solutions: list[Solution] = []
        seen: set[int] = set()
        for i, raw in enumerate(self.items(data, "solutions", ""), start=1):
            sol = self.mapping(raw, f"solution {i}")
            if "index" not in sol:
                raise self.fail(f"solution {i}: no index")
            index = self.integer(sol["index"], f"solution {i}: index")
            where = f"solution {index}"
            if index in seen:
                raise self.fail(f"{where}: index used by two solutions")
            seen.add(index)
            if "tasks" not in sol:
                raise self.fail(f"{where}: no tasks")
            tasks = self.task_list(sol["tasks"], where, defined)
            self.unmapped(sol, _SOLUTION_KEYS, _SOLUTION_UNMAPPED, where)
            if "key" in sol and "path" not in sol:
                self.note(
                    f"{where} is the existing Codabench solution {str(sol['key'])!r}; "
                    "it is not in the bundle and is left out"
                )
                continue
            if "path" not in sol:
                raise self.fail(f"{where}: no path")
            found = self.folder(sol["path"], f"{where}: path")
            if isinstance(found, _DatasetKey):
                self.note(
                    f"{where}: path is the Codabench dataset key {found.key!r}; "
                    "it is not in the bundle and the solution is left out"
                )
                continue
            solutions.append(Solution(index=index, task_indexes=tasks, path=found))
        return solutions

    def limit(self, phase: dict[str, Any], key: str, default: int, what: str) -> int | None:
        """A submission limit: Codabench's default when absent, no limit when null."""
        if key not in phase:
            return default
        if phase[key] is None:
            return None
        return self.integer(phase[key], f"{what}: {key}")

    def phases(
        self, data: dict[str, Any], tasks: dict[int, CTask], keyed: dict[int, str]
    ) -> list[CPhase]:
        raw_phases = [
            self.mapping(p, f"phase {i}")
            for i, p in enumerate(self.items(data, "phases", ""), start=1)
        ]
        if not raw_phases:
            raise self.fail("no phases")
        # Codabench orders phases by their index (declaration order where none is given).
        for i, phase in enumerate(raw_phases, start=1):
            if "index" in phase:
                self.integer(phase["index"], f"phase {i}: index")
        ordered = sorted(raw_phases, key=lambda p: p.get("index", 0))
        defined = set(tasks) | set(keyed)
        phases: list[CPhase] = []
        for position, phase in enumerate(ordered):
            name = self.text(phase, "name", f"phase {position + 1}", required=True)
            where = f"phase {name!r}"
            start = self.when(phase.get("start"), f"{where}: start", required=True)
            assert start is not None
            end = self.when(phase.get("end"), f"{where}: end", required=False)
            if end is not None and end <= start:
                raise self.fail(f"{where}: end {_iso(end)} is not after start {_iso(start)}")
            if "tasks" not in phase:
                raise self.fail(f"{where}: no tasks (a phase needs at least one)")
            task_indexes = self.task_list(phase["tasks"], where, defined)
            for index in task_indexes:
                if index in keyed:
                    raise self.fail(
                        f"{where}: task {index} is the existing Codabench task "
                        f"{keyed[index]!r}; its programs and data are not in the bundle "
                        "(export the competition with its files, not keys)"
                    )
            if len(task_indexes) > 1:
                self.note(
                    f"{where}: {len(task_indexes)} tasks; Scanbench scores a phase with its "
                    f"first task (task {task_indexes[0]})"
                )
            limit_s = phase.get("execution_time_limit")
            if limit_s:  # Codabench keeps its default for an absent, null or 0 limit
                limit_s = self.integer(limit_s, f"{where}: execution_time_limit", minimum=1)
            else:
                limit_s = DEFAULT_EXECUTION_TIME_LIMIT_S
            downloads: dict[str, Path | None] = {}
            for kind in ("starting_kit", "public_data"):
                downloads[kind] = None
                if phase.get(kind) is None:
                    continue
                found = self.folder(phase[kind], f"{where}: {kind}")
                if isinstance(found, _DatasetKey):
                    self.note(
                        f"{where}: {kind} is the Codabench dataset key {found.key!r}; "
                        "it is not in the bundle and is left out"
                    )
                else:
                    downloads[kind] = found
            phases.append(
                CPhase(
                    index=position,
                    name=name,
                    description=self.text(phase, "description", where),
                    start=start,
                    end=end,
                    max_submissions_per_day=self.limit(
                        phase, "max_submissions_per_day", DEFAULT_MAX_SUBMISSIONS_PER_DAY, where
                    ),
                    max_submissions=self.limit(
                        phase, "max_submissions", DEFAULT_MAX_SUBMISSIONS, where
                    ),
                    execution_time_limit_s=limit_s,
                    task_indexes=task_indexes,
                    starting_kit=downloads["starting_kit"],
                    public_data=downloads["public_data"],
                )
            )
            self.unmapped(phase, _PHASE_KEYS, _PHASE_UNMAPPED, where)
        # Codabench refuses phases that overlap, and an open-ended phase before another.
        for before, after in itertools.pairwise(phases):
            if before.end is None:
                raise self.fail(
                    f"phase {before.name!r} has no end but phase {after.name!r} follows it"
                )
            if after.start <= before.end:
                raise self.fail(
                    f"phase {after.name!r} starts {_iso(after.start)}, not after phase "
                    f"{before.name!r} ends {_iso(before.end)}"
                )
        return phases

    def leaderboards(self, data: dict[str, Any]) -> list[Leaderboard]:
        if "leaderboards" not in data:
            hint = " (found 'leaderboard'; Codabench reads 'leaderboards')"
            raise self.fail("no leaderboards" + (hint if "leaderboard" in data else ""))
        boards: list[Leaderboard] = []
        for i, raw in enumerate(self.items(data, "leaderboards", ""), start=1):
            board = self.mapping(raw, f"leaderboard {i}")
            title = self.text(board, "title", f"leaderboard {i}", required=True)
            where = f"leaderboard {title!r}"
            key = self.text(board, "key", where, required=True)
            columns: list[Column] = []
            for j, raw_col in enumerate(self.items(board, "columns", f"{where}: "), start=1):
                column = self.column(self.mapping(raw_col, f"{where}: column {j}"), where, j)
                if column is not None:
                    columns.append(column)
            columns.sort(key=lambda c: c.index)
            keys = [c.key for c in columns]
            for ckey in keys:
                if keys.count(ckey) > 1:
                    raise self.fail(f"{where}: column key {ckey!r} is used twice")
            self.unmapped(board, _LEADERBOARD_KEYS, _LEADERBOARD_UNMAPPED, where)
            if i > 1:
                self.note(
                    f"{where} is not used: Codabench and Scanbench score every phase on the "
                    "first leaderboard"
                )
            boards.append(Leaderboard(title=title, key=key, columns=columns))
        if not boards:
            raise self.fail("no leaderboards")
        if not boards[0].columns:
            raise self.fail(f"leaderboard {boards[0].title!r}: no column Scanbench can show")
        return boards

    def column(self, col: dict[str, Any], board: str, j: int) -> Column | None:
        key = self.text(col, "key", f"{board}: column {j}", required=True)
        where = f"{board}: column {key!r}"
        title = self.text(col, "title", where, required=True)
        if "index" not in col:
            raise self.fail(f"{where}: no index")
        index = self.integer(col["index"], f"{where}: index")
        sorting = col.get("sorting") or DEFAULT_SORTING
        if sorting not in ("desc", "asc"):
            raise self.fail(f"{where}: sorting {sorting!r} is not 'desc' or 'asc'")
        precision = col.get("precision")
        precision = (
            DEFAULT_PRECISION
            if precision is None
            else self.integer(precision, f"{where}: precision")
        )
        hidden = col.get("hidden")
        hidden = False if hidden is None else self.flag(hidden, f"{where}: hidden")
        self.unmapped(col, _COLUMN_KEYS, {}, where)
        computation = col.get("computation")
        if computation:
            self.note(
                f"leaderboard column {key!r} uses computation {str(computation)!r}: "
                "not supported, the column is dropped"
            )
            return None
        if col.get("computation_indexes"):
            self.note(f"{where}: computation_indexes without a computation ignored")
        return Column(
            key=key, title=title, index=index, sorting=sorting, precision=precision, hidden=hidden
        )


def _short(value: Any) -> str:
    """A value as a report line shows it: short, on one line."""
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True)
    text = " ".join(str(text).split()).removesuffix(" ...")
    if isinstance(value, str):
        text = repr(text)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_when(value: Any, what: str) -> datetime:
    """A Codabench start or end: a date (midnight UTC) or a date and time (UTC unless it gives
    its offset). Codabench reads these with dateutil and takes naive times as UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            if len(text) < 10:
                raise ValueError(text)
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise CodabenchError(
                f"{MANIFEST}: {what} {str(value)!r} is not a date ({DATE_HELP})"
            ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def read_competition(root: Path) -> Competition:
    """Read and check ``competition.yaml`` in the bundle folder ``root`` (as yielded by
    :func:`open_codabench_bundle`). Nested zips the file names are extracted into a folder next
    to each (``<name>.zip.unzipped``), so ``root`` must be writable. Raises CodabenchError."""
    root = Path(root)
    data = _load_manifest(root)
    reader = _Reader(root)
    title = reader.text(data, "title", "top level", required=True)
    image = reader.file(data["image"], "image") if data.get("image") is not None else None
    terms = reader.read_text(data["terms"], "terms") if data.get("terms") is not None else ""
    pages = reader.pages(data)
    tasks, keyed = reader.tasks(data)
    solutions = reader.solutions(data, set(tasks) | set(keyed))
    phases = reader.phases(data, tasks, keyed)
    leaderboards = reader.leaderboards(data)
    used = {index for phase in phases for index in phase.task_indexes}
    for index in sorted(set(tasks) | set(keyed)):
        if index not in used:
            reader.note(f"task {index} is used by no phase: ignored")
    reader.unmapped(data, _TOP_KEYS, _TOP_UNMAPPED, "")
    return Competition(
        title=title,
        description=reader.text(data, "description", "top level"),
        image=image,
        terms=terms,
        pages=pages,
        phases=phases,
        tasks=tasks,
        solutions=solutions,
        leaderboards=leaderboards,
        report=reader.report,
    )


def describe(comp: Competition) -> str:
    """A human-readable summary of a read bundle, for a console or a command's output."""
    lines = [comp.title]
    if comp.description:
        lines.append(f"  {comp.description}")
    lines.append("Phases:")
    for phase in comp.phases:
        end = _iso(phase.end) if phase.end else "open-ended"
        limits = ", ".join(
            [
                f"{_or_none(phase.max_submissions_per_day)} per day",
                f"{_or_none(phase.max_submissions)} in total",
                f"{_or_none(phase.execution_time_limit_s)} s per run",
            ]
        )
        tasks = ", ".join(str(i) for i in phase.task_indexes)
        lines.append(f"  {phase.index}. {phase.name}: {_iso(phase.start)} to {end} UTC")
        lines.append(f"     limits: {limits}; tasks: {tasks}")
    lines.append("Tasks:")
    for task in comp.tasks.values():
        parts = [k for k in TASK_FILES if getattr(task, k) is not None]
        lines.append(f"  {task.index}. {task.name}: {', '.join(parts)}")
    for board in comp.leaderboards[:1]:
        lines.append(f"Leaderboard {board.title} ({board.key}):")
        for col in board.columns:
            better = "higher" if col.sorting == "desc" else "lower"
            hidden = ", hidden" if col.hidden else ""
            lines.append(
                f"  {col.key} ({col.title}): {better} is better, {col.precision} decimals{hidden}"
            )
    if comp.solutions:
        lines.append(f"Solutions: {len(comp.solutions)}")
    if comp.report:
        lines.append("Not mapped:")
        lines.extend(f"  {line}" for line in comp.report)
    return "\n".join(lines)


def _or_none(value: int | None) -> str:
    return "no limit" if value is None else str(value)
