"""The challenge pages say where you are and what state a phase is in: a tab bar (Overview, Data,
Leaderboard, Submit, My submissions) with the current tab marked, which wraps on a 390 px phone
without the page scrolling sideways; each phase shows upcoming / open / closed in colour and
words, its dates in UTC and the time left; a closed phase's submit page offers no submission."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from challenges.selectors_tabs import duration_words, phase_status
from tests.factories import PhaseFactory, UserFactory
from tests.foundation.test_pages import demo, page  # noqa: F401 -- shared fixtures

CURRENT_TAB = re.compile(r'<a href="([^"]*)" data-tab="(\w+)" aria-current="page">')


def _tabs(html: str) -> dict[str, str]:
    """The tab bar's links by tab name."""
    nav = html.split('<nav class="challenge-tabs"', 1)[1].split("</nav>", 1)[0]
    links = re.findall(r'<a href="([^"]*)" data-tab="(\w+)"', nav)
    return {name: url for url, name in links}


def _current(html: str) -> list[str]:
    return [name for _, name in CURRENT_TAB.findall(html)]


@pytest.mark.django_db
def test_every_challenge_page_shows_the_tab_bar_with_its_own_tab_current():
    phase = PhaseFactory()
    challenge = phase.challenge
    client = Client()
    client.force_login(UserFactory())
    submit = f"/challenges/{challenge.slug}/{phase.slug}/submit/"
    pages = {
        f"/challenges/{challenge.slug}/": "overview",
        f"/challenges/{challenge.slug}/data/": "data",
        f"/challenges/{challenge.slug}/join/": "data",
        f"/challenges/{challenge.slug}/{phase.slug}/leaderboard/": "leaderboard",
        submit: "submit",
    }
    for url, current in pages.items():
        html = client.get(url).content.decode()
        assert html.count('<nav class="challenge-tabs"') == 1, url
        assert _current(html) == [current], url
        assert _tabs(html) == {
            "overview": f"/challenges/{challenge.slug}/",
            "data": f"/challenges/{challenge.slug}/data/",
            "leaderboard": f"/challenges/{challenge.slug}/{phase.slug}/leaderboard/",
            "submit": submit,
            "submissions": submit + "#submissions",
            "team": f"/challenges/{challenge.slug}/team/",
        }, url


@pytest.mark.django_db
def test_tabs_link_the_open_phase_and_a_phase_page_links_its_own():
    now = timezone.now()
    past = PhaseFactory(opens_at=now - timedelta(days=60), closes_at=now - timedelta(days=30))
    challenge = past.challenge
    current = PhaseFactory(challenge=challenge, dataset=past.dataset)
    PhaseFactory(challenge=challenge, dataset=past.dataset, opens_at=now + timedelta(days=9))
    client = Client()
    tabs = _tabs(client.get(f"/challenges/{challenge.slug}/").content.decode())
    assert tabs["leaderboard"] == current.get_absolute_url()
    html = client.get(past.get_absolute_url()).content.decode()
    assert _tabs(html)["leaderboard"] == past.get_absolute_url()
    assert _tabs(html)["submit"] == f"/challenges/{challenge.slug}/{past.slug}/submit/"


def test_time_left_is_said_in_its_two_largest_units():
    assert duration_words(timedelta(days=3, hours=4, minutes=59)) == "3 days 4 hours"
    assert duration_words(timedelta(days=1)) == "1 day"
    assert duration_words(timedelta(hours=5, minutes=1)) == "5 hours 1 minute"
    assert duration_words(timedelta(minutes=12, seconds=40)) == "12 minutes"
    assert duration_words(timedelta(seconds=20)) == "less than a minute"


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@pytest.mark.django_db
def test_upcoming_open_and_closed_phases_show_state_dates_and_time_left():
    now = timezone.now()
    upcoming = PhaseFactory(
        opens_at=now + timedelta(days=2, hours=5, minutes=30),
        closes_at=now + timedelta(days=40),
    )
    open_ = PhaseFactory(
        opens_at=now - timedelta(days=1), closes_at=now + timedelta(days=3, hours=4, minutes=30)
    )
    closed = PhaseFactory(
        opens_at=datetime(2024, 12, 1, tzinfo=UTC),
        closes_at=datetime(2025, 1, 15, 12, 0, tzinfo=UTC),
    )
    expected = {
        upcoming: ("upcoming", "Upcoming", "opens in 2 days 5 hours"),
        open_: ("open", "Open", "closes in 3 days 4 hours"),
        closed: ("closed", "Closed", "closed on 2025-01-15 12:00 UTC"),
    }
    client = Client()
    client.force_login(UserFactory())
    for phase, (state, words, left) in expected.items():
        status = phase_status(phase=phase)
        assert (status.state, status.label, status.time_left) == (state, words, left)
        assert phase.closes_at is not None
        badge = f'<span class="status-badge status-{state}">{words}</span>'
        dates = f"opens {_utc(phase.opens_at)} · closes {_utc(phase.closes_at)}"
        for url in (
            phase.challenge.get_absolute_url(),
            f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/",
        ):
            html = client.get(url).content.decode()
            assert badge in html, url
            assert dates in html, url
            assert f'<strong class="time-left">{left}</strong>' in html, url
    assert "opens 2024-12-01 00:00 UTC · closes 2025-01-15 12:00 UTC" in html


