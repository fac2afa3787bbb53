"""The evaluation state machine: create, start, score, finish, fail, re-queue, reap.

Exactly once: every task calls these services, which take the evaluation row with
``select_for_update``, check its state, and move it along the allowed transitions only. Running
twice (a re-delivered message, a re-sent task) finds the state already moved on and does nothing;
results are unique per evaluation and part, so a retried attempt never adds a second entry.

Leases: one delivery of a task holds a running or scoring evaluation at a time. The task enters
:func:`evaluation_lease`, whose token ``evaluation_begin`` writes to ``lease_owner`` with an
expiry that a background thread pushes forward while the delivery works. A second delivery finds
the live lease and does nothing; the reaper takes back an evaluation whose lease lapsed (its
worker died), never one that is still being renewed, however long it runs; and only the holder
may finish, fail or hand on the evaluation, so a delivery that wakes up after its lease was
taken back writes nothing. The database, not the broker, says who holds what.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from challenges.dbtools import server_bound_parameters
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


GAVE_UP_MESSAGE = (
    "The platform could not finish this evaluation: the worker processing it stopped {n} times "
    "in a row. This does not count against your limits; the organizers have been told."
)


# --- leases --------------------------------------------------------------------------------------


@dataclass
class Lease:
    """One delivery's hold on an evaluation. ``owner`` is unique to the delivery; ``taken`` is
    set once ``evaluation_begin`` wrote it to the row, ``lost`` once the row named another
    holder (the reaper took the evaluation back while this delivery was stalled)."""

    evaluation_id: int
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    taken: bool = False
    lost: bool = False


_current_lease: ContextVar[Lease | None] = ContextVar("scanbench_lease", default=None)


def _lease_length() -> timedelta:
    return timedelta(seconds=settings.SCANBENCH_LEASE_S)


def _lease_live(evaluation: Evaluation, now: datetime) -> bool:
    return bool(
        evaluation.lease_owner
        and evaluation.lease_expires_at is not None
        and evaluation.lease_expires_at > now
    )


def _caller_owner(evaluation_id: int, lease_owner: str | None) -> str | None:
    """The lease token the caller acts under: the one given, else that of the enclosing
    :func:`evaluation_lease` of this evaluation, else None (organizers, the shell, tests)."""
    if lease_owner is not None:
        return lease_owner
    lease = _current_lease.get()
    return lease.owner if lease is not None and lease.evaluation_id == evaluation_id else None


def _holds(evaluation: Evaluation, lease_owner: str | None) -> bool:
    """Whether the caller may write the outcome of a locked evaluation: it holds the lease, or
    it acts outside any delivery (no token)."""
    owner = _caller_owner(evaluation.pk, lease_owner)
    if owner is None or evaluation.lease_owner == owner:
        return True
    logger.warning(
        "%s: this delivery (lease %s) no longer holds it (now %r); its outcome is discarded",
        evaluation,
        owner,
        evaluation.lease_owner,
    )
    lease = _current_lease.get()
    if lease is not None and lease.owner == owner:
        lease.lost = True
    return False


def _clear_lease(evaluation: Evaluation) -> list[str]:
    """Drop the lease of a locked evaluation (it is final or handed on); returns the fields to
    save."""
    lease = _current_lease.get()
    if lease is not None and lease.owner == evaluation.lease_owner:
        lease.taken = False  # released on purpose: its renewer must not report it lost
    evaluation.lease_owner = ""
    evaluation.lease_expires_at = None
    return ["lease_owner", "lease_expires_at"]


def lease_renew(*, lease: Lease) -> bool:
    """Push the lease's expiry forward if this delivery still holds it; returns whether it
    does. One UPDATE, no lock held across calls."""
    renewed = Evaluation.objects.filter(
        pk=lease.evaluation_id, lease_owner=lease.owner, state__in=ACTIVE_STATES
    ).update(lease_expires_at=timezone.now() + _lease_length())
    if not renewed and lease.taken and not lease.lost:
        lease.lost = True
        logger.warning(
            "evaluation %s: lease %s was taken back (this delivery stalled past its expiry); "
            "what this delivery still writes is discarded",
            lease.evaluation_id,
            lease.owner,
        )
    return bool(renewed)


def _renew_until(*, lease: Lease, stop: threading.Event) -> None:
    """The renewer thread: renew every SCANBENCH_LEASE_RENEW_S until told to stop. A failed
    renewal (the database briefly away) is retried at the next tick; the lease outlasts
    several."""
    try:
        while not stop.wait(settings.SCANBENCH_LEASE_RENEW_S):
            try:
                lease_renew(lease=lease)
            except Exception:
                logger.exception("evaluation %s: could not renew its lease", lease.evaluation_id)
    finally:
        connection.close()  # this thread's own database connection


@contextmanager
def evaluation_lease(*, evaluation_id: int) -> Iterator[Lease]:
    """Hold an evaluation for one delivery of its task while the block runs.

    Enter it in the task, around the step's service: that service's ``evaluation_begin`` takes
    the lease under this delivery's token (or finds a live lease of another delivery and does
    nothing), and a background thread of this worker process renews it every
    ``SCANBENCH_LEASE_RENEW_S`` for ``SCANBENCH_LEASE_S``. Inside the block,
    ``evaluation_finish``, ``evaluation_fail`` and ``evaluation_hand_to_scoring`` succeed only
    while this delivery still holds the lease. On leaving, a lease still held is released, so a
    retry of the task can take the evaluation at once.

    The thread must get the CPU within ``SCANBENCH_LEASE_S``: a step that holds the GIL longer
    than that in one call would lose its lease while still working.
    """
    if _current_lease.get() is not None:
        raise RuntimeError("evaluation_lease cannot be nested")
    lease = Lease(evaluation_id=evaluation_id)
    token = _current_lease.set(lease)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew_until,
        kwargs={"lease": lease, "stop": stop},
        name=f"lease-renewer-{evaluation_id}",
        daemon=True,
    )
    renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        renewer.join(timeout=settings.SCANBENCH_LEASE_S)
        _current_lease.reset(token)
        try:
            Evaluation.objects.filter(pk=evaluation_id, lease_owner=lease.owner).update(
                lease_owner="", lease_expires_at=None
            )
        except Exception:  # the database is away: the lease lapses by itself
            logger.exception("evaluation %s: could not release its lease", evaluation_id)


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
            # Model runs go to the phase's queue: "gpu", or "gpu-<kind>" for one kind of card.
            queue = evaluation.submission.phase.gpu_queue or "gpu"
            tasks.evaluation_run.apply_async(kwargs=kwargs, queue=queue)
    except Exception:
        logger.exception("could not send the task of %s; the reaper will retry", evaluation)


def _send_on_commit(evaluation_id: int) -> None:
    def send() -> None:
        evaluation = Evaluation.objects.select_related("submission__phase").get(pk=evaluation_id)
        _send(evaluation)

    transaction.on_commit(send)


@transaction.atomic(savepoint=False)  # callers hold a transaction and fail whole on an error
def evaluation_create(*, submission: Submission, first: bool = False) -> Evaluation:
    """Queue a new attempt for a submission (the first, or a re-evaluation).

    ``first``: the submission was created in the caller's transaction, so it has no attempt
    yet, and the task is sent from the rows in memory, which are what commits (two statements
    fewer per upload)."""
    last = None if first else submission.evaluations.order_by("-attempt").first()
    evaluation = Evaluation.objects.create(
        submission=submission,
        attempt=(last.attempt + 1) if last else 1,
        enqueued_at=timezone.now(),
    )
    if first:
        transaction.on_commit(lambda: _send(evaluation))
    else:
        _send_on_commit(evaluation.pk)
    return evaluation


def _give_up(evaluation: Evaluation, why: str) -> None:
    """Fail a locked evaluation whose step hit the delivery cap, as the platform's fault."""
    _fail_locked(
        evaluation,
        message=GAVE_UP_MESSAGE.format(n=evaluation.stage_deliveries),
        logs=f"{why} (SCANBENCH_MAX_DELIVERIES={settings.SCANBENCH_MAX_DELIVERIES})",
        platform_fault=True,
    )


