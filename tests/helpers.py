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


def submit_and_score(phase: Any, user: Any, body: bytes, name: str = "p.csv") -> Any:
    """Upload ``body`` as ``user``, score it and apply it to the board, as the workers would
    (in this process); returns the evaluation."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from challenges.services.leaderboards import leaderboard_apply_result
    from challenges.services.scoring import evaluation_score
    from challenges.services.submissions import submission_create

    submission = submission_create(user=user, phase=phase, file=SimpleUploadedFile(name, body))
    evaluation = submission.evaluations.get()
    evaluation_score(evaluation_id=evaluation.pk)
    leaderboard_apply_result(evaluation_id=evaluation.pk)
    return evaluation
