"""Organizers' Codabench/CodaLab programs (scoring and ingestion), run in the sandbox.

A *program* is a folder with ``metadata.yaml`` (Codabench) or ``metadata`` (CodaLab) whose
``command`` key is a command line. Codabench runs it in a container with this layout, working
directory ``/app/program``; Scanbench runs it in the evaluator base image under the same lock-down
as participant code (no network, read-only root, uid 65534, time/memory/pid limits), with the
paths moved to where the sandbox allows them:

==========================  =========================  =============================================
Codabench path              CodaLab placeholder        Scanbench sandbox path
==========================  =========================  =============================================
``/app/program``            ``$program``,              ``/opt/program`` (read-only, the working
                            ``$ingestion_program``     directory)
``/app/input``              ``$input`` (scoring)       ``/opt/input``
``/app/input/ref``          ``$hidden``                ``/opt/input/ref`` (scoring runs only)
``/app/input/res``          ``$predictions`` (scoring) ``/opt/input/res`` (scoring runs only)
``/app/output``             ``$output``, ``$tmp``,     ``/output`` (writable, validated afterwards)
                            ``$predictions`` (ingest.)
``/app/ingested_program``   ``$submission_program``    ``/opt/ingested_program`` (ingestion only)
``/app/input_data``         ``$input`` (ingestion)     ``/input`` (ingestion only)
``/app/shared``             ``$shared``                ``/tmp/shared`` (created; private to the run)
==========================  =========================  =============================================

``$input`` means ``/app/input`` in a scoring run and ``/app/input_data`` in an ingestion run, as in
Codabench's compute worker; ``$tmp`` is ``/app/output`` there too. A leading ``python`` becomes
``python3`` (the evaluator image is Debian's, which has no ``python``), and inside the shell
``python`` is also a function calling ``python3``. The image has ``/bin/sh`` (dash, Essential in
Debian), so the command runs with ``/bin/sh -c`` after ``mkdir -p /tmp/shared`` and
``cd /opt/program``; an image without it gets the command split with :func:`shlex.split` and started
by a small ``python3`` trampoline that does the same two steps.

Participant code and reference data never share a run: :func:`ingestion_run` mounts the
participant's code and the hidden inputs but never the reference; :func:`scoring_run` is a separate
run that sees the reference and the (validated) results, never the participant's code.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from .base import SandboxBackend, make_scratch_dir
from .spec import Limits, Mount, OutputPolicy, RunResult, RunSpec, RunStatus

__all__ = [
    "Program",
    "ProgramError",
    "ProgramKind",
    "ProgramScores",
    "ingestion_run",
    "parse_per_case_csv",
    "parse_scores_json",
    "parse_scores_txt",
    "program_argv",
    "program_read",
    "scoring_run",
    "translate_command",
]

ProgramKind = Literal["scoring", "ingestion"]

METADATA_NAMES = ("metadata.yaml", "metadata")
MAX_METADATA_BYTES = 64 * 1024
MAX_SCORES_BYTES = 1024 * 1024
MAX_PER_CASE_BYTES = 64 * 1024 * 1024
MAX_KEY_CHARS = 64
MAX_SCORES = 1000

PROGRAM_DIR = "/opt/program"
INPUT_DIR = "/opt/input"
REFERENCE_DIR = "/opt/input/ref"
RESULTS_DIR = "/opt/input/res"
INGESTED_DIR = "/opt/ingested_program"
SHARED_DIR = "/tmp/shared"  # noqa: S108 -- a path inside the sandbox's private tmpfs

# Codabench's absolute paths, inside its containers, and where they are in a Scanbench run.
_PATHS: Mapping[str, str] = {
    "/app/input_data": "/input",
    "/app/ingested_program": INGESTED_DIR,
    "/app/program": PROGRAM_DIR,
    "/app/output": "/output",
    "/app/shared": SHARED_DIR,
    "/app/input": INPUT_DIR,  # also /app/input/ref and /app/input/res, by prefix
}
# CodaLab's placeholders, by kind of run (as Codabench's compute worker replaces them).
_PLACEHOLDERS: Mapping[ProgramKind, Mapping[str, str]] = {
    "scoring": {
        "input": INPUT_DIR,
        "predictions": RESULTS_DIR,
    },
    "ingestion": {
        "input": "/input",
        "predictions": "/output",
    },
}
_COMMON_PLACEHOLDERS: Mapping[str, str] = {
    "program": PROGRAM_DIR,
    "ingestion_program": PROGRAM_DIR,
    "submission_program": INGESTED_DIR,
    "output": "/output",
    "tmp": "/output",
    "hidden": REFERENCE_DIR,
    "shared": SHARED_DIR,
}
_PATH_RE = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(p) for p in _PATHS) + r")(?![\w.-])")
_PLACEHOLDER_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LEADING_PYTHON = re.compile(r"^(\s*)python(?=\s|$)")
_SCORE_NAMES = ("scores.json", "scores.txt")
_PER_CASE = "scores_per_case.csv"
_TRAMPOLINE = (
    "import os, sys; os.makedirs(sys.argv[1], exist_ok=True); os.chdir(sys.argv[2]); "
    "os.execvp(sys.argv[3], sys.argv[3:])"
)


class ProgramError(ValueError):
    """An organizer's program or what it wrote is unusable. The message names the file and the
    problem; ``logs`` is the run's bounded log tail (for organizers), when there was a run."""

    def __init__(self, message: str, *, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs


@dataclass(frozen=True)
class Program:
    """An organizer's program folder and the command of its metadata (untranslated)."""

    folder: Path
    command: str


@dataclass(frozen=True)
class ProgramScores:
    """What a scoring program wrote: named scores, optional per-case scores, and the run."""

    scores: dict[str, float]
    per_case: dict[str, dict[str, float]] | None
    run: RunResult


def program_read(folder: Path) -> Program:
    """The program in ``folder``: ``metadata.yaml`` (else ``metadata``) read with
    ``yaml.safe_load``, its ``command`` a non-empty string. Raises :class:`ProgramError`.

    Refuses symbolic links anywhere in the folder (they would resolve inside the sandbox).
    """
    if folder.is_symlink() or not folder.is_dir():
        raise ProgramError(f"{folder.name}: not a folder")
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            if os.path.islink(os.path.join(dirpath, name)):
                shown = os.path.relpath(os.path.join(dirpath, name), folder.parent)
                raise ProgramError(f"{shown}: symbolic links are not allowed in a program")
    for name in METADATA_NAMES:
        path = folder / name
        if path.is_file():
            break
    else:
        raise ProgramError(f"{folder.name}: no metadata.yaml or metadata file")
    shown = f"{folder.name}/{name}"
    with path.open("rb") as handle:
        raw = handle.read(MAX_METADATA_BYTES + 1)
    if len(raw) > MAX_METADATA_BYTES:
        raise ProgramError(f"{shown}: larger than {MAX_METADATA_BYTES // 1024} KiB")
    try:
        metadata = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProgramError(f"{shown}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ProgramError(f"{shown}: not valid YAML ({_one_line(exc)})") from None
    if not isinstance(metadata, dict):
        raise ProgramError(f"{shown}: not a YAML mapping of keys to values")
    if "command" not in metadata:
        raise ProgramError(f"{shown}: no 'command' key")
    command = metadata["command"]
    if not isinstance(command, str) or not command.strip():
        raise ProgramError(f"{shown}: 'command' must be a non-empty string")
    if "\0" in command:
        raise ProgramError(f"{shown}: 'command' contains a NUL character")
    return Program(folder=folder, command=command.strip())


def translate_command(command: str, *, kind: ProgramKind) -> str:
    """``command`` with Codabench's ``/app/...`` paths and CodaLab's ``$placeholders`` moved to
    the Scanbench sandbox layout (see the module docstring), and a leading ``python`` made
    ``python3``. Unknown ``$names`` are left for the shell."""
    placeholders = {**_COMMON_PLACEHOLDERS, **_PLACEHOLDERS[kind]}

    def placeholder(match: re.Match[str]) -> str:
        return placeholders.get(match.group(1), match.group(0))

    translated = _PLACEHOLDER_RE.sub(placeholder, command)
    translated = _PATH_RE.sub(lambda m: _PATHS[m.group(1)], translated)
    return _LEADING_PYTHON.sub(r"\1python3", translated)


def program_argv(command: str, *, kind: ProgramKind, shell: bool = True) -> tuple[str, ...]:
    """The sandbox command for a program's metadata ``command``: translated, run from
    ``/opt/program`` with ``/tmp/shared`` created; through ``/bin/sh -c`` when ``shell``."""
    translated = translate_command(command, kind=kind)
    if shell:
        script = (
            f"mkdir -p {SHARED_DIR}\n"
            f"cd {PROGRAM_DIR} || exit 126\n"
            'python() { python3 "$@"; }\n'
            f"{translated}\n"
        )
        return ("/bin/sh", "-c", script)
    try:
        words = shlex.split(translated)
    except ValueError as exc:
        raise ProgramError(f"metadata 'command': cannot be split into words ({exc})") from None
    if not words:
        raise ProgramError("metadata 'command': empty after translation")
    return ("python3", "-I", "-c", _TRAMPOLINE, SHARED_DIR, PROGRAM_DIR, *words)


def _image_has_shell(backend: SandboxBackend) -> bool:
    """Whether the evaluator image the backend runs has ``/bin/sh``. The bubblewrap root is looked
    at; the Docker image is imported from the same recipe (debootstrap minbase, with dash)."""
    rootfs = getattr(backend, "rootfs", None)
    if isinstance(rootfs, Path) and rootfs.is_dir():
        return (rootfs / "bin" / "sh").exists() or (rootfs / "usr" / "bin" / "sh").exists()
    return True


def scoring_run(
    *,
    program: Program,
    reference_dir: Path,
    results_dir: Path,
    output_dir: Path,
    limits: Limits,
    backend: SandboxBackend,
    label: str,
) -> ProgramScores:
    """Run the organizer's scoring ``program`` on ``results_dir`` against ``reference_dir``.

    One sandboxed run in the evaluator image: the program at ``/opt/program``, the reference at
    ``/opt/input/ref``, the results at ``/opt/input/res`` (all read-only), an empty ``/input``;
    ``/output`` may hold only ``scores.json``, ``scores.txt``, ``scores_per_case.csv`` and
    ``detailed_results.html``, copied to ``output_dir`` (empty or absent). Raises
    :class:`ProgramError` (with the run's ``logs``) when the run did not succeed or what it wrote
    cannot be read as scores. ``results_dir`` must never be participant *code*: only outputs.
    """
    scratch = make_scratch_dir("scanbench-program-")
    try:
        empty = scratch / "empty"
        empty.mkdir(mode=0o755)
        spec = RunSpec(
            input_dir=empty,
            output_dir=output_dir,
            image=None,
            command=program_argv(program.command, kind="scoring", shell=_image_has_shell(backend)),
            environment={"PYTHONUNBUFFERED": "1"},
            mounts=(
                Mount(source=program.folder, target=PROGRAM_DIR),
                Mount(source=reference_dir, target=REFERENCE_DIR),
                Mount(source=results_dir, target=RESULTS_DIR),
            ),
            limits=limits,
            output_policy=OutputPolicy.program_scores(),
            label=label,
        )
        result = backend.run(spec)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not result.ok:
        nothing_written = not result.detail and result.output_bytes == 0
        if result.status is RunStatus.INVALID_OUTPUT and nothing_written:
            raise ProgramError(
                "the scoring program wrote no scores.json or scores.txt", logs=result.logs_tail
            )
        raise ProgramError(
            f"the scoring program failed ({result.status.value}): {result.participant_message}",
            logs=result.logs_tail,
        )
    try:
        scores = _read_scores(output_dir)
        per_case = None
        if (output_dir / _PER_CASE).is_file():
            per_case = parse_per_case_csv(_read_capped(output_dir / _PER_CASE, MAX_PER_CASE_BYTES))
    except ProgramError as exc:
        raise ProgramError(str(exc), logs=result.logs_tail) from None
    return ProgramScores(scores=scores, per_case=per_case, run=result)


def ingestion_run(
    *,
    program: Program,
    submission_dir: Path,
    input_dir: Path,
    output_dir: Path,
    limits: Limits,
    backend: SandboxBackend,
    label: str,
) -> RunResult:
    """Run the organizer's ingestion ``program``, which runs the participant's code.

    The program at ``/opt/program``, the participant's code (``submission_dir``) at
    ``/opt/ingested_program``, the hidden inputs (``input_dir``) at ``/input``, all read-only;
    ``/output`` may hold any plain file names (depth 2, within the limits), copied to
    ``output_dir``. The reference is never mounted here: score the output with a separate
    :func:`scoring_run`. Never raises for the run's misbehaviour: that is the result's status.
    """
    spec = RunSpec(
        input_dir=input_dir,
        output_dir=output_dir,
        image=None,
        command=program_argv(program.command, kind="ingestion", shell=_image_has_shell(backend)),
        environment={"PYTHONUNBUFFERED": "1"},
        mounts=(
            Mount(source=program.folder, target=PROGRAM_DIR),
            Mount(source=submission_dir, target=INGESTED_DIR),
        ),
        limits=limits,
        output_policy=OutputPolicy.any_files(),
        label=label,
    )
    return backend.run(spec)


def _read_capped(path: Path, limit: int) -> str:
    with path.open("rb") as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise ProgramError(f"{path.name}: larger than {limit // 1024} KiB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ProgramError(f"{path.name}: not UTF-8 text") from None


def _read_scores(output_dir: Path) -> dict[str, float]:
    if (output_dir / "scores.json").is_file():
        return parse_scores_json(_read_capped(output_dir / "scores.json", MAX_SCORES_BYTES))
    if (output_dir / "scores.txt").is_file():
        return parse_scores_txt(_read_capped(output_dir / "scores.txt", MAX_SCORES_BYTES))
    raise ProgramError("the scoring program wrote no scores.json or scores.txt")


def parse_scores_json(text: str) -> dict[str, float]:
    """Codabench's ``scores.json``: a flat JSON object of name -> finite number."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProgramError(f"scores.json: not valid JSON ({_one_line(exc)})") from None
    return _check_scores("scores.json", data)


def parse_scores_txt(text: str) -> dict[str, float]:
    """CodaLab's ``scores.txt``: ``name: value`` lines, read with ``yaml.safe_load``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProgramError(f"scores.txt: not 'name: value' lines ({_one_line(exc)})") from None
    return _check_scores("scores.txt", data)


def _check_scores(name: str, data: object) -> dict[str, float]:
    if not isinstance(data, dict):
        raise ProgramError(f"{name}: not a mapping of score names to numbers")
    if not data:
        raise ProgramError(f"{name}: no scores")
    if len(data) > MAX_SCORES:
        raise ProgramError(f"{name}: more than {MAX_SCORES} scores")
    scores: dict[str, float] = {}
    for key, value in data.items():
        _check_key(name, key)
        scores[key] = _number(name, repr(key), value)
    return scores


def _check_key(name: str, key: object) -> None:
    if not isinstance(key, str):
        raise ProgramError(f"{name}: the score name {key!r} is not a string")
    if not key.strip() or len(key) > MAX_KEY_CHARS:
        raise ProgramError(
            f"{name}: the score name {key[:80]!r} must be 1 to {MAX_KEY_CHARS} characters"
        )


def _number(name: str, what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProgramError(f"{name}: {what} is not a number ({_shown(value)})")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ProgramError(f"{name}: {what} is not a finite number ({_shown(value)})")
    return number


def parse_per_case_csv(text: str) -> dict[str, dict[str, float]]:
    """``scores_per_case.csv``: a ``case_id`` column and numeric columns, one row per case."""
    name = _PER_CASE
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise ProgramError(f"{name}: empty")
        header = [column.strip() for column in header]
        if "case_id" not in header:
            raise ProgramError(f"{name}: no 'case_id' column")
        if len(set(header)) != len(header):
            raise ProgramError(f"{name}: a column name appears twice")
        metrics = [column for column in header if column != "case_id"]
        if not metrics:
            raise ProgramError(f"{name}: no score columns beside 'case_id'")
        for column in metrics:
            _check_key(name, column)
        id_at = header.index("case_id")
        per_case: dict[str, dict[str, float]] = {}
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise ProgramError(f"{name}: line {line} has {len(row)} fields, not {len(header)}")
            case_id = row[id_at].strip()
            if not case_id:
                raise ProgramError(f"{name}: line {line} has an empty case_id")
            if case_id in per_case:
                raise ProgramError(f"{name}: case {case_id[:80]!r} appears twice")
            values: dict[str, float] = {}
            for column, cell in zip(header, row, strict=True):
                if column == "case_id":
                    continue
                what = f"line {line}, column {column!r}"
                try:
                    number = float(cell.strip())
                except ValueError:
                    raise ProgramError(f"{name}: {what} is not a number ({_shown(cell)})") from None
                values[column] = _number(name, what, number)
            per_case[case_id] = values
    except csv.Error as exc:
        raise ProgramError(f"{name}: not valid CSV ({_one_line(exc)})") from None
    if not per_case:
        raise ProgramError(f"{name}: no cases")
    return per_case


def _shown(value: object) -> str:
    """``value`` for a message: numbers as their text in quotes (``'inf'``), others as ``repr``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    text = repr(str(value)) if number else repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]
