"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_for(
    predicate: Callable[[], object], *, timeout: float = 60, interval: float = 0.1
) -> object:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s: {predicate}")


def final_evaluation(submission_id: int, *, timeout: float = 90) -> Any:
    """Wait until the submission's evaluation has succeeded or failed; return it."""
    from challenges.models import Evaluation

    return wait_for(
        lambda: Evaluation.objects.filter(
            submission_id=submission_id, state__in=["succeeded", "failed"]
        ).first(),
        timeout=timeout,
    )


def compute_rank_ranges(phase: Any) -> dict[str, int] | None:
    """Run the rank-range computation a quiet board gets (``leaderboard_ranges``) now, as if
    its due time had passed: tests do not wait for it."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from challenges.services.leaderboards import leaderboard_ranges

    later = timezone.now() + timedelta(seconds=settings.SCANBENCH_RANGES_MAX_WAIT_S + 1)
    return leaderboard_ranges(phase_id=phase.pk, now=later)
