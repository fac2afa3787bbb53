"""Phases scored by the organizers' own program, and code submissions run by their ingestion
program (Codabench-compatible; docs/codabench.md, docs/sandbox.md "Organizer programs").

Both run in the sandbox under the lock-down of participant code. The participant's code and the
reference data never share a run: the ingestion run (gpu queue) sees the participant's zip and
the phase's input data; the scoring run (cpu queue) sees the scoring program, the reference
data and the results, never the participant's code.
"""

from __future__ import annotations

import logging
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

from django.conf import settings

from challenges.models import Evaluation, Phase
from challenges.services.evaluations import evaluation_fail, evaluation_finish, failure_logs
from challenges.services.storage import private_storage, storage_local_dir
from evaluator.readers.safe_zip import UnsafeArchiveError, ZipLimits, safe_extract
from evaluator.sandbox import (
    Limits,
    NoSandbox,
    ProgramError,
    RunResult,
    get_backend,
    ingestion_run,
    program_read,
    scoring_run,
)
from evaluator.sandbox.base import make_scratch_dir, make_world_readable_copy

logger = logging.getLogger(__name__)
MiB = 1024 * 1024

#: the only part of a program-scored board: a program scores the whole test data at once
PROGRAM_PART = "public"


def private_path(rel: str) -> Path:
    """A local path of the private folder ``rel`` (a worker-cached copy on S3)."""
    return storage_local_dir(storage=private_storage(), prefix=rel)


def _limits(phase: Phase) -> Limits:
    return Limits(time_limit_s=float(phase.time_limit_s), memory_bytes=phase.memory_limit_mb * MiB)


def _zip_limits() -> ZipLimits:
    cap = settings.SCANBENCH_MAX_UNZIPPED_BYTES
    return ZipLimits(max_member_bytes=cap, max_total_bytes=cap)


def results_folder(source: Path, *, shown: str, into: Path) -> Path:
    """The participant's results as a folder for the scoring program (its ``res``): a folder
    (what an ingestion run wrote) as it is, a zip safely extracted, any other file alone in a
    folder under the name the participant gave it. Raises ValueError naming the file."""
    if source.is_dir():
        return source
    into.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(source):
        try:
            safe_extract(source, into, limits=_zip_limits())
        except UnsafeArchiveError as exc:
            raise ValueError(f"{shown}: {exc}") from exc
        return into
    name = Path(shown).name or "predictions"
    shutil.copyfile(source, into / name)
    return into


def _board_aggregates(scores: dict[str, float], phase: Phase) -> dict[str, float | None]:
    """The program's scores, with every column the board shows (None where it wrote none)."""
    keys = [str(c["key"]) for c in phase.leaderboard_columns or []] or list(scores)
    out: dict[str, float | None] = {k: scores.get(k) for k in keys}
    out.update(scores)
    return out


def evaluation_score_by_program(
    *, evaluation: Evaluation, phase: Phase, predictions: Path, shown: str
) -> None:
    """Score ``predictions`` with the phase's scoring program in the sandbox; store its scores
    as the evaluation's only result (part ``public``), with its per-case output when it wrote
    ``scores_per_case.csv``. A program that fails, writes no scores or a score that is not a
    finite number fails the evaluation with that reason (the program's log tail for organizers
    only)."""
    backend = get_backend(settings.SCANBENCH_SANDBOX_BACKEND)
    if isinstance(backend, NoSandbox):
        evaluation_fail(
            evaluation_id=evaluation.pk,
            message="This phase is scored by the organizers' program, which needs a sandbox; "
            "this installation has none. This does not count against your limits.",
            logs="; ".join(backend.check()),
            platform_fault=True,
        )
        return
    started = time.perf_counter()
    scratch = make_scratch_dir("scanbench-scoring-")
    out = (
        Path(settings.VAR_DIR)
        / "evaluations"
        / str(evaluation.pk)
        / f"scoring-{evaluation.stage_deliveries}"
    )
    shutil.rmtree(out, ignore_errors=True)
    try:
        try:
            results = results_folder(predictions, shown=shown, into=scratch / "res-src")
        except ValueError as exc:
            evaluation_fail(evaluation_id=evaluation.pk, message=f"Invalid submission: {exc}")
            return
        program = program_read(
            make_world_readable_copy(private_path(phase.scoring_program), scratch)
        )
        reference = make_world_readable_copy(private_path(phase.reference_data), scratch)
        scored = scoring_run(
            program=program,
            reference_dir=reference,
            results_dir=make_world_readable_copy(results, scratch),
            output_dir=out,
            limits=_limits(phase),
            backend=backend,
            label=f"evaluation-{evaluation.pk}-scoring",
        )
    except ProgramError as exc:
        evaluation_fail(
            evaluation_id=evaluation.pk,
            message=f"Scoring program: {exc}",
            logs=exc.logs,
        )
        return
    except Exception as exc:
        logger.exception("scoring program of %s could not run", evaluation)
        evaluation_fail(
            evaluation_id=evaluation.pk,
            message="The platform could not run the scoring program; this does not count "
            "against your limits.",
            logs=f"{type(exc).__name__}: {exc}\n{failure_logs()}",
            platform_fault=True,
        )
        return
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report: dict[str, Any] = {
        "aggregates": _board_aggregates(scored.scores, phase),
        "cases": scored.per_case or {},
        "meta": {
            "scored_by": "program",
            "n_cases": len(scored.per_case or {}),
            "backend": scored.run.backend,
        },
    }
    evaluation_finish(
        evaluation_id=evaluation.pk,
        results={PROGRAM_PART: report},
        timings={"scoring_s": time.perf_counter() - started, "program_s": scored.run.wall_s},
    )


class CodeSubmissionInvalid(ValueError):
    """A code submission that is not a zip, or not a safe one."""


def code_run(*, evaluation: Evaluation, phase: Phase, code_zip: Path, out: Path) -> RunResult:
    """Run a participant's code (a zip) with the phase's ingestion program on its input data,
    in the sandbox; what it writes to ``out`` becomes the results the scoring program reads.
    Raises CodeSubmissionInvalid (not a zip, or an unsafe one) and ProgramError (the ingestion
    program's folder)."""
    backend = get_backend(settings.SCANBENCH_SANDBOX_BACKEND)
    scratch = make_scratch_dir("scanbench-code-")
    try:
        code = scratch / "code"
        code.mkdir()
        if not zipfile.is_zipfile(code_zip):
            raise CodeSubmissionInvalid(
                "a code submission is a zip of the code the ingestion program runs"
            )
        try:
            safe_extract(code_zip, code, limits=_zip_limits())
        except UnsafeArchiveError as exc:
            raise CodeSubmissionInvalid(str(exc)) from exc
        program = program_read(
            make_world_readable_copy(private_path(phase.ingestion_program), scratch)
        )
        inputs = make_world_readable_copy(private_path(phase.input_data), scratch)
        return ingestion_run(
            program=program,
            submission_dir=make_world_readable_copy(code, scratch),
            input_dir=inputs,
            output_dir=out,
            limits=Limits(
                time_limit_s=float(phase.time_limit_s),
                memory_bytes=phase.memory_limit_mb * MiB,
                gpus=phase.gpus,
            ),
            backend=backend,
            label=f"evaluation-{evaluation.pk}",
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
