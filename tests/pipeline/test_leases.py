"""Evaluations are leased: a worker holds an evaluation under a lease it renews while it works;
the reaper takes back a lapsed lease within seconds and never one still renewed; a second
delivery during a live lease does nothing; a step that keeps killing its worker ends failed, as
the platform's fault, after SCANBENCH_MAX_DELIVERIES.

The worker tests run real ``celery worker`` and ``celery beat`` processes on both brokers: the
file-system transport of the embedded default (which drops a message once a worker has read
it) and Redis. Workers die by SIGKILL to their whole process group in the middle of scoring a
slow submission (noisy masks: surface distances over millions of voxels take seconds a case).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from challenges.models import Evaluation, LeaderboardEntry, Result, Submission
from challenges.services.evaluations import (
    evaluation_begin,
    evaluation_fail,
    evaluation_finish,
    evaluation_lease,
    evaluations_reap,
)
from challenges.services.submissions import limits_for, submission_create
from evaluator.synthetic import write_nifti
from tests.conftest import ROOT, WorkerProcess
from tests.factories import UserFactory, classification_phase, segmentation_phase
from tests.helpers import wait_for

# Short leases for the tests that do not measure the defaults: lapsed in 2 s, reaped every 0.5 s.
FAST = {
    "SCANBENCH_LEASE_S": "2",
    "SCANBENCH_LEASE_RENEW_S": "0.5",
    "SCANBENCH_REAPER_INTERVAL_S": "0.5",
}


# --- real workers and beat on either broker -----------------------------------------------------


@dataclass
class Pipeline:
    """Worker and beat processes of one test on one broker, and a way to send them tasks."""

    broker: str
    env: dict[str, str]
    tmp: Path
    transport_options: dict[str, object] = field(default_factory=dict)
    processes: list[WorkerProcess] = field(default_factory=list)

    def _spawn(self, args: list[str], name: str, extra_env: dict[str, str]) -> WorkerProcess:
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args, "--loglevel", "INFO"],
            cwd=ROOT,
            env={**self.env, **extra_env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = WorkerProcess(proc, log)
        self.processes.append(process)
        return process

    def worker(self, **extra_env: str) -> WorkerProcess:
        n = len(self.processes)
        worker = self._spawn(
            [
                "worker", "-Q", "cpu", "--concurrency", "1", "--prefetch-multiplier", "1",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--hostname", f"lease{n}-{os.getpid()}@%h",
            ],
            f"worker{n}",
            extra_env,
        )  # fmt: skip
        wait_for(lambda: "ready" in worker.output() or worker.proc.poll() is not None, timeout=60)
        if worker.proc.poll() is not None:
            pytest.fail(f"worker exited at start:\n{worker.output()}")
        return worker

    def beat(self, **extra_env: str) -> WorkerProcess:
        """Celery beat, which sends the reaper every SCANBENCH_REAPER_INTERVAL_S."""
        schedule = self.tmp / "beat-schedule"
        return self._spawn(["beat", "--schedule", str(schedule)], "beat", extra_env)

    def send(self, evaluation_id: int) -> None:
        """Send the scoring task of an evaluation (again) through this test's broker."""
        from challenges.tasks import evaluation_score

        if self.broker == "redis":
            evaluation_score.apply_async(kwargs={"evaluation_id": evaluation_id})
            return
        from config.celery import app

        with app.connection_for_write(
            "filesystem://", transport_options=self.transport_options
        ) as conn:
            evaluation_score.apply_async(kwargs={"evaluation_id": evaluation_id}, connection=conn)


