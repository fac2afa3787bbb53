"""API throttles. Rates are read from settings on every request (DRF's own classes read theirs
once, at import), so each can be changed by environment and in tests."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle


class AnonymousThrottle(AnonRateThrottle):
    """Calls without credentials, per client address: ``SCANBENCH_API_ANON_RATE``."""

    def get_rate(self) -> str | None:
        return settings.SCANBENCH_API_ANON_RATE


class UploadThrottle(UserRateThrottle):
    """Uploads (submission create), per user: ``SCANBENCH_API_UPLOAD_RATE``."""

    scope = "uploads"

    def get_rate(self) -> str | None:
        return settings.SCANBENCH_API_UPLOAD_RATE


class TokenObtainThrottle(SimpleRateThrottle):
    """Token requests (``POST /api/token/``), per client address whoever asks:
    ``SCANBENCH_API_TOKEN_RATE``. Failed passwords are also counted by the log-in throttle."""

    scope = "token"

    def get_rate(self) -> str | None:
        return settings.SCANBENCH_API_TOKEN_RATE

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
