"""Celery tasks: thin wrappers that take ids and call services (STYLE.md)."""

import socket

from django.db import OperationalError

from challenges.celery import scanbench_task
from challenges.services.workers import worker_heartbeat_record

# Transient faults (the database restarting, a lost connection) are retried with backoff.
TRANSIENT = (OperationalError, ConnectionError)


@scanbench_task(queue="cpu", time_limit=30)
def worker_heartbeat(*, queue: str = "cpu") -> None:
    """Record that a worker consuming ``queue`` is alive (shown in the admin)."""
    worker_heartbeat_record(hostname=socket.gethostname(), queue=queue)


@scanbench_task(queue="cpu", time_limit=3600, autoretry_for=TRANSIENT)
def evaluation_score(*, evaluation_id: int) -> None:
    """Validate and score predictions (uploaded, or written by a sandbox run)."""
    from challenges.services.scoring import evaluation_score as score

    score(evaluation_id=evaluation_id)


@scanbench_task(queue="gpu", time_limit=6 * 3600, autoretry_for=TRANSIENT)
def evaluation_run(*, evaluation_id: int) -> None:
    """Run a model or container submission in the sandbox, then hand it to scoring."""
    from challenges.services.sandbox import evaluation_run as run

    run(evaluation_id=evaluation_id)


@scanbench_task(queue="cpu", time_limit=600, autoretry_for=TRANSIENT)
def leaderboard_apply_result(*, evaluation_id: int) -> None:
    """Bring a leaderboard up to date with one new result (its entrant's row, then ranks)."""
    from challenges.services.leaderboards import leaderboard_apply_result as apply

    apply(evaluation_id=evaluation_id)


@scanbench_task(queue="cpu", time_limit=600, autoretry_for=TRANSIENT)
def leaderboard_update(*, phase_id: int, requested_at: str | None = None) -> None:
    """Recompute a phase's leaderboard; skipped if a later recomputation already ran."""
    from django.utils.dateparse import parse_datetime

    from challenges.services.leaderboards import leaderboard_update as update

    update(phase_id=phase_id, requested_at=parse_datetime(requested_at) if requested_at else None)


@scanbench_task(queue="cpu", time_limit=300, autoretry_for=TRANSIENT)
def evaluations_reap() -> None:
    """Periodic (Celery beat): re-send what the broker lost, take back what dead workers held."""
    from challenges.services.evaluations import evaluations_reap as reap

    reap()
