"""Celery tasks: thin wrappers that load rows and call services."""

import socket

from challenges.celery import scanbench_task
from challenges.services.workers import worker_heartbeat_record


@scanbench_task(queue="cpu", time_limit=30)
def worker_heartbeat(*, queue: str = "cpu") -> None:
    """Record that a worker consuming ``queue`` is alive (shown in the admin)."""
    worker_heartbeat_record(hostname=socket.gethostname(), queue=queue)
