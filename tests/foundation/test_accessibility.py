"""Accessibility: axe-core (vendored under tests/vendor/axe-core, run in Debian's Chromium)
reports no serious or critical violation on the pages a participant goes through."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.foundation.test_pages import demo, page  # noqa: F401 -- shared fixtures

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"


def _violations(page) -> list[str]:  # noqa: F811
    # Evaluated through the browser's debugging protocol: the page's Content-Security-Policy
    # (scripts only from the site or with the page's nonce) rightly refuses an injected tag.
    page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ' (' + v.impact + '): '"
        " + v.nodes.map(n => n.target.join(' ')).join(', '))"
    )
    return list(result)


def test_participant_pages_have_no_serious_accessibility_violation(demo, live_server, page):  # noqa: F811
    from django.contrib.auth.models import User

    from challenges.models import Phase

    phase = Phase.objects.get(challenge__slug="breast-cancer-wdbc")
    anonymous = [
        "/",
        "/accounts/signup/",
        "/accounts/login/",
        "/accounts/password_reset/",
        phase.get_absolute_url(),
    ]
    signed_in = [
        f"/challenges/{phase.challenge.slug}/",
        f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/",
        f"/challenges/{phase.challenge.slug}/data/",
        f"/challenges/{phase.challenge.slug}/join/",
        "/accounts/profile/",
        "/accounts/password_change/",
    ]
    found = {}
    for path in anonymous:
        page.goto(live_server.url + path)
        found[path] = _violations(page)
    user = User.objects.create_user("axe", email="axe@example.org", password="a-Long-pass-123!")
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
    for path in signed_in:
        page.goto(live_server.url + path)
        found[path] = _violations(page)
    assert not any(found.values()), found


def test_keyboard_users_can_skip_to_the_content_and_see_where_the_focus_is(demo, live_server, page):  # noqa: F811
    # A page without an autofocused field: the first Tab lands on the skip link.
    page.goto(live_server.url + "/", wait_until="load")
    page.keyboard.press("Tab")
    skip = page.locator("a.skip-link")
    assert skip.evaluate("el => el === document.activeElement")
    assert skip.is_visible() and skip.bounding_box()["y"] >= 0  # type: ignore[index]
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # The log-in form focuses its first field; Tab moves to the next, which shows a ring.
    page.goto(live_server.url + "/accounts/login/", wait_until="load")
    page.locator("#id_username").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "id_password"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "the focused field shows a focus ring"
