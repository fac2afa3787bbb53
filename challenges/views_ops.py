"""Operators' endpoints: readiness and Prometheus metrics (docs/operations.md)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from challenges.services.operations import prometheus_text, readiness


def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker and both storage roots answer, else 503; the sandbox
    is reported but optional (without one, model and code phases cannot run)."""
    checks = readiness()
    ready = all(c.ok for c in checks if c.required)
    body = {
        "status": "ready" if ready else "not ready",
        "degraded": [c.name for c in checks if not c.ok and not c.required],
        "checks": {
            c.name: {"ok": c.ok, "detail": c.detail, "seconds": c.seconds, "required": c.required}
            for c in checks
        },
    }
    return JsonResponse(body, status=200 if ready else 503)


def _allowed(request: HttpRequest) -> bool:
    token = settings.SCANBENCH_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    return request.META.get("REMOTE_ADDR") in ("127.0.0.1", "::1")


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics: with ``SCANBENCH_METRICS_TOKEN`` set, for ``Authorization: Bearer
    <token>``; without it, for the loopback address only."""
    if not _allowed(request):
        return HttpResponse("metrics: forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(prometheus_text(), content_type="text/plain; version=0.0.4")
