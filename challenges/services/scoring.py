"""Scoring an evaluation with the trusted evaluator: public and private parts, separately."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from challenges.models import EvaluationState, Phase, TaskType
from challenges.services.evaluations import (
    evaluation_begin,
    evaluation_fail,
    evaluation_finish,
    failure_logs,
)
from challenges.services.references import ReferenceError_, reference_for_phase
from challenges.services.storage import storage_local_path
from evaluator import InvalidReference, InvalidSubmission, ScoreOptions, score
from evaluator.readers import kept
from evaluator.readers.isolated import DecodeLimits
from evaluator.readers.safe_zip import ZipLimits

logger = logging.getLogger(__name__)


def decode_limits() -> DecodeLimits:
    """Limits of the process that decodes participants' files, from the settings."""
    unzipped = settings.SCANBENCH_MAX_UNZIPPED_BYTES
    return DecodeLimits(
        memory_bytes=settings.SCANBENCH_DECODE_MEMORY_BYTES,
        cpu_seconds=settings.SCANBENCH_DECODE_CPU_S,
        wall_seconds=settings.SCANBENCH_DECODE_WALL_S,
        hidden=tuple(settings.SCANBENCH_DECODE_HIDDEN),
        zip_limits=ZipLimits(max_member_bytes=unzipped, max_total_bytes=unzipped),
        table_bytes=settings.SCANBENCH_MAX_TABLE_BYTES,
    )


def _options(phase: Phase, case_ids: list[str], predictions_name: str) -> ScoreOptions:
    classes = phase.challenge.classes or []
    labels = (
        list(range(1, len(classes) + 1))
        if phase.challenge.task_type == TaskType.SEGMENTATION and classes
        else None
    )
    return ScoreOptions(
        threshold=phase.decision_threshold,
        nsd_tolerance=phase.nsd_tolerance_mm,
        bootstrap=settings.SCANBENCH_LIVE_BOOTSTRAP,
        seed=phase.pk,
        metrics=list(phase.metrics) or None,
        case_ids=case_ids,
        labels=labels,
        # docs/metrics.md: a missing case gets the worst value before any mean, and is counted.
        on_missing="worst",
        # Participants' bytes are decoded in a locked-down child, bounded (docs/security.md).
        isolation=decode_limits(),
        predictions_name=predictions_name,
        limits=ZipLimits(
            max_member_bytes=settings.SCANBENCH_MAX_UNZIPPED_BYTES,
            max_total_bytes=settings.SCANBENCH_MAX_UNZIPPED_BYTES,
        ),
    )


def evaluation_score(*, evaluation_id: int) -> None:
    """Score the evaluation's predictions (the uploaded file, or what a sandbox run wrote).

    Idempotent: a second delivery after success does nothing; a delivery after a crash in the
    middle scores again and the first finish wins."""
    evaluation = evaluation_begin(evaluation_id=evaluation_id, stage=EvaluationState.SCORING)
    if evaluation is None:
        return
    submission = evaluation.submission
    phase = submission.phase
    predictions = (
        Path(evaluation.predictions)
        if evaluation.predictions
        else storage_local_path(storage=submission.file.storage, name=str(submission.file.name))
    )
    # Messages name the participant's own file (the stored name is the server's).
    shown = (
        "predictions"
        if evaluation.predictions
        else (getattr(submission, "original_name", "") or predictions.name)
    )
    if phase.scoring_program:
        from challenges.services.programs import evaluation_score_by_program

        evaluation_score_by_program(
            evaluation=evaluation, phase=phase, predictions=predictions, shown=shown
        )
        return
    started = time.perf_counter()
    kept.set_budget(settings.SCANBENCH_REFERENCE_CACHE_BYTES)
    try:
        reference = reference_for_phase(phase=phase)
        results: dict[str, dict[str, Any]] = {}
        stages: dict[str, float] = {"reference_s": time.perf_counter() - started}
        for part, ids in (("public", reference.public_ids), ("private", reference.private_ids)):
            if ids:
                t0 = time.perf_counter()
                report = score(
                    phase.challenge.task_type,
                    reference.path,
                    predictions,
                    options=_options(phase, ids, shown),
                )
                # the per-case values stay columns (a CaseTable) until they are stored
                results[part] = {
                    "aggregates": report.aggregates,
                    "cases": report.cases,
                    "meta": report.meta,
                }
                # the first part includes decoding the predictions (once: the second reuses it)
                stages[f"score_{part}_s"] = time.perf_counter() - t0
    except InvalidSubmission as exc:
        evaluation_fail(evaluation_id=evaluation_id, message=f"Invalid predictions: {exc}")
        return
    except (InvalidReference, ReferenceError_) as exc:
        logger.error("reference problem in %s: %s", phase, exc)
        evaluation_fail(
            evaluation_id=evaluation_id,
            message="The reference of this phase has a problem; this does not count against "
            "your limits. The organizers have been told.",
            logs=f"reference problem: {exc}",
            platform_fault=True,
        )
        return
    except (MemoryError, ValueError, OSError) as exc:
        logger.exception("scoring %s failed", evaluation)
        evaluation_fail(
            evaluation_id=evaluation_id,
            message="The platform could not score this submission; it does not count against "
            "your limits.",
            logs=f"{type(exc).__name__}: {exc}\n{failure_logs()}",
            platform_fault=True,
        )
        return
    evaluation_finish(
        evaluation_id=evaluation_id,
        results=results,
        timings={**stages, "scoring_s": time.perf_counter() - started},
    )
