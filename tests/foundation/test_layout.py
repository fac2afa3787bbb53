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


def _log_in(page, live_server, user) -> None:  # noqa: F811
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def _participant_with_submissions(phase, username: str = "phone"):
    """A participant with five submissions on ``phase``: one scored, four failed with long
    file names and long failure messages, the rows most likely to widen a table."""
    from django.contrib.auth.models import User
    from django.core.files.uploadedfile import SimpleUploadedFile

    from challenges.models import Phase, Submission
    from challenges.services.scoring import evaluation_score
    from challenges.services.submissions import submission_create

    Phase.objects.filter(pk=phase.pk).update(daily_limit=20, total_limit=50)
    phase.refresh_from_db()
    user = User.objects.create_user(username, password="a-Long-pass-123!")
    baseline = Submission.objects.filter(phase=phase).first()
    assert baseline is not None
    with baseline.file.open("rb") as fh:
        good = fh.read()
    files = [("resnet50_fold3_ensemble_final_v12_really_final_predictions.csv", good)]
    files += [
        (
            f"predictions attempt {i} with a rather long name.csv",
            b"case_id,score\nnope-%d,0.5\n" % i,
        )
        for i in range(4)
    ]
    for name, content in files:
        submission = submission_create(
            user=user, phase=phase, file=SimpleUploadedFile(name, content)
        )
        evaluation_score(evaluation_id=submission.evaluations.get().pk)
    return user


def test_submit_page_with_several_submissions_fits_a_phone(demo, live_server, page):  # noqa: F811
    from challenges.models import Phase

    phase = Phase.objects.get(challenge__slug="breast-cancer-wdbc")
    user = _participant_with_submissions(phase)
    _log_in(page, live_server, user)
    url = live_server.url + f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/"
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(url)
        assert page.locator("#submissions tbody tr").count() == 5
        assert _page_width(page) <= width, f"the page scrolls sideways at {width} px"
        box = page.locator(".table-wrap").first
        assert box.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), "the list scrolls"
        cell = page.locator("#submissions tbody tr").first.locator("td.state")
        label = cell.evaluate("el => getComputedStyle(el, '::before').content")
        if width == 390:  # rows are cards: every cell is named by its column
            assert label == '"state"'
            assert page.locator("#submissions thead").bounding_box()["height"] <= 1  # type: ignore[index]
        else:  # a plain table with its header
            assert label in ("none", "normal")
            assert page.locator("#submissions thead").is_visible()
        _shot(page, f"submit-several-{width}.png")


def _same_site_assets(html: str) -> list[str]:
    """Every address a page's <link> and <script> elements load."""
    import re

    return re.findall(r"<(?:link|script)\b[^>]*\b(?:href|src)=\"([^\"]*)\"", html)


def test_stylesheet_is_served_and_no_page_loads_anything_from_outside(demo, live_server):  # noqa: F811
    import urllib.request

    from challenges.models import Phase, Submission

    phase = Phase.objects.get(challenge__slug="breast-cancer-wdbc")
    slug = phase.challenge.slug
    with urllib.request.urlopen(live_server.url + "/static/challenges/scanbench.css") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/css")
        assert "--brand" in response.read().decode()
    anonymous = [
        "/",
        f"/challenges/{slug}/",
        phase.get_absolute_url(),
        f"/challenges/{slug}/data/",
        "/accounts/login/",
        "/accounts/signup/",
        "/accounts/password_reset/",
    ]
    user = _participant_with_submissions(phase, username="assets")
    mine = Submission.objects.filter(participant=user).first()
    assert mine is not None
    signed_in = [
        f"/challenges/{slug}/{phase.slug}/submit/",
        f"/challenges/{slug}/team/",
        f"/challenges/{slug}/join/",
        f"/submissions/{mine.pk}/",
        "/accounts/profile/",
        "/accounts/password_change/",
    ]
    client = Client()
    for path in anonymous + signed_in:
        if path == signed_in[0]:
            client.force_login(user)
        response = client.get(path, follow=True)  # the team page sends a non-member to join
        assert response.status_code == 200, path
        html = response.content.decode()
        assets = _same_site_assets(html)
        assert "/static/challenges/scanbench.css" in assets, path
        outside = [a for a in assets if "//" in a or a.startswith(("http:", "https:", "data:"))]
        assert not outside, (path, outside)


@pytest.mark.parametrize("width", WIDTHS)
def test_every_participant_page_fits_the_screen(demo, live_server, page, width):  # noqa: F811
    """Screenshots of every page a participant sees, signed out and in; none scrolls sideways."""
    from challenges.models import Phase, Submission
    from challenges.services.data import membership_join

    phase = Phase.objects.get(challenge__slug="breast-cancer-wdbc")
    slug = phase.challenge.slug
    user = _participant_with_submissions(phase, username=f"pages{width}")
    mine = Submission.objects.filter(participant=user).order_by("pk").last()
    page.set_viewport_size({"width": width, "height": 900})
    pages = {
        "list": "/",
        "detail": f"/challenges/{slug}/",
        "data": f"/challenges/{slug}/data/",
        "login": "/accounts/login/",
        "signup": "/accounts/signup/",
        "password-reset": "/accounts/password_reset/",
    }
    for name, path in pages.items():
        page.goto(live_server.url + path)
        assert _page_width(page) <= width, f"{path} scrolls sideways at {width} px"
        _shot(page, f"page-{name}-{width}.png")
    # Forms sent with errors: the errors are red, and a field in error is marked as such.
    page.goto(live_server.url + "/accounts/signup/")
    page.fill("#id_username", f"new{width}")
    page.fill("#id_email", f"new{width}@example.org")
    page.fill("#id_password1", "a-long-passphrase-42")
    page.fill("#id_password2", "a-different-passphrase-42")
    page.locator("main form button[type=submit]").click()
    field = page.locator("#id_password2")
    assert field.get_attribute("aria-invalid") == "true"
    assert field.evaluate("el => getComputedStyle(el).borderTopColor") == "rgb(164, 22, 26)"
    assert _page_width(page) <= width
    _shot(page, f"page-signup-error-{width}.png")
    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", "nobody")
    page.fill("#id_password", "wrong-password-1")
    page.locator("main form button[type=submit]").click()
    errors = page.locator("main .errorlist").first
    assert errors.evaluate("el => getComputedStyle(el).color") == "rgb(164, 22, 26)"
    _shot(page, f"page-login-error-{width}.png")
    membership_join(user=user, challenge=phase.challenge, accept_terms=True)
    _log_in(page, live_server, user)
    pages = {
        "submit": f"/challenges/{slug}/{phase.slug}/submit/",
        "submission": f"/submissions/{mine.pk}/",  # type: ignore[union-attr]
        "team": f"/challenges/{slug}/team/",
        "join": f"/challenges/{slug}/join/",
        "profile": "/accounts/profile/",
        "password-change": "/accounts/password_change/",
    }
    for name, path in pages.items():
        page.goto(live_server.url + path)
        assert _page_width(page) <= width, f"{path} scrolls sideways at {width} px"
        _shot(page, f"page-{name}-{width}.png")
    # The header says where one is.
    current = page.locator(".site-nav a[aria-current=page]")
    page.goto(live_server.url + "/accounts/profile/")
    assert current.inner_text() == user.username
    page.goto(live_server.url + "/")
    assert current.inner_text() == "Challenges"
