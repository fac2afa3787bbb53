"""The project-wide task decorator: every task is late-acknowledged, re-queued if its worker dies,
time-limited and routed to its queue, set once here rather than per task."""

from collections.abc import Callable
from typing import Any, Literal

from celery import shared_task

Queue = Literal["cpu", "gpu"]


def scanbench_task(
    *,
    queue: Queue,
    time_limit: int,
    soft_time_limit: int | None = None,
    max_retries: int = 3,
    autoretry_for: tuple[type[BaseException], ...] = (),
    **options: Any,
) -> Callable[[Callable[..., Any]], Any]:
    """Declare a Celery task with Scanbench's conventions.

    ``acks_late`` + ``reject_on_worker_lost``: a task whose worker is killed goes back to the
    broker instead of being lost, so every task must be idempotent (check the state, lock the
    row, do each step once per attempt). Not every broker keeps it (kombu's file-system
    transport drops a message once a worker has read it), so the evaluation tasks do not rely
    on it: they hold their evaluation under a renewed lease and the reaper re-sends whatever a
    dead worker held (``challenges.services.evaluations``). ``soft_time_limit`` defaults to 90 %
    of the hard one so the task can record a clean failure before it is killed.
    """

    def decorate(func: Callable[..., Any]) -> Any:
        return shared_task(
            acks_late=True,
            reject_on_worker_lost=True,
            scanbench_queue=queue,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit or max(1, int(time_limit * 0.9)),
            max_retries=max_retries,
            autoretry_for=autoretry_for,
            retry_backoff=True,
            retry_backoff_max=300,
            retry_jitter=True,
            **options,
        )(func)

    return decorate


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    """Celery router: send each task to the queue its decorator named (``task_routes``)."""
    queue = getattr(task, "scanbench_queue", None)
    return {"queue": queue} if queue else None
