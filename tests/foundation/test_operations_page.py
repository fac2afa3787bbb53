"""The staff page of queues and workers (/console/operations/): queue lengths from the real
broker, workers seen recently with the stale ones marked in words, the evaluations running now
with their lease, the last failures; nobody but staff sees it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from challenges.models import EvaluationState, WorkerHeartbeat
from challenges.services.submissions import submission_create
from tests.factories import classification_phase

URL = "/console/operations/"


@pytest.fixture
def broker_queues() -> Iterator[None]:
    """Three messages waiting on the cpu queue of the real Redis broker, none on gpu."""
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("needs Redis as the broker: run it through scripts/test")
    import redis

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("cpu", "gpu")
    broker.rpush("cpu", b"{}", b"{}", b"{}")
    yield
    broker.delete("cpu", "gpu")


def _user(name: str, *, staff: bool = False) -> User:
    return User.objects.create_user(
        username=name, email=f"{name}@example.org", password="x", is_staff=staff
    )


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_staff_see_queues_a_running_evaluation_a_stale_worker_and_failures(
    broker_queues: None, tmp_path: Path
) -> None:
    phase, preds = classification_phase(tmp_path)
    now = timezone.now()
    running = submission_create(
        user=_user("a"), phase=phase, file=SimpleUploadedFile("a.csv", preds.read_bytes())
    ).evaluations.get()
    running.state = EvaluationState.SCORING
    running.started_at = now - timedelta(seconds=30)
    running.lease_owner = "f00dfeedcafe4242"
    running.lease_expires_at = now + timedelta(seconds=20)
    running.save()
    failed = submission_create(
        user=_user("b"), phase=phase, file=SimpleUploadedFile("b.csv", preds.read_bytes())
    ).evaluations.get()
    failed.state = EvaluationState.FAILED
    failed.platform_fault = True
    failed.message = "The worker stopped 3 times in a row."
    failed.finished_at = now
    failed.save()
    WorkerHeartbeat.objects.create(
        hostname="gpu-old", queue="gpu", seen_at=now - timedelta(hours=2)
    )
    WorkerHeartbeat.objects.create(
        hostname="cpu-fresh", queue="cpu", seen_at=now, sandbox_backend="docker"
    )

    response = _client(_user("ops", staff=True)).get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert '<tr data-queue="cpu"><td>cpu</td><td class="num">3</td>' in html
    assert '<tr data-queue="gpu"><td>gpu</td><td class="num">0</td>' in html
    stale = html.split('data-worker="gpu-old"')[1].split("</tr>")[0]
    assert 'class="state-failed">stale: no heartbeat for 2' in stale
    fresh = html.split('data-worker="cpu-fresh"')[1].split("</tr>")[0]
    assert "alive" in fresh and "stale" not in fresh and "docker" in fresh
    row = html.split(f'data-evaluation="{running.pk}"')[1].split("</tr>")[0]
    assert f">{running.submission_id}</a>" in row and phase.challenge.slug in row
    assert phase.slug in row and "Scoring" in row and "f00dfeedcafe" in row
    assert running.started_at.strftime("%Y-%m-%d %H:%M:%S") in row
    failure = html.split('id="failures"')[1].split(f'data-evaluation="{failed.pk}"')[1]
    assert "platform" in failure.split("</tr>")[0]
    assert "The worker stopped 3 times in a row." in failure.split("</tr>")[0]
    assert "Content-Security-Policy" in response.headers or not settings.SCANBENCH_CSP
    assert "<script" not in html  # nothing inline that would need the nonce


@pytest.mark.django_db
def test_participants_get_404_and_visitors_are_sent_to_log_in() -> None:
    assert _client(_user("participant")).get(URL).status_code == 404
    response = Client().get(URL)
    assert response.status_code == 302 and "/login" in response["Location"]


@pytest.mark.django_db
def test_the_organize_page_links_the_operations_page_for_staff_only() -> None:
    staff = User.objects.create_superuser(username="root", email="root@example.org", password="x")
    assert URL in _client(staff).get("/organize/").content.decode()
    organizer = _user("organizer")
    organizer.user_permissions.add(Permission.objects.get(codename="add_challenge"))
    assert URL not in _client(organizer).get("/organize/").content.decode()
