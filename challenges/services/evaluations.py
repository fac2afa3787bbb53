"""The evaluation state machine: create, start, score, finish, fail, re-queue, reap.

Exactly once: every task calls these services, which take the evaluation row with
``select_for_update``, check its state, and move it along the allowed transitions only. Running
twice (a re-delivered message, a re-sent task) finds the state already moved on and does nothing;
results are unique per evaluation and part, so a retried attempt never adds a second entry.
"""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from challenges.models import (
    Evaluation,
    EvaluationState,
    Phase,
    Result,
    Submission,
    SubmissionKind,
)
from challenges.models.evaluation import ACTIVE_STATES, FINAL_STATES, TRANSITIONS

logger = logging.getLogger(__name__)

LOG_TAIL_CHARS = 20_000


class InvalidTransition(RuntimeError):
    pass


def _move(evaluation: Evaluation, state: str) -> None:
    """Change the state of a locked evaluation along an allowed transition."""
    if state not in TRANSITIONS[evaluation.state]:
        raise InvalidTransition(f"{evaluation}: {evaluation.state} → {state} is not allowed")
    evaluation.state = state


def _send(evaluation: Evaluation) -> None:
    """Send the task that advances the evaluation. Failures to reach the broker are logged, not
    raised: the database is the source of truth and the reaper sends again."""
    from challenges import tasks

    kwargs = {"evaluation_id": evaluation.pk}
    try:
        if evaluation.state == EvaluationState.SCORING or (
            evaluation.submission.kind == SubmissionKind.PREDICTIONS
        ):
            tasks.evaluation_score.apply_async(kwargs=kwargs)
        else:
            tasks.evaluation_run.apply_async(kwargs=kwargs)
    except Exception:
        logger.exception("could not send the task of %s; the reaper will retry", evaluation)


def _send_on_commit(evaluation_id: int) -> None:
    def send() -> None:
        evaluation = Evaluation.objects.select_related("submission").get(pk=evaluation_id)
        _send(evaluation)

    transaction.on_commit(send)


@transaction.atomic
def evaluation_create(*, submission: Submission) -> Evaluation:
    """Queue a new attempt for a submission (the first, or a re-evaluation)."""
    last = submission.evaluations.order_by("-attempt").first()
    evaluation = Evaluation.objects.create(
        submission=submission,
        attempt=(last.attempt + 1) if last else 1,
        enqueued_at=timezone.now(),
    )
    _send_on_commit(evaluation.pk)
    return evaluation


def evaluation_begin(*, evaluation_id: int, stage: str) -> Evaluation | None:
    """Take the evaluation up for ``stage`` (running or scoring), counting the delivery.

    Returns None when there is nothing to do (already final, or at a later stage)."""
    with transaction.atomic():
        evaluation = (
            Evaluation.objects.select_for_update()
            .select_related("submission__phase__challenge")
            .get(pk=evaluation_id)
        )
        if evaluation.state in FINAL_STATES:
            return None
        if stage == EvaluationState.RUNNING and evaluation.state == EvaluationState.SCORING:
            return None
        if evaluation.state != stage:
            _move(evaluation, stage)
        evaluation.deliveries += 1
        evaluation.started_at = timezone.now()  # when the current delivery began
        evaluation.save(update_fields=["state", "deliveries", "started_at"])
        return evaluation


@transaction.atomic
def evaluation_hand_to_scoring(*, evaluation_id: int, predictions: Path, logs: str) -> None:
    """After a sandbox run: record the predictions and queue the scoring (cpu queue)."""
    evaluation = Evaluation.objects.select_for_update().get(pk=evaluation_id)
    if evaluation.state != EvaluationState.RUNNING:
        return
    _move(evaluation, EvaluationState.SCORING)
    evaluation.predictions = str(predictions)
    evaluation.logs = logs[-LOG_TAIL_CHARS:]
    evaluation.enqueued_at = timezone.now()
    evaluation.save(update_fields=["state", "predictions", "logs", "enqueued_at"])
    _send_on_commit(evaluation.pk)


@transaction.atomic
def evaluation_finish(
    *, evaluation_id: int, results: dict[str, dict[str, Any]], timings: dict[str, float]
) -> bool:
    """Store the results (one per part) and mark the evaluation succeeded; then update the
    leaderboard. Returns False if another delivery finished it first (nothing is written)."""
    evaluation = (
        Evaluation.objects.select_for_update().select_related("submission").get(pk=evaluation_id)
    )
    if evaluation.state != EvaluationState.SCORING:
        return False
    for part, report in results.items():
        Result.objects.create(
            evaluation=evaluation,
            part=part,
            aggregates=report["aggregates"],
            cases=report["cases"],
            meta=report["meta"],
        )
    _move(evaluation, EvaluationState.SUCCEEDED)
    evaluation.finished_at = timezone.now()
    evaluation.timings = {**evaluation.timings, **timings}
    evaluation.message = "Scored."
    evaluation.save(update_fields=["state", "finished_at", "timings", "message"])
    transaction.on_commit(lambda: _after_final(evaluation_id))
    return True


