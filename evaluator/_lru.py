"""Small in-process caches kept as plain dictionaries in use order (least recently used first)."""

from __future__ import annotations

from typing import Any


def remember(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> Any:
    """Keep ``value`` under ``key``, letting go of the least recently used entry when full."""
    if len(cache) >= limit:
        cache.pop(next(iter(cache)))
    cache[key] = value
    return value


def recall(cache: dict[Any, Any], key: Any) -> Any:
    """The value under ``key`` (None when absent), now the most recently used: an entry asked
    for again and again stays while others come and go."""
    value = cache.pop(key, None)
    if value is not None:
        cache[key] = value
    return value