@pytest.fixture(params=["filesystem", "redis"])
def pipeline(request, worker_env, tmp_path) -> Iterator[Pipeline]:
    """Workers and beat against the test database and the broker named by the parameter."""
    import redis

    on_redis = settings.CELERY_BROKER_URL.startswith("redis")
    if request.param == "redis" and not on_redis:
        pytest.skip("the Redis variant needs Redis as the broker: run it through scripts/test")
    redis_db = redis.Redis.from_url(settings.CELERY_BROKER_URL) if on_redis else None
    if redis_db is not None:
        redis_db.flushdb()  # the test broker database holds only this test's messages
    if request.param == "redis":
        run = Pipeline(broker="redis", env=dict(worker_env), tmp=tmp_path)
    else:
        var = tmp_path / "var"
        broker = var / "broker"
        for sub in ("out", "processed", "control"):
            (broker / sub).mkdir(parents=True)
        env = {
            **worker_env,
            "CELERY_BROKER_URL": "filesystem://",
            "SCANBENCH_VAR_DIR": str(var),
            # Files stay where the test process put them; only the broker folder is the test's.
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "SCANBENCH_PRIVATE_ROOT": str(settings.SCANBENCH_PRIVATE_ROOT),
        }
        options: dict[str, object] = {
            "data_folder_in": str(broker / "out"),
            "data_folder_out": str(broker / "out"),
            "processed_folder": str(broker / "processed"),
            "control_folder": str(broker / "control"),
            "store_processed": False,
        }
        run = Pipeline(broker="filesystem", env=env, tmp=tmp_path, transport_options=options)
    yield run
    for process in run.processes:
        if process.proc.poll() is None:
            process.kill()  # SIGKILL: a warm shutdown may wait on a task requeued by the kill
    if redis_db is not None:
        redis_db.flushdb()


def _slow_submission(tmp: Path, *, n_cases: int) -> Submission:
    """A segmentation submission that takes seconds a case to score: noisy masks, whose surface
    distances run over millions of voxels. Its task is sent on commit; a file-system test sends
    it itself."""
    shape = (256, 256, 128)
    phase, _ = segmentation_phase(tmp, n_cases=n_cases, shape=shape)
    rng = np.random.default_rng(0)
    noisy = tmp / "noisy"
    noisy.mkdir()
    archive = tmp / "noisy.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(n_cases):
            path = noisy / f"case_{i:03d}.nii.gz"
            write_nifti(path, (rng.random(shape) < 0.5).astype(np.uint8), (0.8, 0.8, 2.5))
            zf.write(path, path.name)
    shutil.rmtree(noisy)
    upload = SimpleUploadedFile(archive.name, archive.read_bytes())
    return submission_create(user=UserFactory(), phase=phase, file=upload)


def _evaluation(submission: Submission) -> Evaluation:
    return Evaluation.objects.get(submission=submission)


def _held(submission: Submission, delivery: int) -> Callable[[], bool]:
    """Delivery ``delivery`` of the scoring step has begun and holds the lease."""

    def check() -> bool:
        ev = _evaluation(submission)
        assert ev.state not in ("succeeded", "failed"), f"ended early: {ev.message} {ev.logs}"
        return ev.state == "scoring" and ev.deliveries == delivery and bool(ev.lease_owner)

    return check


def _final(submission: Submission, timeout: float = 60) -> Evaluation:
    return wait_for(
        lambda: Evaluation.objects.filter(
            submission=submission, state__in=["succeeded", "failed"]
        ).first(),
        timeout=timeout,
    )


# --- worker kills, on both brokers ----------------------------------------------------------------


@pytest.mark.worker
def test_worker_killed_while_holding_a_lease_is_retaken_within_a_minute_and_ends_once(
    pipeline, tmp_path
):
    """The embedded defaults (a 20 s lease, the reaper every 15 s) on both brokers."""
    pipeline.beat()
    first = pipeline.worker()
    submission = _slow_submission(tmp_path, n_cases=2)
    if pipeline.broker == "filesystem":
        pipeline.send(_evaluation(submission).pk)
    wait_for(_held(submission, 1), interval=0.05)
    first.kill()  # SIGKILL to the worker's process group while it scores under its lease
    killed_at = time.monotonic()
    assert not Result.objects.filter(evaluation__submission=submission).exists()
    pipeline.worker()
    wait_for(_held(submission, 2), timeout=75, interval=0.2)
    assert time.monotonic() - killed_at < 60, "the dead worker's evaluation was not retaken"
    evaluation = _final(submission)
    assert evaluation.state == "succeeded", evaluation.message
    assert evaluation.deliveries == 2
    assert evaluation.lease_owner == ""
    assert Result.objects.filter(evaluation=evaluation).count() == 2
    assert Evaluation.objects.filter(submission=submission).count() == 1
    wait_for(lambda: LeaderboardEntry.objects.filter(submission=submission, part="public").exists())


