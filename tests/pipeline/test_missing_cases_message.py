"""A submission missing cases is scored with worst values and says so, never a plain "Scored."."""

from __future__ import annotations

import io

from rest_framework.test import APIClient

from challenges.models import Case, Result
from challenges.services.evaluations import scored_message
from tests.factories import UserFactory, classification_phase
from tests.helpers import final_evaluation


def _upload(user, phase, data: bytes):
    client = APIClient()
    client.force_authenticate(user)
    f = io.BytesIO(data)
    f.name = "preds.csv"
    return client.post(f"/api/phases/{phase.pk}/submissions/", {"file": f}, format="multipart")


def test_missing_cases_are_counted_over_both_parts_and_named_in_id_order(start_worker, tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=171)
    header, *rows = preds.read_text().splitlines()
    rows.sort()
    kept, dropped = rows[121:], sorted(r.split(",")[0] for r in rows[:121])
    start_worker(queues="cpu")
    response = _upload(UserFactory(), phase, "\n".join([header, *kept]).encode())
    assert response.status_code == 201, response.content
    evaluation = final_evaluation(response.json()["id"])
    assert evaluation.state == "succeeded", evaluation.message
    assert evaluation.message == (
        "Scored; 121 of 171 test cases were missing and got the worst value: "
        f"{', '.join(dropped[:5])} and 116 more."
    )
    # The counts are the sum over the parts the evaluator scored and reported missing.
    results = Result.objects.filter(evaluation=evaluation)
    assert sum(len(r.meta["missing_cases"]) for r in results) == 121
    assert sum(r.meta["n_cases"] for r in results) == 171
    # The message names the participant's own omissions in id order, not by part: the ids
    # shown are the first five omissions whether they are public or private.
    parts = dict(
        Case.objects.filter(dataset=phase.dataset).values_list("case_id", "leaderboard_part")
    )
    assert "private" in {parts[c] for c in dropped} and "public" in {parts[c] for c in dropped}
    assert "public" not in evaluation.message and "private" not in evaluation.message


def test_a_complete_submission_is_plainly_scored(start_worker, tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=40)
    start_worker(queues="cpu")
    response = _upload(UserFactory(), phase, preds.read_bytes())
    evaluation = final_evaluation(response.json()["id"])
    assert evaluation.state == "succeeded" and evaluation.message == "Scored."


def test_hidden_test_inputs_give_counts_only():
    results = {
        "public": {"meta": {"missing_cases": ["c2"], "n_cases": 3}, "cases": {}},
        "private": {"meta": {"missing_cases": [], "n_cases": 7}, "cases": {}},
    }
    assert scored_message(results, name_cases=False) == (
        "Scored; 1 of 10 test cases was missing and got the worst value."
    )
    assert scored_message(results, name_cases=True) == (
        "Scored; 1 of 10 test cases was missing and got the worst value: c2."
    )
