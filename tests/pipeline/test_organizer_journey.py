"""An organizer runs the breast-cancer demo from the browser, with a real Celery worker: opens
the console, finds a participant's scored submission with its attempts and log tail,
re-evaluates it (the first attempt stays), hides another entry with a reason, closes the
phase, sees the final standings early under an "Organizers only" banner and publishes them.
The participants see the reason and, once published, the final board. Console pages are
photographed at 1366 and 390 px (var/screenshots/), never scroll sideways on a phone, and the
overview has no serious accessibility violation (axe-core)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.foundation.test_accessibility import _violations
from tests.foundation.test_pages import demo, page  # noqa: F401 -- shared fixtures
from tests.helpers import final_evaluation, wait_for

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
SLUG = "breast-cancer-wdbc"
REASON = "Submitted from a second account of the same person"


def _login(context, live_server, user) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def _shoot(page, name: str) -> None:  # noqa: F811
    """Full-page screenshots at desktop and phone width; the phone one must not scroll
    sideways."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1366, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.reload()
        page.screenshot(path=str(SHOTS / f"console-{name}-{width}.png"), full_page=True)
        if width == 390:
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= 390, f"{name} scrolls sideways at 390 px ({scroll} px wide)"
    page.set_viewport_size({"width": 1366, "height": 900})


def test_organizer_runs_the_challenge_from_the_browser(
    demo,  # noqa: F811
    page,  # noqa: F811
    live_server,
    start_worker,
):
    from django.contrib.auth.models import User

    from challenges.models import ChallengeMembership, EntryExclusion, LeaderboardEntry, Phase
    from challenges.services.data import data_files_current, data_root
    from challenges.services.submissions import submission_create

    start_worker(queues="cpu")
    base = live_server.url
    phase = Phase.objects.get(challenge__slug=SLUG, slug="open")
    phase.private_release = "manual"  # the final standings wait for the organizers
    phase.save(update_fields=["private_release"])
    challenge = phase.challenge
    sample = next(
        f
        for f in data_files_current(challenge=challenge)
        if f.name.endswith("sample-submission.csv")
    )
    body = (data_root() / sample.path).read_bytes()
    entrants = {}
    for name in ("pat", "sam"):
        user = User.objects.create_user(name, email=f"{name}@example.org", password="x-Long-pass-1")
        ChallengeMembership.objects.create(challenge=challenge, user=user)
        entrants[name] = submission_create(
            user=user, phase=phase, file=SimpleUploadedFile(f"{name}-predictions.csv", body)
        )
    for submission in entrants.values():
        assert final_evaluation(submission.pk).state == "succeeded"

    organizer = User.objects.get(username="organizer")
    _login(page.context, live_server, organizer)
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(f"{base}/organize/")
    page.locator(f'#organized tr[data-challenge="{SLUG}"] a').click()
    page.wait_for_url(re.compile(rf"/challenges/{SLUG}/console/$"))
    assert page.locator(f"#phase-{phase.slug}").is_visible()
    assert not _violations(page), "axe: serious or critical violations on the console"
    _shoot(page, "overview")

    # The participant's submission, with its attempt and log tail.
    page.get_by_role("link", name="Submissions", exact=True).first.click()
    row = page.locator("#console-submissions tr", has_text="pat-predictions.csv")
    assert "pat" in row.inner_text() and "succeeded" in row.inner_text()
    _shoot(page, "submissions")
    row.locator("a").first.click()
    page.wait_for_url(re.compile(rf"/console/submissions/{entrants['pat'].pk}/$"))
    attempt = page.locator("#attempt-1")
    assert "Succeeded" in attempt.inner_text()
    assert attempt.locator("details.logs summary").inner_text() == "Log tail"
    assert attempt.locator("table.aggregates").is_visible()

    # Re-evaluate: a second attempt, scored by the worker; the first one stays.
    page.get_by_role("button", name="Re-evaluate").click()
    assert "queued for re-evaluation" in page.locator("p.card.success").inner_text()
    wait_for(lambda: entrants["pat"].evaluations.filter(attempt=2, state="succeeded").exists(),
             timeout=90)  # fmt: skip
    page.reload()
    assert page.locator("#attempt-2").is_visible() and page.locator("#attempt-1").is_visible()
    _shoot(page, "submission")

    # Hide sam's entry, with the reason sam will read.
    page.goto(f"{base}/challenges/{SLUG}/console/submissions/{entrants['sam'].pk}/")
    page.fill("#hide-reason", REASON)
    page.get_by_role("button", name="Hide").click()
    assert "is hidden from the leaderboard" in page.locator("p.card.success").inner_text()
    assert EntryExclusion.objects.filter(submission=entrants["sam"], reason=REASON).exists()
    wait_for(lambda: not LeaderboardEntry.objects.filter(phase=phase,
             participant__username="sam").exists(), timeout=60)  # fmt: skip

    for name in ("participants", "announce"):
        page.goto(f"{base}/challenges/{SLUG}/console/{name}/")
        _shoot(page, name)

    # Close the phase; the organizer sees the final standings before anyone else.
    page.goto(f"{base}/challenges/{SLUG}/console/")
    card = page.locator(f"#phase-{phase.slug}")
    card.get_by_role("button", name="Close now").click()
    assert "is closed" in page.locator("p.card.success").inner_text()
    page.goto(f"{base}{phase.get_absolute_url()}?part=private")
    banner = page.locator("#organizers-only")
    assert "Organizers only: participants do not see this part yet" in banner.inner_text()
    assert page.locator("#leaderboard tbody tr", has_text="pat").count() == 1

    participant = page.context.browser.new_context()
    sams = participant.new_page()
    _login(participant, live_server, User.objects.get(username="sam"))
    sams.goto(f"{base}/challenges/{SLUG}/{phase.slug}/submit/")
    assert f"Hidden by the organizers: {REASON}" in sams.locator("#submissions").inner_text()
    sams.goto(f"{base}/submissions/{entrants['sam'].pk}/")
    assert REASON in sams.locator("#hidden-reason").inner_text()
    sams.goto(f"{base}{phase.get_absolute_url()}?part=private")
    assert sams.locator("#hidden").is_visible() and sams.locator("#leaderboard").count() == 0

    # Publish: everyone sees the final board, and the early-view banner is gone.
    page.goto(f"{base}/challenges/{SLUG}/console/")
    page.get_by_role("button", name="Publish the private leaderboard").click()
    assert "is published" in page.locator("p.card.success").inner_text()
    _shoot(page, "overview-closed")
    audit = page.locator("#audit").inner_text()
    for what in ("Published the private leaderboard", "Hid submission", "Re-evaluated"):
        assert what in audit
    sams.goto(f"{base}{phase.get_absolute_url()}?part=private")
    board = sams.locator("#leaderboard tbody")
    assert board.locator("tr", has_text="pat").count() == 1
    assert board.locator("tr", has_text="sam").count() == 0
    assert sams.locator("#organizers-only").count() == 0
    participant.close()
