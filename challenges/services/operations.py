"""What operators watch: readiness of the parts the platform needs, and Prometheus metrics.

Readiness (``/readyz``) checks the database, the broker, both storage roots and the sandbox
backend, each within a short timeout, and says which failed without quoting addresses or
secrets. Metrics (``/metrics``) are computed from the database and the broker at each scrape,
so every web process reports the same numbers and none has to be the one that saw an event.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import Count, DurationField, ExpressionWrapper, F, Sum

#: the Celery queues of docs/pipeline.md
QUEUES = ("cpu", "gpu")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float
    #: a failed required check makes the process not ready (503); the sandbox is optional
    required: bool = True


def _timed(name: str, fn: Callable[[], str], *, required: bool = True) -> Check:
    started = time.perf_counter()
    try:
        detail = fn()
        ok = True
    except Exception as exc:  # a check reports, never raises; only the kind of failure is shown
        detail, ok = f"{type(exc).__name__}", False
    return Check(name, ok, detail, round(time.perf_counter() - started, 4), required)


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return connection.vendor


def _broker() -> str:
    from kombu.connection import Connection

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as conn:  # type: ignore[no-untyped-call]
        conn.ensure_connection(max_retries=1, timeout=2)
        return str(conn.transport_cls)


def _storage() -> str:
    from challenges.services.storage import private_storage, public_storage, storage_is_s3

    if storage_is_s3():
        # Both buckets answer HEAD with these credentials, and the worker cache is writable.
        for storage in (public_storage(), private_storage()):
            bucket = storage.bucket  # type: ignore[attr-defined]
            bucket.meta.client.head_bucket(Bucket=bucket.name)
        cache = Path(settings.SCANBENCH_S3_CACHE_DIR)
        cache.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".ready-", dir=cache)
        os.close(fd)
        os.unlink(name)
        return "s3 (public and private buckets reachable, cache writable)"
    for root in (settings.MEDIA_ROOT, settings.SCANBENCH_PRIVATE_ROOT):
        Path(root).mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".ready-", dir=root)
        os.close(fd)
        os.unlink(name)
    return "file system (media and private roots writable)"


def _sandbox() -> str:
    from evaluator.sandbox import NoSandbox, get_backend

    backend = get_backend(settings.SCANBENCH_SANDBOX_BACKEND)
    if isinstance(backend, NoSandbox):
        raise RuntimeError("no sandbox: model, container and code phases cannot run")
    problems = backend.check()
    if problems:
        raise RuntimeError("; ".join(problems))
    return backend.name


def readiness() -> list[Check]:
    """Every check, in order; the process is ready when every required one passed."""
    return [
        _timed("database", _database),
        _timed("broker", _broker),
        _timed("storage", _storage),
        _timed("sandbox", _sandbox, required=False),
    ]


# --- Prometheus text format ------------------------------------------------------------------


def queue_names() -> list[str]:
    """The platform's queues: cpu, gpu and every gpu-<kind> queue a phase sends its runs to."""
    from challenges.models import Phase

    kinds = Phase.objects.exclude(gpu_queue="").values_list("gpu_queue", flat=True).distinct()
    return [*QUEUES, *sorted(set(kinds) - set(QUEUES))]


def _queue_lengths() -> dict[str, int | None]:
    """Messages waiting in each queue (Redis: the list of that name; other brokers: a passive
    declare). None where the broker cannot say."""
    from kombu.connection import Connection

    names = queue_names()
    out: dict[str, int | None] = {}
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as conn:  # type: ignore[no-untyped-call]
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            for queue in names:
                try:
                    if settings.CELERY_BROKER_URL.startswith("redis"):
                        out[queue] = int(channel.client.llen(queue))
                    else:
                        out[queue] = int(channel.queue_declare(queue, passive=True).message_count)
                except Exception:
                    out[queue] = None
    except Exception:
        return dict.fromkeys(names)
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text() -> str:
    """The metrics in Prometheus' text exposition format (version 0.0.4)."""
    from challenges.models import BundleUpload, Evaluation, EvaluationState, Submission

    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]):  # type: ignore[no-untyped-def]
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{shown}}} {value:g}" if shown else f"{name} {value:g}")

    queues = _queue_lengths()
    metric(
        "scanbench_queue_length",
        "gauge",
        "Messages waiting in a Celery queue (NaN: the broker could not say).",
        [({"queue": q}, float("nan") if n is None else float(n)) for q, n in queues.items()],
    )
    states = dict(Evaluation.objects.values_list("state").annotate(n=Count("id")))
    metric(
        "scanbench_evaluations",
        "gauge",
        "Evaluations by state.",
        [({"state": s}, float(states.get(s, 0))) for s in EvaluationState.values],
    )
    failed = Evaluation.objects.filter(state=EvaluationState.FAILED)
    faults = dict(failed.values_list("platform_fault").annotate(n=Count("id")))
    metric(
        "scanbench_evaluation_failures_total",
        "counter",
        "Failed evaluations by whose fault: the platform's (not counted against limits) or "
        "the submission's.",
        [
            ({"reason": "platform"}, float(faults.get(True, 0))),
            ({"reason": "submission"}, float(faults.get(False, 0))),
        ],
    )
    done = Evaluation.objects.filter(
        state=EvaluationState.SUCCEEDED, finished_at__isnull=False
    ).annotate(
        took=ExpressionWrapper(F("finished_at") - F("queued_at"), output_field=DurationField())
    )
    by_kind = done.values("submission__kind").annotate(n=Count("id"), total=Sum("took"))
    samples_sum, samples_count = [], []
    for row in by_kind:
        labels = {"kind": str(row["submission__kind"])}
        total = row["total"].total_seconds() if row["total"] is not None else 0.0
        samples_sum.append((labels, total))
        samples_count.append((labels, float(row["n"])))
    metric(
        "scanbench_evaluation_seconds_sum",
        "counter",
        "Seconds from queueing to the result, summed over succeeded evaluations, by kind.",
        samples_sum,
    )
    metric(
        "scanbench_evaluation_seconds_count",
        "counter",
        "Succeeded evaluations, by kind of submission.",
        samples_count,
    )
    kinds = dict(Submission.objects.values_list("kind").annotate(n=Count("id")))
    metric(
        "scanbench_submissions_total",
        "counter",
        "Uploaded submissions by kind (baselines included).",
        [({"kind": k}, float(n)) for k, n in sorted(kinds.items())],
    )
    uploads = dict(BundleUpload.objects.values_list("state").annotate(n=Count("id")))
    metric(
        "scanbench_bundle_uploads_total",
        "counter",
        "Bundle uploads by state.",
        [({"state": s}, float(n)) for s, n in sorted(uploads.items())],
    )
    return "\n".join(lines) + "\n"