def evaluation_begin(*, evaluation_id: int, stage: str) -> Evaluation | None:
    """Take the evaluation up for ``stage`` (running or scoring) under a lease for this
    delivery, counting the delivery.

    Call inside :func:`evaluation_lease` (the tasks do), whose token becomes the lease owner;
    outside one (the shell, tests) the lease is taken under a fresh token and not renewed.
    Returns None when there is nothing to do: already final, at a later stage, held by another
    delivery's live lease, or failed here as the platform's fault because this step was
    already delivered ``SCANBENCH_MAX_DELIVERIES`` times (its task keeps killing its worker)."""
    lease = _current_lease.get()
    owner = lease.owner if lease is not None else uuid.uuid4().hex
    with transaction.atomic():
        # Only the evaluation's row is locked: FOR UPDATE over the join would also lock its
        # phase and challenge, which every other worker and the leaderboard task lock too.
        evaluation = (
            Evaluation.objects.select_for_update(of=("self",))
            .select_related("submission__phase__challenge")
            .get(pk=evaluation_id)
        )
        now = timezone.now()
        if evaluation.state in FINAL_STATES:
            return None
        if stage == EvaluationState.RUNNING and evaluation.state == EvaluationState.SCORING:
            return None
        if evaluation.lease_owner == owner:
            return evaluation  # this delivery began already
        if _lease_live(evaluation, now):
            logger.info(
                "%s is held by another delivery until %s; this delivery does nothing",
                evaluation,
                evaluation.lease_expires_at,
            )
            return None
        if evaluation.stage_deliveries >= settings.SCANBENCH_MAX_DELIVERIES:
            _give_up(
                evaluation,
                f"evaluation_begin: refused delivery {evaluation.stage_deliveries + 1} of "
                f"the {evaluation.state} step",
            )
            return None
        if evaluation.state != stage:
            _move(evaluation, stage)
        evaluation.deliveries += 1
        evaluation.stage_deliveries += 1
        evaluation.started_at = now  # when the current delivery began
        evaluation.lease_owner = owner
        evaluation.lease_expires_at = now + _lease_length()
        evaluation.save(
            update_fields=[
                "state",
                "deliveries",
                "stage_deliveries",
                "started_at",
                "lease_owner",
                "lease_expires_at",
            ]
        )
    if lease is not None and lease.evaluation_id == evaluation_id:
        lease.taken = True
    return evaluation