@pytest.mark.worker
def test_worker_killed_on_every_delivery_ends_failed_as_the_platforms_fault_once(
    pipeline, tmp_path
):
    pipeline.beat(**FAST)
    submission = _slow_submission(tmp_path, n_cases=2)
    for delivery in range(1, settings.SCANBENCH_MAX_DELIVERIES + 1):
        worker = pipeline.worker(**FAST)
        if delivery == 1 and pipeline.broker == "filesystem":
            pipeline.send(_evaluation(submission).pk)
        wait_for(_held(submission, delivery), timeout=45, interval=0.05)
        worker.kill()  # this delivery dies with its worker, like every one before it
    pipeline.worker(**FAST)  # runs the reaper, which finds the cap reached
    evaluation = _final(submission)
    assert evaluation.state == "failed"
    assert evaluation.platform_fault
    assert evaluation.deliveries == settings.SCANBENCH_MAX_DELIVERIES
    assert f"stopped {settings.SCANBENCH_MAX_DELIVERIES} times" in evaluation.message
    assert "does not count against your limits" in evaluation.message
    finished_at = evaluation.finished_at
    time.sleep(2)  # several more reaper runs change nothing
    evaluation.refresh_from_db()
    assert (evaluation.state, evaluation.finished_at) == ("failed", finished_at)
    assert evaluation.deliveries == settings.SCANBENCH_MAX_DELIVERIES
    assert not Result.objects.filter(evaluation__submission=submission).exists()
    user = submission.participant
    assert limits_for(user=user, phase=submission.phase).daily_used == 0


@pytest.mark.worker
def test_long_run_that_keeps_renewing_is_never_retaken(pipeline, tmp_path):
    """A 2 s lease, the reaper every 0.5 s on a second worker, a scoring of several leases."""
    pipeline.beat(**FAST)
    pipeline.worker(**FAST)
    pipeline.worker(**FAST)
    submission = _slow_submission(tmp_path, n_cases=3)
    if pipeline.broker == "filesystem":
        pipeline.send(_evaluation(submission).pk)
    wait_for(_held(submission, 1), timeout=30, interval=0.05)
    began = time.monotonic()
    expiries = set()
    while (ev := _evaluation(submission)).state == "scoring":
        assert ev.deliveries == 1 and ev.lease_owner, "a renewed lease was taken back"
        expiries.add(ev.lease_expires_at)
        time.sleep(0.2)
        assert time.monotonic() - began < 60
    held_for = time.monotonic() - began
    assert held_for > 3 * float(FAST["SCANBENCH_LEASE_S"]), f"scored in only {held_for:.1f} s"
    assert len(expiries) >= 4  # renewed again and again
    assert ev.state == "succeeded", ev.message
    assert ev.deliveries == 1
    reaps = sum(p.output().count("evaluations_reap") for p in pipeline.processes)
    assert reaps >= 4  # the reaper did run while the lease was held
    assert Result.objects.filter(evaluation=ev).count() == 2


@pytest.mark.worker
def test_second_delivery_during_a_live_lease_does_nothing(pipeline, tmp_path):
    pipeline.worker()
    submission = _slow_submission(tmp_path, n_cases=3)
    evaluation_id = _evaluation(submission).pk
    if pipeline.broker == "filesystem":
        pipeline.send(evaluation_id)
    wait_for(_held(submission, 1), timeout=30, interval=0.05)
    second = pipeline.worker()
    pipeline.send(evaluation_id)  # a duplicate: only the second worker is idle to take it
    wait_for(lambda: "held by another delivery" in second.output(), timeout=30)
    ev = _evaluation(submission)
    assert (ev.state, ev.deliveries) == ("scoring", 1)
    ev = _final(submission)
    assert ev.state == "succeeded", ev.message
    assert ev.deliveries == 1
    assert Result.objects.filter(evaluation=ev).count() == 2


