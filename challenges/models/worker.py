from django.db import models


class WorkerHeartbeat(models.Model):
    """Last sign of life of each worker and queue, written by the `worker_heartbeat` task."""

    hostname = models.CharField(max_length=200)
    queue = models.CharField(max_length=16)
    seen_at = models.DateTimeField()
    sandbox_backend = models.CharField(max_length=16, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hostname", "queue"], name="heartbeat_unique_worker"),
        ]

    def __str__(self) -> str:
        return f"{self.hostname} ({self.queue})"