@transaction.atomic
def evaluation_hand_to_scoring(
    *, evaluation_id: int, predictions: Path, logs: str, lease_owner: str | None = None
) -> bool:
    """After a sandbox run: record the predictions and queue the scoring (cpu queue). The run's
    lease ends here, so the scoring delivery takes its own at once. Returns False (nothing is
    written) if the run is no longer running or this delivery no longer holds its lease."""
    evaluation = Evaluation.objects.select_for_update().get(pk=evaluation_id)
    if evaluation.state != EvaluationState.RUNNING or not _holds(evaluation, lease_owner):
        return False
    _move(evaluation, EvaluationState.SCORING)
    evaluation.predictions = str(predictions)
    evaluation.logs = logs[-LOG_TAIL_CHARS:]
    evaluation.enqueued_at = timezone.now()
    evaluation.stage_deliveries = 0  # the scoring step has its own deliveries
    fields = ["state", "predictions", "logs", "enqueued_at", "stage_deliveries"]
    evaluation.save(update_fields=fields + _clear_lease(evaluation))
    _send_on_commit(evaluation.pk)
    return True


@transaction.atomic
def evaluation_finish(
    *,
    evaluation_id: int,
    results: dict[str, dict[str, Any]],
    timings: dict[str, float],
    lease_owner: str | None = None,
) -> bool:
    """Store the results (one per part) and mark the evaluation succeeded; then update the
    leaderboard. Returns False (nothing is written) if another delivery finished it first or
    holds it now: only the lease holder writes results."""
    evaluation = (
        Evaluation.objects.select_for_update(of=("self",))
        .select_related("submission__phase")
        .get(pk=evaluation_id)
    )
    if evaluation.state != EvaluationState.SCORING or not _holds(evaluation, lease_owner):
        return False
    t0 = time.perf_counter()
    rows = []
    for part, report in results.items():
        row = Result(
            evaluation=evaluation, part=part, aggregates=report["aggregates"], meta=report["meta"]
        )
        row.cases = report["cases"]  # a CaseTable or a plain mapping, stored as columns
        rows.append(row)
    with server_bound_parameters():  # the per-case values travel as bytes, not as hex text
        Result.objects.bulk_create(rows)
    _move(evaluation, EvaluationState.SUCCEEDED)
    evaluation.finished_at = timezone.now()
    stages = {"store_s": time.perf_counter() - t0}
    if evaluation.enqueued_at and evaluation.started_at:
        # queue wait of the last step: sent (or handed over) -> taken up by a worker
        wait = (evaluation.started_at - evaluation.enqueued_at).total_seconds()
        stages["queued_s"] = max(0.0, wait)
    evaluation.timings = {**evaluation.timings, **timings, **stages}
    evaluation.message = scored_message(
        results,
        name_cases=evaluation.submission.phase.submission_kind == SubmissionKind.PREDICTIONS,
    )
    # the leaderboard task picks it up (with every other pending result of the phase)
    evaluation.board_pending = True
    fields = ["state", "finished_at", "timings", "message", "board_pending"]
    evaluation.save(update_fields=fields + _clear_lease(evaluation))
    transaction.on_commit(lambda: _after_final(evaluation_id))
    return True


