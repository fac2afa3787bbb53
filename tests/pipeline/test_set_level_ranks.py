"""Rank ranges and tiers on classification boards ranked by a set-level metric (AUC, sensitivity):
the paired bootstrap recomputes the metric from the probabilities each result keeps per case."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from challenges.models import Case, LeaderboardEntry, Result
from challenges.services.leaderboards import leaderboard_update
from evaluator.metrics.classification import binary_metrics
from tests.factories import UserFactory, classification_phase
from tests.helpers import compute_rank_ranges, submit_and_score


def _variant(preds: bytes, *, noise: float, seed: int, drop: int = 0) -> bytes:
    """The synthetic model's scores blurred towards chance by ``noise``; ``drop`` cases left out."""
    rng = np.random.default_rng(seed)
    rows = list(csv.DictReader(io.StringIO(preds.decode())))[drop:]
    out = io.StringIO()
    out.write("case_id,score\n")
    for row in rows:
        s = float(row["score"])
        s = (1 - noise) * s + noise * rng.random()
        out.write(f"{row['case_id']},{s:.6f}\n")
    return out.getvalue().encode()


@pytest.mark.django_db
@pytest.mark.parametrize("metric", ["auc_roc", "sensitivity"])
def test_set_level_boards_get_rank_ranges_and_tiers(tmp_path, metric):
    phase, preds = classification_phase(tmp_path, n_cases=1000, primary_metric=metric)
    body = preds.read_bytes()
    good = submit_and_score(phase, UserFactory(username="good"), body)
    submit_and_score(phase, UserFactory(username="near"), _variant(body, noise=0.02, seed=1))
    submit_and_score(phase, UserFactory(username="chance"), _variant(body, noise=1.0, seed=2))
    # The rows are on the board at once; their ranges come from the computation a quiet board
    # gets, off the scoring path.
    fresh = LeaderboardEntry.objects.filter(phase=phase, part="public")
    assert fresh.count() == 3 and not fresh.filter(rank_low__isnull=False).exists()
    assert compute_rank_ranges(phase) == {"public": 3, "private": 3}
    assert compute_rank_ranges(phase) is None  # nothing pending any more
    rows = {r.display_name: r for r in LeaderboardEntry.objects.filter(phase=phase, part="public")}
    assert set(rows) == {"good", "near", "chance"}
    for r in rows.values():
        assert r.rank_low is not None and r.rank_high is not None and r.tier is not None
        assert r.rank_low <= r.rank <= r.rank_high
    # With about 90 positive cases in the public part, a chance-level entry is significantly
    # worse than the two that follow the labels, which the bootstrap cannot tell apart.
    assert rows["good"].tier == rows["near"].tier == 1
    assert rows["chance"].tier == 2
    assert rows["chance"].rank_low == rows["chance"].rank_high == 3
    assert {rows["good"].rank_high, rows["near"].rank_high} <= {1, 2}
    # The full recomputation (re-evaluation, snapshots) gives the same ranges.
    leaderboard_update(phase_id=phase.pk)
    again = {
        r.display_name: (r.rank_low, r.rank_high, r.tier)
        for r in LeaderboardEntry.objects.filter(phase=phase, part="public")
    }
    assert again == {n: (r.rank_low, r.rank_high, r.tier) for n, r in rows.items()}
    # ... and the page shows them instead of "—".
    html = (
        Client()
        .get(reverse("challenges:leaderboard", args=[phase.challenge.slug, phase.slug]))
        .content.decode()
    )
    assert "—" not in html.split('id="leaderboard"')[1].split("</table>")[0]
    assert "paired bootstrap" in html and "Wilcoxon" not in html
    assert good.results.filter(part="public").exists()


@pytest.mark.django_db
def test_probabilities_kept_per_case_reproduce_the_stored_aggregate(tmp_path):
    """What the bootstrap resamples is what was scored: recomputing the metric from the kept
    probabilities (worst value for the 40 missing cases included) gives the stored aggregate."""
    phase, preds = classification_phase(tmp_path, n_cases=200)
    evaluation = submit_and_score(
        phase, UserFactory(), _variant(preds.read_bytes(), noise=0.3, seed=3, drop=40)
    )
    missing = 0
    for result in Result.objects.filter(evaluation=evaluation):
        labels = dict(
            Case.objects.filter(dataset=phase.dataset, leaderboard_part=result.part).values_list(
                "case_id", "label"
            )
        )
        ids = sorted(labels)
        y = np.array([int(labels[c]) for c in ids])
        s = np.array([result.cases[c]["p/1"] for c in ids])
        values, _ = binary_metrics(y, s, threshold=phase.decision_threshold)
        for m in ("auc_roc", "sensitivity", "specificity"):
            assert values[m] == pytest.approx(result.aggregates[m], abs=1e-12)
        missing += len(result.meta["missing_cases"])
    assert missing == 40


@pytest.mark.django_db
def test_a_board_too_large_to_resample_shows_no_ranges_without_reading_the_labels(
    tmp_path, monkeypatch
):
    """Beyond the bootstrap's budget the board keeps its ranks and shows no ranges, and that is
    known from a count: the test split's labels are not read for nothing."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    import challenges.services.leaderboards as boards

    phase, preds = classification_phase(tmp_path, n_cases=300, primary_metric="auc_roc")
    body = preds.read_bytes()
    submit_and_score(phase, UserFactory(username="a"), body)
    submit_and_score(phase, UserFactory(username="b"), _variant(body, noise=0.5, seed=4))
    # 2 entries x ~90 public cases x 200 resamples is over a budget of 1,000 cells
    monkeypatch.setattr(boards, "SET_LEVEL_CELLS", 1000)
    with CaptureQueriesContext(connection) as queries:
        assert leaderboard_update(phase_id=phase.pk) == {"public": 2, "private": 2}
    reads = [q["sql"] for q in queries.captured_queries if '"challenges_case"."label"' in q["sql"]]
    assert reads == []
    rows = LeaderboardEntry.objects.filter(phase=phase)
    assert rows.count() == 4 and not rows.filter(rank_low__isnull=False).exists()
    assert sorted(rows.filter(part="public").values_list("rank", flat=True)) == [1, 2]
