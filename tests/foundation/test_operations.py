"""Operators' endpoints against the real services: /readyz checks PostgreSQL, the broker
(Redis), both storage roots and the sandbox; /metrics reports queue lengths from the broker and
evaluation counts from the database, to the loopback address or a bearer token only."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.test import Client

from challenges.models import Evaluation, Submission
from tests.factories import PhaseFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_readyz_checks_every_part_and_answers_any_host() -> None:
    response = Client(HTTP_HOST="some-internal-name:8000").get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "broker", "storage", "sandbox"}
    for name in ("database", "broker", "storage"):
        assert body["checks"][name]["ok"] is True and body["checks"][name]["required"] is True
    assert body["checks"]["database"]["detail"] == "postgresql"
    assert body["checks"]["sandbox"]["required"] is False


def test_readyz_is_503_when_the_broker_is_down_and_names_no_address(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert "127.0.0.1" not in response.content.decode()


def test_readyz_reports_a_missing_sandbox_as_degraded_not_unready(settings: Any) -> None:
    settings.SCANBENCH_SANDBOX_BACKEND = "none"
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["degraded"] == ["sandbox"]


def _submission(state: str) -> Submission:
    phase = PhaseFactory()
    submission = Submission(phase=phase, participant=UserFactory(), kind="predictions")
    submission.file.save("p.csv", ContentFile(b"case_id,score\n"), save=False)
    submission.save()
    Evaluation.objects.create(submission=submission, state=state)
    return submission


def test_metrics_count_evaluations_and_read_queue_lengths(settings: Any) -> None:
    import redis

    _submission("queued")
    _submission("failed")
    _submission("failed")
    Evaluation.objects.filter(state="failed").update(platform_fault=False)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("cpu", "gpu")
    broker.lpush("cpu", b"x", b"y", b"z")
    try:
        response = Client().get("/metrics")  # the test client's address is 127.0.0.1
    finally:
        broker.delete("cpu")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    assert 'scanbench_queue_length{queue="cpu"} 3' in text
    assert 'scanbench_queue_length{queue="gpu"} 0' in text
    assert 'scanbench_evaluations{state="queued"} 1' in text
    assert 'scanbench_evaluations{state="failed"} 2' in text
    assert 'scanbench_evaluation_failures_total{reason="submission"} 2' in text
    assert 'scanbench_submissions_total{kind="predictions"} 3' in text
    assert "# TYPE scanbench_evaluations gauge" in text


def test_metrics_are_for_loopback_or_the_token_only(settings: Any) -> None:
    outside = Client(REMOTE_ADDR="203.0.113.9")
    assert outside.get("/metrics").status_code == 403
    settings.SCANBENCH_METRICS_TOKEN = "s3cret-token"
    assert Client().get("/metrics").status_code == 403  # loopback needs the token once set
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    ok = outside.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200 and b"scanbench_evaluations" in ok.content


def test_the_admin_is_served_at_its_configured_path() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SCANBENCH_ADMIN_PATH": "/ops-7f3/"}
    code = "from django.urls import reverse; print(reverse('admin:index'))"
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=root, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "/ops-7f3/"
    assert Client().get("/admin/").status_code in (301, 302, 200)  # the default path here
