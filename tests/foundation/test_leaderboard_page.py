"""The leaderboard page as a participant uses it: their own row highlighted, any column sortable
with a click, the whole board as CSV with the same permissions as the page."""

from __future__ import annotations

import csv
import io

import pytest
from django.conf import settings
from django.test import Client

from tests.foundation.test_pages import demo, page  # noqa: F401 -- shared fixtures

pytestmark = pytest.mark.browser


@pytest.fixture
def scored_board(demo):  # noqa: F811
    from django.contrib.auth.models import User
    from django.core.files.uploadedfile import SimpleUploadedFile

    from challenges.models import Evaluation, Phase
    from challenges.services.leaderboards import leaderboard_update
    from challenges.services.scoring import evaluation_score
    from challenges.services.submissions import submission_create

    phase = Phase.objects.get(challenge__slug="breast-cancer-wdbc")
    user = User.objects.create_user("carol", password="a-Long-pass-123!")
    baseline = phase.submissions.filter(is_baseline=True, baseline_name="Naive Bayes").get()
    upload = SimpleUploadedFile("carol.csv", baseline.file.read())
    submission_create(user=user, phase=phase, file=upload)
    for evaluation in Evaluation.objects.filter(submission__phase=phase):
        evaluation_score(evaluation_id=evaluation.pk)
    leaderboard_update(phase_id=phase.pk)
    return phase, user


def _login(page, live_server, user) -> None:  # noqa: F811
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def test_own_row_is_highlighted_and_columns_sort(scored_board, live_server, page):  # noqa: F811
    phase, user = scored_board
    _login(page, live_server, user)
    page.goto(live_server.url + phase.get_absolute_url())
    mine = page.locator("#leaderboard tbody tr.mine")
    assert mine.count() == 1 and "carol" in mine.inner_text()
    assert mine.get_attribute("aria-current") == "true"
    names = page.locator("#leaderboard tbody td.stick2")
    page.locator("#leaderboard thead th", has_text="entrant").locator("button").click()
    ascending = [n.strip() for n in names.all_inner_texts()]
    assert ascending[0].startswith("Always negative")
    assert ascending == sorted(ascending, key=str.casefold)  # the browser's locale order
    page.locator("#leaderboard thead th", has_text="entrant").locator("button").click()
    assert [n.strip() for n in names.all_inner_texts()] == ascending[::-1]
    page.locator("#leaderboard thead th").first.locator("button").click()  # rank, numerically
    ranks = [int(r) for r in page.locator("#leaderboard tbody td.stick").all_inner_texts()]
    assert ranks == sorted(ranks)


def test_leaderboard_csv_has_every_row_and_keeps_the_private_part_hidden(scored_board, client):
    phase, _user = scored_board
    url = f"/challenges/{phase.challenge.slug}/{phase.slug}/leaderboard.csv"
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 8 and {r["entrant"] for r in rows} >= {"carol", "Always negative"}
    carol = next(r for r in rows if r["entrant"] == "carol")
    assert carol["baseline"] == "" and float(carol[phase.primary_metric]) > 0.9
    assert client.get(url + "?part=private").status_code == 403  # the phase is open
    assert client.get(url + "?part=everything").status_code == 400
