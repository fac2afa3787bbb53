"""Below a leaderboard's table: the leaders over time, each entry's rank interval and, where the
phase shows per-case results, the top entries' per-case distributions; drawn on the server as
SVG that fits a phone, never for a hidden private part, in a bounded number of queries."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.factories import ChallengeFactory, PhaseFactory, UserFactory
from tests.foundation.test_accessibility import _violations
from tests.foundation.test_pages import page  # noqa: F401 -- shared fixture


def _board(phase, *, n: int, part: str = "public", n_cases: int = 12, snapshots: int = 4):
    """``n`` scored entrants on ``part`` of ``phase`` (entrant i ranks i + 1, its 95 % rank
    interval stored on the row), each with per-case values of the primary metric, and
    ``snapshots`` dated snapshots of the board, one day apart."""
    from challenges.models import (
        Evaluation,
        LeaderboardEntry,
        LeaderboardSnapshot,
        Result,
        Submission,
    )

    metric = phase.primary_metric
    entries = []
    for i in range(n):
        user = UserFactory(username=f"entrant{i}")
        submission = Submission.objects.create(
            phase=phase, participant=user, kind="predictions", file=f"s{i}.csv", sha256="0" * 64
        )
        evaluation = Evaluation.objects.create(submission=submission, state="succeeded")
        score = 0.95 - 0.02 * i
        cases = {f"case{c:03d}": {metric: score - 0.01 * (c % 5)} for c in range(n_cases)}
        Result.objects.create(
            evaluation=evaluation, part=part, aggregates={metric: score}, cases=cases
        )
        entries.append(
            LeaderboardEntry.objects.create(
                phase=phase, part=part, entrant=f"user:{user.pk}", display_name=user.username,
                participant=user, submission=submission, evaluation=evaluation, rank=i + 1,
                score=score, rank_low=max(1, i), rank_high=min(n, i + 3),
                submitted_at=timezone.now(),
            )
        )  # fmt: skip
    start = timezone.now() - timedelta(days=snapshots)
    for s in range(snapshots):
        rows = [
            {"entrant": e.entrant, "rank": e.rank, "score": e.score - 0.01 * (snapshots - 1 - s)}
            for e in entries[: s + 1]  # one more entrant on the board each day
        ]
        snap = LeaderboardSnapshot.objects.create(phase=phase, part=part, reason="t", rows=rows)
        LeaderboardSnapshot.objects.filter(pk=snap.pk).update(created_at=start + timedelta(days=s))
    return entries


def _classification_phase(**kw):
    return PhaseFactory(**kw)


def _segmentation_phase(**kw):
    challenge = ChallengeFactory(task_type="segmentation", classes=["lesion"])
    return PhaseFactory(challenge=challenge, metrics=["dice", "hd95"], primary_metric="dice", **kw)


def _section(html: str, slug: str) -> str:
    match = re.search(rf'<section class="card chart" id="chart-{slug}".*?</section>', html, re.S)
    assert match, f"no chart-{slug} section"
    return match.group(0)


@pytest.mark.django_db
def test_rank_interval_chart_has_a_bar_per_entry_with_its_stored_range(client):
    phase = _segmentation_phase()
    entries = _board(phase, n=7)
    html = client.get(phase.get_absolute_url()).content.decode()
    ranks = _section(html, "ranks")
    bars = re.findall(r'<rect class="range"[^>]*data-low="(\d+)" data-high="(\d+)"', ranks)
    assert bars == [(str(e.rank_low), str(e.rank_high)) for e in entries]
    dots = re.findall(r'<circle class="rank"[^>]*data-rank="(\d+)"', ranks)
    assert dots == [str(e.rank) for e in entries]
    assert 'role="img"' in ranks and "<figcaption" in ranks and "<title" in ranks
    assert "<details" in ranks and "entrant6" in ranks  # the numbers as a table


@pytest.mark.django_db
def test_rank_interval_chart_shows_at_most_the_top_30(client):
    phase = _classification_phase()
    _board(phase, n=33, snapshots=1)
    html = client.get(phase.get_absolute_url()).content.decode()
    assert len(re.findall(r'<circle class="rank"', _section(html, "ranks"))) == 30


@pytest.mark.django_db
def test_rank_interval_chart_is_left_out_when_no_entry_has_a_range(client):
    from challenges.models import LeaderboardEntry

    phase = _classification_phase()
    _board(phase, n=3)
    LeaderboardEntry.objects.update(rank_low=None, rank_high=None)
    html = client.get(phase.get_absolute_url()).content.decode()
    assert 'id="chart-ranks"' not in html and 'id="chart-over-time"' in html


@pytest.mark.django_db
def test_over_time_chart_has_a_point_per_snapshot_and_a_line_per_leader(client):
    phase = _segmentation_phase()
    entries = _board(phase, n=7, snapshots=6)
    html = client.get(phase.get_absolute_url()).content.decode()
    chart = _section(html, "over-time")
    points = re.findall(r'<circle class="point"[^>]*data-value="([^"]+)"', chart)
    assert len(points) == 6
    # The best score of each day: the leader's, rising by 0.01 a day to today's 0.95.
    assert [round(float(p), 4) for p in points] == [0.9, 0.91, 0.92, 0.93, 0.94, 0.95]
    lines = re.findall(r'<path class="line"', chart)
    assert len(lines) == 5 + 1  # the current top 5 and the best score
    for e in entries[:5]:
        assert e.display_name in chart
    assert "entrant5" not in chart.split("<details", 1)[0]  # sixth place: no line
    assert "dice" in chart and "UTC" in chart
    assert len(re.findall(r"<tr><td>\d{4}-\d\d-\d\d \d\d:\d\d</td>", chart)) == 6


@pytest.mark.django_db
def test_over_time_chart_labels_the_axis_with_the_metric_unit(client):
    challenge = ChallengeFactory(task_type="segmentation", classes=["lesion"])
    phase = PhaseFactory(
        challenge=challenge, metrics=["hd95", "dice"], primary_metric="hd95",
        primary_direction="lower",
    )  # fmt: skip
    _board(phase, n=3, snapshots=3)
    html = client.get(phase.get_absolute_url()).content.decode()
    chart = _section(html, "over-time")
    assert "hd95 (mm)" in chart
    points = [float(p) for p in re.findall(r'class="point"[^>]*data-value="([^"]+)"', chart)]
    # Lower is better: each snapshot's best is its lowest score, that of the entrant who
    # joined last (day 1: 0.93; day 2: 0.94 and 0.92; day 3: 0.95, 0.93 and 0.91).
    assert points == pytest.approx([0.93, 0.92, 0.91])


@pytest.mark.django_db
def test_per_case_distributions_shown_for_segmentation(client):
    phase = _segmentation_phase()
    assert phase.case_results_visible()
    _board(phase, n=7, n_cases=10)
    html = client.get(phase.get_absolute_url()).content.decode()
    chart = _section(html, "cases")
    boxes = re.findall(r'<g class="box" data-median="([^"]+)" data-n="(\d+)"', chart)
    assert len(boxes) == 5  # the top 5 only
    assert all(n == "10" for _median, n in boxes)
    # entrant0's cases: 0.95 minus 0, .01, .02, .03, .04, twice over; median 0.93.
    assert float(boxes[0][0]) == pytest.approx(0.93)
    assert 'role="img"' in chart and "<figcaption" in chart and "median" in chart


@pytest.mark.django_db
def test_per_case_distributions_absent_for_classification(client):
    phase = _classification_phase()
    assert phase.show_case_results is None and not phase.case_results_visible()
    _board(phase, n=5)
    html = client.get(phase.get_absolute_url()).content.decode()
    assert 'id="chart-cases"' not in html
    assert 'id="chart-ranks"' in html and 'id="chart-over-time"' in html


@pytest.mark.django_db
def test_per_case_distributions_follow_the_phase_setting(client):
    phase = _segmentation_phase(show_case_results=False)
    _board(phase, n=3)
    assert 'id="chart-cases"' not in client.get(phase.get_absolute_url()).content.decode()


@pytest.mark.django_db
def test_no_chart_for_a_hidden_private_part(client):
    phase = _segmentation_phase()  # open: its private part is hidden
    _board(phase, n=5, part="private")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(phase.get_absolute_url() + "?part=private")
    html = response.content.decode()
    assert 'id="hidden"' in html
    assert "chart-" not in html and "<svg" not in html
    assert not [q for q in queries if "leaderboardsnapshot" in q["sql"]]
    assert not [q for q in queries if '"challenges_result"' in q["sql"]]


@pytest.mark.django_db
def test_charts_of_a_revealed_private_part_use_its_own_results(client):
    phase = _segmentation_phase(
        opens_at=timezone.now() - timedelta(days=20), closes_at=timezone.now() - timedelta(days=1)
    )
    _board(phase, n=3, part="public", n_cases=4)
    _board(phase, n=3, part="private", n_cases=9)
    html = client.get(phase.get_absolute_url() + "?part=private").content.decode()
    assert 'id="hidden"' not in html
    boxes = re.findall(
        r'<g class="box" data-median="[^"]+" data-n="(\d+)"', _section(html, "cases")
    )
    assert boxes == ["9", "9", "9"]


@pytest.mark.django_db
def test_chart_queries_do_not_grow_with_the_board(client):
    small, large = _segmentation_phase(), _segmentation_phase()
    _board(small, n=3, snapshots=2)
    for i in range(30):
        UserFactory(username=f"entrant{i}")
    _board(large, n=30, snapshots=40)
    assert _count_queries(client, small.get_absolute_url()) == _count_queries(
        client, large.get_absolute_url()
    )


def _count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def _shot(page, name: str) -> None:  # noqa: F811
    folder = Path(settings.BASE_DIR) / "var" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)


@pytest.mark.browser
def test_leaderboard_with_charts_fits_a_phone_and_passes_axe(transactional_db, live_server, page):  # noqa: F811
    phase = _segmentation_phase()
    _board(phase, n=12, snapshots=8)
    for width in (1366, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(live_server.url + phase.get_absolute_url())
        for slug in ("over-time", "ranks", "cases"):
            chart = page.locator(f"#chart-{slug} svg[role=img]")
            assert chart.is_visible()
            box = chart.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        assert page.locator("#chart-ranks rect.range").count() == 12
        assert page.locator("#chart-over-time circle.point").count() == 8
        scroll = int(page.evaluate("document.documentElement.scrollWidth"))
        assert scroll <= width, f"the page scrolls sideways at {width} px"
        page.locator("#chart-ranks summary").click()
        assert page.locator("#chart-ranks table tbody tr").count() == 12
        assert int(page.evaluate("document.documentElement.scrollWidth")) <= width
        _shot(page, f"leaderboard-charts-{width}.png")
    assert _violations(page) == []  # axe-core: no serious or critical violation
