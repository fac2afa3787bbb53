"""The challenge page's task card is made from the data and the phase, per task type."""

from __future__ import annotations

import io
import re

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from challenges.models import Case
from evaluator.metrics.registry import CLASSIFICATION_METRICS, SEGMENTATION_METRICS
from tests.factories import UserFactory, classification_phase, segmentation_phase
from tests.helpers import final_evaluation, wait_for


def _page(phase) -> str:
    response = Client().get(reverse("challenges:detail", args=[phase.challenge.slug]))
    assert response.status_code == 200
    return response.content.decode()


def _section(html: str, element_id: str) -> str:
    match = re.search(rf'<section class="card" id="{element_id}">(.*?)</section>', html, re.S)
    assert match, f"no section #{element_id}"
    return match.group(1)


def _metric_row(section: str, name: str) -> str:
    match = re.search(rf'<tr data-metric="{re.escape(name)}">(.*?)</tr>', section, re.S)
    assert match, f"no row for {name}"
    return match.group(1)


@pytest.mark.django_db
def test_segmentation_card_shows_cases_labels_and_metrics_not_class_balance(tmp_path):
    phase, _ = segmentation_phase(tmp_path, n_cases=6)
    html = _page(phase)
    assert "Class balance" not in html
    assert "Decision threshold" not in html
    cases = _section(html, "cases-and-labels")
    assert re.search(r"<td>test</td><td class=\"num\">6</td>", cases)
    assert "<td>train</td>" not in cases  # no training cases in this data set
    assert "1: lesion" in cases
    card = _section(html, phase.slug)
    assert f"{phase.nsd_tolerance_mm} mm" in card
    for name in ("dice", "hd95", "nsd"):
        info = SEGMENTATION_METRICS[name]
        row = _metric_row(card, name)
        assert info.description.replace("'", "&#x27;") in row
        assert f"<td>{info.unit or 'none'}</td>" in row
        assert ("higher is better" if info.higher_is_better else "lower is better") in row
    assert "<td>mm</td><td>lower is better</td>" in _metric_row(card, "hd95")
    assert "primary" in _metric_row(card, "dice")


@pytest.mark.django_db
def test_classification_card_shows_balance_threshold_and_the_trivial_score(tmp_path):
    phase, _ = classification_phase(
        tmp_path, n_cases=120, decision_threshold=0.35, primary_metric="accuracy"
    )
    labels = list(Case.objects.filter(dataset=phase.dataset).values_list("label", flat=True))
    negatives, positives = labels.count("0"), labels.count("1")
    assert negatives and positives and negatives + positives == 120
    html = _page(phase)
    balance = _section(html, "class-balance")
    assert '<td>test</td><td class="num">120</td>' in balance
    assert f"{negatives} ({100 * negatives / 120:.1f} %)" in balance
    assert f"{positives} ({100 * positives / 120:.1f} %)" in balance
    assert "Cases and labels" not in html
    card = _section(html, phase.slug)
    assert "Decision threshold:</strong> 0.35" in card
    # "Always negative" is right on every negative case and on no positive one.
    assert f"scores {negatives / 120:.4f} on accuracy" in card
    for name in phase.metrics:
        info = CLASSIFICATION_METRICS[name]
        row = _metric_row(card, name)
        assert "<td>none</td>" in row
        assert ("higher is better" if info.higher_is_better else "lower is better") in row
    assert "primary" in _metric_row(card, "accuracy")


@pytest.mark.django_db
def test_a_constant_score_has_auc_one_half(tmp_path):
    phase, _ = classification_phase(tmp_path, n_cases=50)
    assert "scores 0.5000 on auc_roc over the whole test split" in _section(
        _page(phase), phase.slug
    )


def test_leaderboard_headers_carry_the_unit_of_distance_metrics(start_worker, tmp_path):
    phase, archive = segmentation_phase(tmp_path)
    start_worker(queues="cpu")
    client = APIClient()
    client.force_authenticate(UserFactory())
    upload = io.BytesIO(archive.read_bytes())
    upload.name = "masks.zip"
    response = client.post(
        f"/api/phases/{phase.pk}/submissions/", {"file": upload}, format="multipart"
    )
    assert response.status_code == 201, response.content
    evaluation = final_evaluation(response.json()["id"])
    assert evaluation.state == "succeeded", evaluation.message
    wait_for(lambda: phase.leaderboard.filter(part="public").exists())
    html = Client().get(phase.get_absolute_url()).content.decode()
    header = re.search(r"<thead>(.*?)</thead>", html, re.S)
    assert header, html
    assert "<th>hd95 (mm)</th>" in header.group(1)
    assert "dice [95 % interval]" in header.group(1)
    assert "<th>nsd</th>" in header.group(1)