# --- a stalled holder, the cap where a delivery begins (Redis) ------------------------------------


@pytest.mark.worker
def test_stalled_holder_whose_lease_was_taken_back_writes_nothing(start_worker, tmp_path):
    """SIGSTOP a worker well into scoring; its lease lapses and another worker takes the
    evaluation up from the start; SIGCONT: the stalled delivery, which finishes first, finds it
    lost its lease and writes nothing, and the new holder's results are the only ones."""
    stalled = start_worker(queues="cpu", extra_env=FAST)
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--schedule",
         str(tmp_path / "beat-schedule")],
        cwd=ROOT, env={**os.environ, **FAST}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        submission = _slow_submission(tmp_path, n_cases=3)
        wait_for(_held(submission, 1), timeout=30, interval=0.05)
        time.sleep(6)  # most of the scoring done
        os.killpg(stalled.proc.pid, signal.SIGSTOP)
        start_worker(queues="cpu", extra_env=FAST)  # runs the reaper, then the scoring
        try:
            wait_for(_held(submission, 2), timeout=30, interval=0.1)
        finally:
            os.killpg(stalled.proc.pid, signal.SIGCONT)
        holder = _evaluation(submission).lease_owner
        wait_for(lambda: "was taken back" in stalled.output(), timeout=30)
        # The stalled delivery ends first, while the new holder still scores: refused.
        wait_for(lambda: "no longer holds it" in stalled.output(), timeout=60)
        ev = _evaluation(submission)
        assert (ev.state, ev.lease_owner) == ("scoring", holder)
        assert not Result.objects.filter(evaluation=ev).exists()
        ev = _final(submission)
        assert (ev.state, ev.deliveries) == ("succeeded", 2)
        assert Result.objects.filter(evaluation=ev).count() == 2
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=30)


