"""A task sent through the real Redis broker is run by a real worker process and its effect is
visible in the real PostgreSQL database."""

from challenges.models import WorkerHeartbeat
from challenges.tasks import worker_heartbeat
from tests.helpers import wait_for


def test_task_through_redis_reaches_worker_and_writes_database(start_worker):
    start_worker(queues="cpu")
    worker_heartbeat.apply_async(kwargs={"queue": "cpu"})
    beat = wait_for(lambda: WorkerHeartbeat.objects.filter(queue="cpu").first(), timeout=60)
    assert beat.hostname


def test_task_decorator_sets_late_ack_limits_and_queue():
    assert worker_heartbeat.acks_late is True
    assert worker_heartbeat.reject_on_worker_lost is True
    assert worker_heartbeat.scanbench_queue == "cpu"
    assert worker_heartbeat.time_limit == 30
    assert 0 < worker_heartbeat.soft_time_limit < worker_heartbeat.time_limit
