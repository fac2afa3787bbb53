from django.db import transaction
from django.utils import timezone

from challenges.models import WorkerHeartbeat


@transaction.atomic
def worker_heartbeat_record(*, hostname: str, queue: str, sandbox_backend: str = "") -> None:
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        queue=queue,
        defaults={"seen_at": timezone.now(), "sandbox_backend": sandbox_backend},
    )