@transaction.atomic
def evaluation_fail(
    *, evaluation_id: int, message: str, logs: str = "", platform_fault: bool = False
) -> bool:
    """Mark the evaluation failed with a message for the participant (never hidden data) and
    logs for the organizers. A platform fault does not count against the participant."""
    evaluation = Evaluation.objects.select_for_update().get(pk=evaluation_id)
    if evaluation.state in FINAL_STATES:
        return False
    _move(evaluation, EvaluationState.FAILED)
    evaluation.finished_at = timezone.now()
    evaluation.message = message[:2000]
    evaluation.logs = (evaluation.logs + "\n" + logs)[-LOG_TAIL_CHARS:] if logs else evaluation.logs
    evaluation.platform_fault = platform_fault
    evaluation.save(update_fields=["state", "finished_at", "message", "logs", "platform_fault"])
    transaction.on_commit(lambda: _after_final(evaluation_id, leaderboard=False))
    return True


@transaction.atomic
def evaluation_cancel(*, evaluation_id: int) -> bool:
    evaluation = Evaluation.objects.select_for_update().get(pk=evaluation_id)
    if evaluation.state in FINAL_STATES:
        return False
    _move(evaluation, EvaluationState.CANCELLED)
    evaluation.finished_at = timezone.now()
    evaluation.message = "Cancelled by the organizers."
    evaluation.save(update_fields=["state", "finished_at", "message"])
    return True


def _after_final(evaluation_id: int, *, leaderboard: bool = True) -> None:
    from challenges import tasks
    from challenges.services.notifications import notify_evaluation_finished

    if leaderboard:
        try:
            tasks.leaderboard_apply_result.apply_async(kwargs={"evaluation_id": evaluation_id})
        except Exception:
            logger.exception("could not send the leaderboard update for %s", evaluation_id)
    notify_evaluation_finished(evaluation_id=evaluation_id)


def failure_logs() -> str:
    return traceback.format_exc()[-LOG_TAIL_CHARS:]


# --- re-evaluation and the reaper ---------------------------------------------------------------


@transaction.atomic
def submission_reevaluate(*, submission: Submission) -> Evaluation:
    """Organizers: run a submission again (e.g. after fixing a reference label). The previous
    attempt and its results stay in the history; the leaderboard uses the newest success."""
    Submission.objects.select_for_update().get(pk=submission.pk)
    for active in submission.evaluations.filter(state__in=[EvaluationState.QUEUED, *ACTIVE_STATES]):
        evaluation_cancel(evaluation_id=active.pk)
    return evaluation_create(submission=submission)


def phase_reevaluate(*, phase: Phase) -> int:
    """Organizers: re-run every submission of a phase; returns how many were queued."""
    n = 0
    for submission in Submission.objects.filter(phase=phase).order_by("created_at"):
        submission_reevaluate(submission=submission)
        n += 1
    return n


def evaluations_reap(*, now: Any = None) -> dict[str, int]:
    """Find evaluations the broker or a dead worker lost and move them on.

    * queued for longer than ``SCANBENCH_REQUEUE_AFTER_S`` since the task was last sent: send
      again (a duplicate is harmless: tasks are idempotent);
    * running or scoring past the phase's time limit plus a grace period: back to the queue, or
      failed (as the platform's fault, so it does not count) after ``SCANBENCH_MAX_DELIVERIES``.
    """
    now = now or timezone.now()
    requeue_after = timedelta(seconds=settings.SCANBENCH_REQUEUE_AFTER_S)
    counts = {"resent": 0, "requeued": 0, "failed": 0}
    stale = Evaluation.objects.filter(
        state=EvaluationState.QUEUED, enqueued_at__lt=now - requeue_after
    ).values_list("pk", flat=True)
    for pk in list(stale[:1000]):
        with transaction.atomic():
            ev = Evaluation.objects.select_for_update().select_related("submission").get(pk=pk)
            if ev.state != EvaluationState.QUEUED:
                continue
            ev.enqueued_at = now
            ev.save(update_fields=["enqueued_at"])
            _send_on_commit(ev.pk)
            counts["resent"] += 1
    active = Evaluation.objects.filter(state__in=ACTIVE_STATES).select_related("submission__phase")
    for ev in active:
        limit = ev.submission.phase.time_limit_s if ev.state == EvaluationState.RUNNING else 0
        deadline = timedelta(seconds=limit + settings.SCANBENCH_STUCK_GRACE_S)
        # The current delivery began at started_at, or the reaper re-sent it at enqueued_at.
        marks = [t for t in (ev.started_at, ev.enqueued_at) if t is not None]
        since = max(marks) if marks else ev.queued_at
        if since > now - deadline:
            continue
        with transaction.atomic():
            locked = Evaluation.objects.select_for_update().get(pk=ev.pk)
            if locked.state not in ACTIVE_STATES or locked.started_at != ev.started_at:
                continue
            if locked.deliveries >= settings.SCANBENCH_MAX_DELIVERIES:
                evaluation_fail(
                    evaluation_id=locked.pk,
                    message="The platform could not finish this evaluation; it does not count "
                    "against your limits. The organizers have been told.",
                    logs=f"reaper: gave up after {locked.deliveries} deliveries",
                    platform_fault=True,
                )
                counts["failed"] += 1
                continue
            # A scoring step restarts from its stored predictions; a sandbox run from scratch.
            locked.enqueued_at = now
            locked.save(update_fields=["enqueued_at"])
            _send_on_commit(locked.pk)
            counts["requeued"] += 1
    return counts