MISSING_NAMED = 5


def scored_message(results: dict[str, dict[str, Any]], *, name_cases: bool) -> str:
    """The message of a scored evaluation: "Scored." or, when cases were missing from the
    predictions (each got the worst value of every metric), how many of how many.

    The counts are over all parts (public and private) together, so they say nothing about
    which case is in which part. With ``name_cases`` (prediction-file phases, whose participants
    have every test case's input and id) the first missing ids are named in id order, whatever
    their part; for model and container phases, whose test inputs are hidden, only counts."""
    missing: list[str] = []
    total = 0
    for report in results.values():
        meta = report.get("meta") or {}
        missing += [str(c) for c in meta.get("missing_cases") or []]
        total += int(meta.get("n_cases") or len(report.get("cases") or {}))
    if not missing:
        return "Scored."
    missing.sort()
    n = len(missing)
    verb = "was" if n == 1 else "were"
    text = f"Scored; {n} of {total} test cases {verb} missing and got the worst value"
    if not name_cases:
        return text + "."
    shown = ", ".join(missing[:MISSING_NAMED])
    more = n - MISSING_NAMED
    return f"{text}: {shown}{f' and {more} more' if more > 0 else ''}."


@transaction.atomic
def evaluation_fail(
    *,
    evaluation_id: int,
    message: str,
    logs: str = "",
    platform_fault: bool = False,
    lease_owner: str | None = None,
) -> bool:
    """Mark the evaluation failed with a message for the participant (never hidden data) and
    logs for the organizers. A platform fault does not count against the participant. Returns
    False (nothing is written) if it is final already or another delivery holds it now."""
    evaluation = Evaluation.objects.select_for_update().get(pk=evaluation_id)
    if evaluation.state in FINAL_STATES or not _holds(evaluation, lease_owner):
        return False
    _fail_locked(evaluation, message=message, logs=logs, platform_fault=platform_fault)
    return True


def _fail_locked(
    evaluation: Evaluation, *, message: str, logs: str = "", platform_fault: bool = False
) -> None:
    """Fail an evaluation whose row the caller holds locked, whoever holds its lease."""
    _move(evaluation, EvaluationState.FAILED)
    evaluation.finished_at = timezone.now()
    evaluation.message = message[:2000]
    evaluation.logs = (evaluation.logs + "\n" + logs)[-LOG_TAIL_CHARS:] if logs else evaluation.logs
    evaluation.platform_fault = platform_fault
    fields = ["state", "finished_at", "message", "logs", "platform_fault"]
    evaluation.save(update_fields=fields + _clear_lease(evaluation))
    evaluation_id = evaluation.pk
    transaction.on_commit(lambda: _after_final(evaluation_id, leaderboard=False))


