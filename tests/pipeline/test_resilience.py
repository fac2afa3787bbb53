"""Exactly once, against real failures: duplicate deliveries, a worker killed with SIGKILL in
the middle of scoring, Redis restarted with submissions queued (it keeps nothing on disk).
Leases, the reaper and the delivery cap on both brokers: tests/pipeline/test_leases.py."""

from __future__ import annotations

import subprocess
import time

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from challenges.models import Evaluation, LeaderboardEntry, Result, Submission
from challenges.services.submissions import submission_create
from challenges.tasks import evaluation_score, evaluations_reap
from tests.factories import UserFactory, classification_phase, segmentation_phase
from tests.helpers import wait_for

pytestmark = pytest.mark.worker


def _submit(phase, path, user=None) -> Submission:
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile(path.name, path.read_bytes())
    return submission_create(user=user or UserFactory(), phase=phase, file=upload)


def _done(submission: Submission, timeout: float = 120) -> Evaluation:
    return wait_for(
        lambda: Evaluation.objects.filter(
            submission=submission, state__in=["succeeded", "failed"]
        ).first(),
        timeout=timeout,
    )


def _queue_length(queue: str = "cpu") -> int:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(queue)


def test_same_task_delivered_three_times_gives_one_result(start_worker, tmp_path):
    phase, preds = classification_phase(tmp_path)
    submission = _submit(phase, preds)  # the first delivery is sent on commit
    evaluation = submission.evaluations.get()
    for _ in range(2):
        evaluation_score.apply_async(kwargs={"evaluation_id": evaluation.pk})
    assert _queue_length() == 3
    start_worker(queues="cpu")
    assert _done(submission).state == "succeeded"
    wait_for(lambda: LeaderboardEntry.objects.filter(phase=phase, part="public").exists())
    wait_for(lambda: _queue_length() == 0)
    time.sleep(1)  # let the last duplicate finish
    assert Result.objects.filter(evaluation=evaluation).count() == 2  # public + private
    assert LeaderboardEntry.objects.filter(phase=phase, part="public").count() == 1
    evaluation.refresh_from_db()
    assert evaluation.deliveries == 1  # the duplicates found it final and did nothing


def test_worker_killed_with_sigkill_while_scoring_is_taken_up_and_ends_once(start_worker, tmp_path):
    phase, archive = segmentation_phase(tmp_path, n_cases=30, shape=(128, 128, 64))
    # A short lease, so that the dead worker's lapses in a second (tests/pipeline/test_leases.py
    # measures the defaults).
    lease = {"SCANBENCH_LEASE_S": "1", "SCANBENCH_LEASE_RENEW_S": "0.25"}
    first = start_worker(queues="cpu", extra_env=lease)
    submission = _submit(phase, archive)
    wait_for(
        lambda: Evaluation.objects.filter(submission=submission, state="scoring").exists(),
        interval=0.01,
    )
    first.kill()  # SIGKILL to the whole process group, in the middle of scoring
    evaluation = submission.evaluations.get()
    assert evaluation.state == "scoring"
    assert evaluation.lease_owner
    assert not Result.objects.filter(evaluation=evaluation).exists()
    # A new worker; once the lease lapsed, the reaper (Celery beat) takes the evaluation back.
    start_worker(queues="cpu", extra_env=lease)
    wait_for(lambda: submission.evaluations.get().lease_expires_at < timezone.now())
    evaluations_reap.apply_async()
    evaluation = _done(submission)
    assert evaluation.state == "succeeded", evaluation.message
    assert evaluation.deliveries == 2
    assert Evaluation.objects.filter(submission=submission).count() == 1
    assert Result.objects.filter(evaluation=evaluation).count() == 2
    wait_for(lambda: LeaderboardEntry.objects.filter(phase=phase, part="public").count() == 1)


def _restart_redis() -> None:
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], check=False)
    wait_for(
        lambda: (
            subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True).returncode != 0
        )
    )
    subprocess.run(
        [
            "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
            "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
            "--logfile", "/var/log/redis/ci.log",
        ],
        check=True,
    )  # fmt: skip
    wait_for(
        lambda: (
            subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True).returncode == 0
        )
    )


def test_redis_restarted_with_submissions_queued_loses_none(start_worker, tmp_path):
    phase, preds = classification_phase(tmp_path)
    submissions = [_submit(phase, preds) for _ in range(3)]
    assert _queue_length() == 3
    _restart_redis()
    assert _queue_length() == 0  # the broker lost every queued message
    start_worker(queues="cpu", extra_env={"SCANBENCH_REQUEUE_AFTER_S": "0"})
    evaluations_reap.apply_async()
    for submission in submissions:
        evaluation = _done(submission)
        assert evaluation.state == "succeeded", evaluation.message
    assert Result.objects.filter(evaluation__submission__phase=phase).count() == 6


def _other_backends() -> dict[int, object]:
    """PostgreSQL backends on the test database other than this test's own (pid ->
    backend_start): the worker's, as nothing else connects to it here."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return dict(cursor.fetchall())


def test_worker_keeps_its_database_connection_between_tasks_and_survives_losing_it(
    start_worker, tmp_path
):
    """A worker reuses its PostgreSQL connection from task to task (no new backend per task),
    and a connection the database dropped in between is replaced before the next task uses it:
    that task succeeds at its first delivery."""
    phase, preds = classification_phase(tmp_path)
    # leases renewed rarely: a renewing thread would open a connection of its own meanwhile
    quiet = {"CONN_MAX_AGE": "60", "SCANBENCH_LEASE_S": "1200", "SCANBENCH_LEASE_RENEW_S": "300"}
    start_worker(queues="cpu", extra_env=quiet)
    assert _done(_submit(phase, preds)).state == "succeeded"
    first = wait_for(lambda: _other_backends() or None)
    for _ in range(3):
        assert _done(_submit(phase, preds)).state == "succeeded"
    time.sleep(0.5)  # the leaderboard task of the last one
    kept = _other_backends()
    assert kept == first  # the same backends, started once, served every later task

    # the database drops the worker's connections, as a restart of PostgreSQL would
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [list(kept)]
        )
    evaluation = _done(_submit(phase, preds))
    assert evaluation.state == "succeeded", evaluation.message
    assert evaluation.deliveries == 1  # no failure and no second delivery
    assert not set(_other_backends()) & set(kept)
