"""Celery tasks: thin wrappers that take ids and call services (STYLE.md)."""

import socket
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError

from challenges.celery import scanbench_task
from challenges.services.workers import worker_heartbeat_record

# Transient faults (the database restarting, a lost connection) are retried with backoff.
TRANSIENT = (OperationalError, ConnectionError)

SCORE_TIME_LIMIT_S = 3600
RUN_TIME_LIMIT_S = 6 * 3600


def _under_lease(step: Callable[..., None], *, evaluation_id: int, limit_s: int) -> None:
    """Run one delivery of an evaluation step holding its lease (renewed while it works), and
    fail it as the platform's fault if it outlives the task's soft time limit."""
    from challenges.services.evaluations import evaluation_fail, evaluation_lease

    with evaluation_lease(evaluation_id=evaluation_id):
        try:
            step(evaluation_id=evaluation_id)
        except SoftTimeLimitExceeded:
            evaluation_fail(
                evaluation_id=evaluation_id,
                message=f"The platform stopped this evaluation as it neared the platform's "
                f"time limit of {limit_s} s; this does not count against your limits.",
                logs="soft time limit exceeded",
                platform_fault=True,
            )


@scanbench_task(queue="cpu", time_limit=30)
def worker_heartbeat(*, queue: str = "cpu") -> None:
    """Record that a worker consuming ``queue`` is alive (shown in the admin)."""
    worker_heartbeat_record(hostname=socket.gethostname(), queue=queue)


@scanbench_task(queue="cpu", time_limit=SCORE_TIME_LIMIT_S, autoretry_for=TRANSIENT)
def evaluation_score(*, evaluation_id: int) -> None:
    """Validate and score predictions (uploaded, or written by a sandbox run)."""
    from challenges.services.scoring import evaluation_score as score

    _under_lease(score, evaluation_id=evaluation_id, limit_s=SCORE_TIME_LIMIT_S)


@scanbench_task(queue="gpu", time_limit=RUN_TIME_LIMIT_S, autoretry_for=TRANSIENT)
def evaluation_run(*, evaluation_id: int) -> None:
    """Run a model or container submission in the sandbox, then hand it to scoring."""
    from challenges.services.sandbox import evaluation_run as run

    _under_lease(run, evaluation_id=evaluation_id, limit_s=RUN_TIME_LIMIT_S)


@scanbench_task(queue="cpu", time_limit=600, autoretry_for=TRANSIENT)
def leaderboard_apply_result(*, evaluation_id: int) -> None:
    """Bring a leaderboard up to date with one new result (its entrant's row, then ranks)."""
    from challenges.services.leaderboards import leaderboard_apply_result as apply

    apply(evaluation_id=evaluation_id)


@scanbench_task(queue="cpu", time_limit=600, autoretry_for=TRANSIENT)
def leaderboard_ranges(*, phase_id: int) -> None:
    """Rank ranges and tiers of a phase's board, once it is quiet (off the scoring path)."""
    from challenges.services.leaderboards import leaderboard_ranges as ranges

    ranges(phase_id=phase_id)


@scanbench_task(queue="cpu", time_limit=600, autoretry_for=TRANSIENT)
def leaderboard_update(*, phase_id: int, requested_at: str | None = None) -> None:
    """Recompute a phase's leaderboard; skipped if a later recomputation already ran."""
    from django.utils.dateparse import parse_datetime

    from challenges.services.leaderboards import leaderboard_update as update

    update(phase_id=phase_id, requested_at=parse_datetime(requested_at) if requested_at else None)


@scanbench_task(queue="cpu", time_limit=300, autoretry_for=TRANSIENT)
def evaluations_reap() -> None:
    """Periodic (Celery beat): re-send what the broker lost, take back evaluations whose lease
    lapsed (their worker died)."""
    from challenges.services.evaluations import evaluations_reap as reap

    reap()


@scanbench_task(queue="cpu", time_limit=6 * 3600)
def bundle_upload_import(*, upload_id: int) -> None:
    """Import a challenge bundle an organizer uploaded and confirmed (state ``importing``)."""
    from challenges.services.bundle_uploads import bundle_upload_import as run

    run(upload_id=upload_id)


@scanbench_task(queue="cpu", time_limit=RUN_TIME_LIMIT_S, autoretry_for=TRANSIENT)
def baselines_run(
    *,
    phase_id: int,
    user_id: int,
    families: list[str] | None = None,
    names: list[str] | None = None,
) -> None:
    """Train every baseline that applies to a phase and submit their predictions (queued by
    ``baselines_add`` for image phases; each baseline is idempotent: same predictions, no
    second submission)."""
    from challenges.services.baselines import baselines_run as run

    run(
        phase_id=phase_id,
        user_id=user_id,
        families=tuple(families) if families else None,
        names=tuple(names) if names else None,
    )
