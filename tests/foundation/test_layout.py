"""Pages fit the screen: at 1366 px and at 390 px (a phone) the leaderboard and submit pages never
scroll sideways; wide tables scroll inside their own box with rank and entrant in view; a failed
evaluation looks like a failure. Screenshots are kept under var/screenshots/ for review."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.foundation.test_pages import demo, page  # noqa: F401 -- shared fixtures

pytestmark = pytest.mark.browser

WIDTHS = (1366, 390)


def _shot(page, name: str) -> None:  # noqa: F811
    folder = Path(settings.BASE_DIR) / "var" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)


def _page_width(page) -> int:  # noqa: F811
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_leaderboard_fits_the_screen_and_its_table_scrolls_inside(demo, live_server, page):  # noqa: F811
    from challenges.models import Evaluation, Phase
    from challenges.services.leaderboards import leaderboard_update
    from challenges.services.scoring import evaluation_score

    phase = Phase.objects.get(challenge__slug="breast-cancer-wdbc")
    for evaluation in Evaluation.objects.filter(submission__phase=phase):
        evaluation_score(evaluation_id=evaluation.pk)
    leaderboard_update(phase_id=phase.pk)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(live_server.url + phase.get_absolute_url())
        assert _page_width(page) <= width, f"the page scrolls sideways at {width} px"
        header = page.locator("#leaderboard thead th").all_inner_texts()
        assert header[:2] == ["rank", "entrant"]
        if width == 390:
            box = page.locator(".table-wrap").first
            assert box.evaluate("el => el.scrollWidth > el.clientWidth")  # scrolls inside
            box.evaluate("el => el.scrollLeft = el.scrollWidth")
            entrant = page.locator("#leaderboard tbody tr td.stick2").first
            assert entrant.is_visible()
            x = entrant.bounding_box()
            assert x is not None and 0 <= x["x"] < width  # still in view after scrolling
        _shot(page, f"leaderboard-{width}.png")


def test_submit_page_fits_and_a_failure_looks_like_one(demo, live_server, page, tmp_path):  # noqa: F811
    from django.contrib.auth.models import User

    from challenges.models import Phase
    from challenges.services.scoring import evaluation_score
    from challenges.services.submissions import submission_create

    phase = Phase.objects.get(challenge__slug="breast-cancer-wdbc")
    user = User.objects.create_user("layout", password="a-Long-pass-123!")
    from django.core.files.uploadedfile import SimpleUploadedFile

    bad = SimpleUploadedFile("my predictions.csv", b"case_id,score\nnot-a-case,0.5\n")
    submission = submission_create(user=user, phase=phase, file=bad)
    evaluation_score(evaluation_id=submission.evaluations.get().pk)
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
    url = live_server.url + f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/"
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(url)
        assert _page_width(page) <= width, f"the page scrolls sideways at {width} px"
        state = page.locator("#submissions td.state").first
        assert state.inner_text() == "Failed"
        assert "state-failed" in (state.get_attribute("class") or "")
        color = state.evaluate("el => getComputedStyle(el).color")
        assert color == "rgb(164, 22, 26)"  # the error red, not the body text colour
        assert "my predictions.csv" in page.locator("#submissions td.file").first.inner_text()
        _shot(page, f"submit-{width}.png")
