"""Middleware of the web process."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from django.conf import settings
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


class ContentSecurityPolicyMiddleware:
    """A Content-Security-Policy with no outside origin on every response that does not set its
    own: scripts only from this site or an inline ``<script nonce="{{ request.csp_nonce }}">``
    of the page (a fresh nonce per request), styles from this site (and ``style`` attributes,
    which the server-side charts use), images from this site or ``data:``, no plugins, no
    framing, forms posting only here. ``SCANBENCH_CSP=false`` turns it off."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        nonce = secrets.token_urlsafe(16)
        request.csp_nonce = nonce  # type: ignore[attr-defined]
        response = self.get_response(request)
        if settings.SCANBENCH_CSP and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = (
                "default-src 'self'; "
                f"script-src 'self' 'nonce-{nonce}'; "
                "style-src 'self' 'unsafe-inline'; "
                "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
                "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
            )
        return response
