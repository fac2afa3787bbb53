"""Middleware of the web process."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class HealthCheckMiddleware:
    """Answers ``/healthz`` first, before the host is checked against ``ALLOWED_HOSTS`` and before
    the HTTPS redirect: the container's health check calls ``http://127.0.0.1:8000/healthz``,
    whose host and scheme production rightly refuses for every other page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == "/healthz" and request.method in ("GET", "HEAD"):
            from challenges.views import healthz

            return healthz(request)
        if request.path_info == "/readyz" and request.method in ("GET", "HEAD"):
            from challenges.views_ops import readyz

            return readyz(request)
        return self.get_response(request)
