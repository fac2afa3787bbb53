"""From upload to leaderboard through the real API, Redis, a real worker and PostgreSQL."""

from __future__ import annotations

import io

import pytest
from rest_framework.test import APIClient

from challenges.models import Evaluation, LeaderboardEntry, Result
from tests.factories import UserFactory, classification_phase, segmentation_phase
from tests.helpers import final_evaluation as _final
from tests.helpers import wait_for


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _upload(client, phase, name: str, data: bytes):
    f = io.BytesIO(data)
    f.name = name
    return client.post(f"/api/phases/{phase.pk}/submissions/", {"file": f}, format="multipart")


def test_prediction_csv_is_scored_and_lands_on_the_leaderboard(start_worker, tmp_path):
    phase, preds = classification_phase(tmp_path)
    user = UserFactory()
    start_worker(queues="cpu")
    response = _upload(_client(user), phase, "preds.csv", preds.read_bytes())
    assert response.status_code == 201, response.content
    assert response.json()["limits"]["daily_used"] == 1
    evaluation = _final(response.json()["id"])
    assert evaluation.state == "succeeded", evaluation.message
    results = {r.part: r for r in Result.objects.filter(evaluation=evaluation)}
    assert set(results) == {"public", "private"}
    assert 0.5 < results["public"].aggregates["auc_roc"] <= 1.0
    assert results["public"].meta["n_cases"] == 60 and results["private"].meta["n_cases"] == 140
    row = wait_for(lambda: LeaderboardEntry.objects.filter(phase=phase, part="public").first())
    assert row.rank == 1 and row.display_name == user.username
    assert row.score == results["public"].aggregates["auc_roc"]
    assert row.score_ci_low is not None and row.score_ci_low < row.score < row.score_ci_high
    board = APIClient().get(f"/api/phases/{phase.pk}/leaderboard/").json()
    assert board["results"][0]["display_name"] == user.username


def test_bad_predictions_fail_with_a_message_naming_the_case(start_worker, tmp_path):
    phase, preds = classification_phase(tmp_path)
    lines = preds.read_text().splitlines()
    case_id = lines[3].split(",")[0]
    lines[3] = f"{case_id},1.7"
    start_worker(queues="cpu")
    response = _upload(_client(UserFactory()), phase, "preds.csv", "\n".join(lines).encode())
    evaluation = _final(response.json()["id"])
    assert evaluation.state == "failed"
    assert case_id in evaluation.message and "1.7" in evaluation.message
    assert not evaluation.platform_fault
    assert not Result.objects.filter(evaluation=evaluation).exists()


def test_segmentation_zip_is_scored_per_part(start_worker, tmp_path):
    phase, archive = segmentation_phase(tmp_path)
    start_worker(queues="cpu")
    response = _upload(_client(UserFactory()), phase, "masks.zip", archive.read_bytes())
    assert response.status_code == 201, response.content
    evaluation = _final(response.json()["id"])
    assert evaluation.state == "succeeded", evaluation.message
    public = Result.objects.get(evaluation=evaluation, part="public")
    assert 0.0 < public.aggregates["dice"] < 1.0
    assert len(public.cases) == 2  # 30 % of 6 cases


@pytest.mark.django_db
def test_upload_of_the_wrong_type_is_refused_with_4xx(tmp_path):
    phase, _ = classification_phase(tmp_path)
    response = _upload(_client(UserFactory()), phase, "model.onnx", b"\x00" * 10)
    assert response.status_code == 400
    assert "takes prediction file as .csv or .zip" in response.json()["detail"]
    assert not Evaluation.objects.exists()