@pytest.mark.django_db
def test_a_phase_that_never_closes_says_so():
    phase = PhaseFactory(closes_at=None)
    html = Client().get(phase.challenge.get_absolute_url()).content.decode()
    assert f"opens {_utc(phase.opens_at)}</span> · <strong" in html
    assert '<strong class="time-left">never closes</strong>' in html


@pytest.mark.django_db
def test_after_the_close_the_submit_page_offers_no_submission():
    now = timezone.now()
    phase = PhaseFactory(opens_at=now - timedelta(days=10), closes_at=now - timedelta(hours=1))
    client = Client()
    client.force_login(UserFactory())
    url = f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/"
    html = client.get(url).content.decode()
    assert f"This phase closed on {_utc(phase.closes_at)}." in html
    assert "No submission is possible" in html
    limits = re.sub(r"<[^>]+>", "", html.split('id="limits"', 1)[1].split("</section>", 1)[0])
    assert not re.search(r"\d+\s+submissions? left", limits), limits
    assert "submissions left" not in html and "submission left" not in html
    assert '<form method="post" enctype' not in html and 'type="file"' not in html
    assert 'id="submissions"' in html  # past submissions stay listed


@pytest.mark.django_db
def test_the_submit_page_of_an_open_phase_keeps_its_limits_and_form():
    phase = PhaseFactory(daily_limit=3)
    client = Client()
    client.force_login(UserFactory())
    html = client.get(f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/").content.decode()
    assert "<strong>3</strong> submissions left" in html
    assert 'type="file"' in html


@pytest.mark.django_db
def test_the_submit_page_of_an_upcoming_phase_says_when_it_opens():
    phase = PhaseFactory(opens_at=timezone.now() + timedelta(days=5))
    client = Client()
    client.force_login(UserFactory())
    html = client.get(f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/").content.decode()
    assert f"This phase opens on {_utc(phase.opens_at)}" in html
    assert 'type="file"' not in html


@pytest.mark.browser
def test_tabs_wrap_on_a_phone_and_no_challenge_page_scrolls_sideways(demo, live_server, page):  # noqa: F811
    from django.contrib.auth.models import User

    from challenges.models import Phase

    phase = Phase.objects.get(challenge__slug="breast-cancer-wdbc")
    slug = phase.challenge.slug
    user = User.objects.create_user("tabs", password="a-Long-pass-123!")
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
    pages = {
        f"/challenges/{slug}/": "overview",
        f"/challenges/{slug}/data/": "data",
        f"/challenges/{slug}/join/": "data",
        f"/challenges/{slug}/{phase.slug}/leaderboard/": "leaderboard",
        f"/challenges/{slug}/{phase.slug}/submit/": "submit",
    }
    for width in (390, 1366):
        page.set_viewport_size({"width": width, "height": 900})
        for url, current in pages.items():
            page.goto(live_server.url + url)
            width_now = int(page.evaluate("document.documentElement.scrollWidth"))
            assert width_now <= width, f"{url} scrolls sideways at {width} px"
            nav = page.get_by_role("navigation", name="Challenge pages")
            assert nav.is_visible()
            tab = nav.locator("a[aria-current=page]")
            assert tab.count() == 1 and tab.get_attribute("data-tab") == current, url
            style = tab.evaluate(
                "el => [getComputedStyle(el).fontWeight, getComputedStyle(el).borderBottomColor]"
            )
            assert style == ["700", "rgb(29, 53, 87)"], url  # marked in bold and underlined
            for a in nav.locator("a").all():  # every tab is on the screen, none cut off
                box = a.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    page.goto(live_server.url + f"/challenges/{slug}/")
    badge = page.locator(".phase-status .status-badge").first
    assert badge.inner_text() in ("Open", "Upcoming", "Closed")
    assert badge.evaluate("el => getComputedStyle(el).color") != page.locator("body").evaluate(
        "el => getComputedStyle(el).color"
    )
