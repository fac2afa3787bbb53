"""Log-in throttling: failed log-ins are counted per username and per client address in Django's
cache; past the limit further attempts are refused *before any password is checked* until the
15-minute window that began with the first failure has passed.

The cache must be shared by every web process (``SCANBENCH_CACHE_URL``, Redis in production);
with the embedded per-process default each process counts on its own.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.cache import cache

from challenges.usernames import username_key

WINDOW_S = 15 * 60


def client_address(meta: Mapping[str, Any]) -> str:
    """The client's address: the peer, or behind a trusted proxy (``SCANBENCH_BEHIND_PROXY``)
    the last ``X-Forwarded-For`` entry, the one that proxy added. Same rule as the API
    throttles (DRF ``NUM_PROXIES``), so a client cannot pick its own address."""
    forwarded = str(meta.get("HTTP_X_FORWARDED_FOR") or "")
    if settings.SCANBENCH_BEHIND_PROXY and forwarded:
        return forwarded.split(",")[-1].strip()
    return str(meta.get("REMOTE_ADDR") or "")


def _counters(*, username: str, address: str) -> list[tuple[str, int]]:
    digest = hashlib.sha256(username_key(username).encode()).hexdigest()
    counters = [(f"login-fail:user:{digest}", settings.SCANBENCH_LOGIN_FAILURES_PER_15MIN)]
    if address:
        counters.append(
            (f"login-fail:addr:{address}", settings.SCANBENCH_LOGIN_FAILURES_PER_ADDRESS_PER_15MIN)
        )
    return counters


def login_refused_for(*, username: str, address: str) -> int | None:
    """Seconds until this username may try again from this address, or None if it may now."""
    now = time.time()
    waits = []
    for key, limit in _counters(username=username, address=address):
        if cache.get(key, 0) >= limit:
            started = cache.get(f"{key}:t", now)
            waits.append(max(1, int(started + WINDOW_S - now) + 1))
    return max(waits) if waits else None


def login_failure_record(*, username: str, address: str) -> None:
    """Count one failed log-in against the username and the address."""
    for key, _ in _counters(username=username, address=address):
        # add() only starts a window; incr() is atomic on Redis and on the local-memory cache.
        cache.add(f"{key}:t", time.time(), timeout=WINDOW_S)
        cache.add(key, 0, timeout=WINDOW_S)
        try:
            cache.incr(key)
        except ValueError:  # the window ended between add() and incr()
            cache.set(key, 1, timeout=WINDOW_S)


def login_failures_forget(*, username: str) -> None:
    """A successful log-in clears the username's count (not the address's)."""
    key, _ = _counters(username=username, address="")[0]
    cache.delete_many([key, f"{key}:t"])
