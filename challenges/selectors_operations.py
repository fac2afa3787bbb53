"""Reads for the staff page of queues and workers (``/console/operations/``; docs/operations.md,
"Queues"): what Flower would show, from the broker and the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from challenges.models import Evaluation, EvaluationState, WorkerHeartbeat
from challenges.models.evaluation import ACTIVE_STATES
from challenges.services.operations import _queue_lengths

#: the heartbeat task runs every 60 s (CELERY_BEAT_SCHEDULE); missing three marks a worker stale
WORKER_STALE_AFTER = timedelta(minutes=3)
#: workers not seen for this long are no longer listed
WORKERS_SHOWN_FOR = timedelta(days=7)
FAILURES_SHOWN = 20


@dataclass(frozen=True)
class QueueLength:
    queue: str
    waiting: int | None  # None: the broker could not say


@dataclass(frozen=True)
class WorkerSeen:
    hostname: str
    queue: str
    sandbox_backend: str
    seen_at: datetime
    stale: bool


def queue_lengths() -> list[QueueLength]:
    """Messages waiting in each Celery queue, in the order of docs/pipeline.md."""
    lengths = _queue_lengths()
    return [QueueLength(queue=q, waiting=w) for q, w in lengths.items()]


def workers_seen(*, now: datetime | None = None) -> list[WorkerSeen]:
    """Workers that sent a heartbeat in the last week, most recent first; ``stale`` when the
    last one is older than :data:`WORKER_STALE_AFTER`."""
    now = now or timezone.now()
    beats = WorkerHeartbeat.objects.filter(seen_at__gte=now - WORKERS_SHOWN_FOR).order_by(
        "-seen_at", "hostname", "queue"
    )
    return [
        WorkerSeen(
            hostname=b.hostname,
            queue=b.queue,
            sandbox_backend=b.sandbox_backend,
            seen_at=b.seen_at,
            stale=now - b.seen_at > WORKER_STALE_AFTER,
        )
        for b in beats
    ]


def evaluations_running() -> QuerySet[Evaluation]:
    """Evaluations a worker holds now (running or scoring), the longest-running first."""
    return (
        Evaluation.objects.filter(state__in=ACTIVE_STATES)
        .select_related("submission__phase__challenge")
        .order_by("started_at", "pk")
    )


def evaluations_failed_recently(*, limit: int = FAILURES_SHOWN) -> QuerySet[Evaluation]:
    """The last ``limit`` failed evaluations, newest first, with their message and fault."""
    return (
        Evaluation.objects.filter(state=EvaluationState.FAILED)
        .select_related("submission__phase__challenge")
        .order_by("-finished_at", "-pk")[:limit]
    )