@pytest.mark.worker
def test_delivery_past_the_cap_fails_the_evaluation_where_it_begins(start_worker, tmp_path):
    """The broker hands back a task whose step already killed SCANBENCH_MAX_DELIVERIES workers
    (for example a Redis visibility timeout): the worker that takes it fails the evaluation."""
    phase, preds = classification_phase(tmp_path)
    cap = settings.SCANBENCH_MAX_DELIVERIES
    submission = submission_create(
        user=UserFactory(), phase=phase, file=SimpleUploadedFile("p.csv", preds.read_bytes())
    )  # its task waits in Redis until a worker starts
    Evaluation.objects.filter(submission=submission).update(
        state="scoring",
        deliveries=cap,
        stage_deliveries=cap,
        lease_owner="a-delivery-that-died",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    start_worker(queues="cpu")
    ev = _final(submission)
    assert (ev.state, ev.platform_fault, ev.deliveries) == ("failed", True, cap)
    assert f"stopped {cap} times" in ev.message
    assert f"refused delivery {cap + 1}" in ev.logs
    assert not Result.objects.filter(evaluation=ev).exists()


# --- the services, in this process ----------------------------------------------------------------


def _queued(tmp_path: Path) -> Evaluation:
    phase, preds = classification_phase(tmp_path, n_cases=20)
    submission = submission_create(
        user=UserFactory(), phase=phase, file=SimpleUploadedFile("p.csv", preds.read_bytes())
    )
    return _evaluation(submission)


_RESULTS = {"public": {"aggregates": {"auc_roc": 1.0}, "cases": {}, "meta": {}}}


@pytest.mark.django_db
def test_only_the_lease_holder_may_finish_or_fail(tmp_path):
    ev = _queued(tmp_path)
    assert evaluation_begin(evaluation_id=ev.pk, stage="scoring") is not None
    ev.refresh_from_db()
    first = ev.lease_owner
    assert first and ev.lease_expires_at > timezone.now()
    assert evaluation_begin(evaluation_id=ev.pk, stage="scoring") is None  # live lease: nothing
    ev.refresh_from_db()
    assert (ev.deliveries, ev.lease_owner) == (1, first)

    Evaluation.objects.filter(pk=ev.pk).update(lease_expires_at=timezone.now())  # it lapsed
    assert evaluation_begin(evaluation_id=ev.pk, stage="scoring") is not None
    ev.refresh_from_db()
    second = ev.lease_owner
    assert second != first and ev.deliveries == 2

    assert not evaluation_finish(
        evaluation_id=ev.pk, results=_RESULTS, timings={}, lease_owner=first
    )
    assert not evaluation_fail(evaluation_id=ev.pk, message="stale", lease_owner=first)
    ev.refresh_from_db()
    assert ev.state == "scoring" and not Result.objects.filter(evaluation=ev).exists()
    assert evaluation_finish(evaluation_id=ev.pk, results=_RESULTS, timings={}, lease_owner=second)
    ev.refresh_from_db()
    assert (ev.state, ev.lease_owner, ev.lease_expires_at) == ("succeeded", "", None)


@pytest.mark.django_db
def test_reaper_retakes_a_lapsed_lease_never_a_live_one_and_fails_at_the_cap(tmp_path):
    now = timezone.now()
    long_running, dead, dead_again = (_queued(tmp_path / str(i)) for i in range(3))
    cap = settings.SCANBENCH_MAX_DELIVERIES
    # Began two hours ago and is still renewed: left alone, however long it runs.
    Evaluation.objects.filter(pk=long_running.pk).update(
        state="scoring", deliveries=1, stage_deliveries=1, lease_owner="alive",
        started_at=now - timedelta(hours=2), lease_expires_at=now + timedelta(seconds=5),
    )  # fmt: skip
    Evaluation.objects.filter(pk=dead.pk).update(
        state="scoring", deliveries=1, stage_deliveries=1, lease_owner="dead",
        started_at=now - timedelta(seconds=30), lease_expires_at=now - timedelta(seconds=1),
    )  # fmt: skip
    Evaluation.objects.filter(pk=dead_again.pk).update(
        state="scoring", deliveries=cap, stage_deliveries=cap, lease_owner="dead",
        started_at=now - timedelta(seconds=30), lease_expires_at=now - timedelta(seconds=1),
    )  # fmt: skip
    assert evaluations_reap(now=now) == {
        "resent": 0,
        "retaken": 1,
        "failed": 1,
        "ranges_resent": 0,
        "board_resent": 0,
    }
    long_running.refresh_from_db()
    dead.refresh_from_db()
    dead_again.refresh_from_db()
    assert (long_running.state, long_running.lease_owner) == ("scoring", "alive")
    assert (dead.state, dead.lease_owner, dead.enqueued_at) == ("scoring", "", now)
    assert (dead_again.state, dead_again.platform_fault) == ("failed", True)
    assert f"gave up on the scoring step after {cap} deliveries" in dead_again.logs
    # The re-sent task has not begun yet: not sent again before SCANBENCH_REQUEUE_AFTER_S.
    assert evaluations_reap(now=now + timedelta(seconds=1))["resent"] == 0


@pytest.mark.django_db(transaction=True)
def test_lease_is_renewed_while_the_block_runs_and_released_after(tmp_path, settings):
    settings.SCANBENCH_LEASE_S = 1.0
    settings.SCANBENCH_LEASE_RENEW_S = 0.2
    ev = _queued(tmp_path)
    with evaluation_lease(evaluation_id=ev.pk) as lease:
        assert evaluation_begin(evaluation_id=ev.pk, stage="scoring") is not None
        ev.refresh_from_db()
        first_expiry = ev.lease_expires_at
        time.sleep(2.5)  # more than two lease lengths
        ev.refresh_from_db()
        assert ev.lease_owner == lease.owner
        assert ev.lease_expires_at > max(first_expiry, timezone.now())
        assert evaluations_reap()["retaken"] == 0
        assert not lease.lost
    ev.refresh_from_db()
    assert (ev.state, ev.lease_owner, ev.lease_expires_at) == ("scoring", "", None)