@transaction.atomic
def evaluation_cancel(*, evaluation_id: int) -> bool:
    evaluation = Evaluation.objects.select_for_update().get(pk=evaluation_id)
    if evaluation.state in FINAL_STATES:
        return False
    _move(evaluation, EvaluationState.CANCELLED)
    evaluation.finished_at = timezone.now()
    evaluation.message = "Cancelled by the organizers."
    evaluation.save(update_fields=["state", "finished_at", "message", *_clear_lease(evaluation)])
    return True


def _after_final(evaluation_id: int, *, leaderboard: bool = True) -> None:
    from challenges.services.leaderboards import send_board_update
    from challenges.services.notifications import notify_evaluation_finished

    if leaderboard:
        send_board_update(evaluation_id)
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


def evaluations_reap(*, now: datetime | None = None) -> dict[str, int]:
    """Find evaluations the broker or a dead worker lost and move them on (Celery beat, every
    ``SCANBENCH_REAPER_INTERVAL_S``).

    * queued, its task sent longer than ``SCANBENCH_REQUEUE_AFTER_S`` ago: send it again (a
      duplicate is harmless: tasks are idempotent);
    * running or scoring with a lapsed lease (its worker stopped renewing: it died): take it
      back and send it again, or fail it as the platform's fault (it does not count) once the
      step was delivered ``SCANBENCH_MAX_DELIVERIES`` times. A lease that is still renewed is
      never touched, however long the step runs;
    * running or scoring with no holder (handed on, or let go by a delivery that raised) for
      longer than ``SCANBENCH_REQUEUE_AFTER_S``: send it again, or fail it at the cap;
    * rank ranges overdue (their task was lost): send them again.
    """
    now = now or timezone.now()
    requeue_before = now - timedelta(seconds=settings.SCANBENCH_REQUEUE_AFTER_S)
    counts = {"resent": 0, "retaken": 0, "failed": 0}
    stale = Evaluation.objects.filter(
        state=EvaluationState.QUEUED, enqueued_at__lt=requeue_before
    ).values_list("pk", flat=True)
    for pk in list(stale[:1000]):
        with transaction.atomic():
            ev = (
                Evaluation.objects.select_for_update(of=("self",))
                .select_related("submission")
                .get(pk=pk)
            )
            if ev.state != EvaluationState.QUEUED:
                continue
            ev.enqueued_at = now
            ev.save(update_fields=["enqueued_at"])
            _send_on_commit(ev.pk)
            counts["resent"] += 1
    unheld = Evaluation.objects.filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now), state__in=ACTIVE_STATES
    ).values_list("pk", flat=True)
    for pk in list(unheld[:1000]):
        with transaction.atomic():
            ev = (
                Evaluation.objects.select_for_update(of=("self",))
                .select_related("submission")
                .get(pk=pk)
            )
            if ev.state not in ACTIVE_STATES or _lease_live(ev, now):
                continue
            lapsed = bool(ev.lease_owner)
            if not lapsed:
                marks = [t for t in (ev.enqueued_at, ev.started_at) if t is not None]
                if max(marks, default=ev.queued_at) > requeue_before:
                    continue  # just handed on: its task is probably still in the queue
            if ev.stage_deliveries >= settings.SCANBENCH_MAX_DELIVERIES:
                _give_up(
                    ev,
                    f"reaper: gave up on the {ev.state} step after {ev.stage_deliveries} "
                    "deliveries"
                    + (f"; the last lease lapsed at {ev.lease_expires_at}" if lapsed else ""),
                )
                counts["failed"] += 1
                continue
            # A scoring step restarts from its stored predictions; a sandbox run from scratch.
            ev.enqueued_at = now
            ev.save(update_fields=["enqueued_at", *_clear_lease(ev)])
            _send_on_commit(ev.pk)
            counts["retaken" if lapsed else "resent"] += 1
    from challenges.services.leaderboards import (
        leaderboard_pending_resend,
        leaderboard_ranges_resend,
    )

    counts["ranges_resent"] = leaderboard_ranges_resend(now=now)
    counts["board_resent"] = leaderboard_pending_resend(now=now)
    return counts
