"""A new participant, with only the browser, from sign-up to a row on the leaderboard, on the
breast-cancer demo: sign up with an e-mail address, verify it from the mail, join the challenge
and accept its terms, download the sample submission and check its sha256, submit it unchanged,
watch the state change without reloading (a real Celery worker scores it), open the submission's
page, find the highlighted row on the leaderboard and download the board as CSV."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import expect

from tests.foundation.test_pages import demo, page  # noqa: F401 -- shared fixtures
from tests.helpers import wait_for

pytestmark = pytest.mark.browser
PASSWORD = "a-Long-pass-123!"


def test_from_sign_up_to_a_highlighted_row_on_the_leaderboard(
    demo,  # noqa: F811
    page,  # noqa: F811
    live_server,
    start_worker,
    tmp_path: Path,
):
    start_worker(queues="cpu")
    base = live_server.url
    slug = "breast-cancer-wdbc"

    page.goto(f"{base}/accounts/signup/")
    page.fill("input[name=username]", "newcomer")
    page.fill("input[name=email]", "newcomer@example.org")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.locator("form button[type=submit], form input[type=submit]").last.click()
    page.wait_for_load_state()

    link = re.search(r"https?://\S+/accounts/verify-email/\S+/", mail.outbox[-1].body)
    assert link, mail.outbox[-1].body
    page.goto(base + re.sub(r"^https?://[^/]+", "", link.group(0)))
    assert "is verified" in page.content()

    page.goto(f"{base}/challenges/{slug}/join/")
    page.check("input[name=accept_terms]")
    page.locator("#terms form button[type=submit], form button[type=submit]").last.click()
    page.wait_for_load_state()

    page.goto(f"{base}/challenges/{slug}/data/")
    row = page.locator('#downloads tr[data-file$="sample-submission.csv"]')
    listed_sha = row.locator("code").inner_text().strip()
    with page.expect_download() as info:
        row.locator("a").click()
    sample = tmp_path / "sample-submission.csv"
    info.value.save_as(sample)
    assert hashlib.sha256(sample.read_bytes()).hexdigest() == listed_sha

    page.goto(f"{base}/challenges/{slug}/open/submit/")
    page.set_input_files("input[type=file]", str(sample))
    page.locator("form button[type=submit]").last.click()
    # the page refreshes itself until the evaluation ends: no reload from the test
    expect(page.locator("#submissions td.state").first).to_have_text("Succeeded", timeout=90_000)
    page.locator("#submissions tbody tr").first.locator("a").first.click()
    page.wait_for_load_state()
    assert "sample-submission.csv" in page.content()
    assert "auc_roc" in page.content()

    from challenges.models import LeaderboardEntry

    wait_for(
        lambda: LeaderboardEntry.objects.filter(
            phase__challenge__slug=slug, part="public", participant__username="newcomer"
        ).exists(),
        timeout=60,
    )
    page.goto(f"{base}/challenges/{slug}/open/leaderboard/")
    mine = page.locator("#leaderboard tbody tr.mine")
    assert mine.count() == 1 and "newcomer" in mine.inner_text()
    with page.expect_download() as info:
        page.locator("a#csv").click()
    board = tmp_path / "board.csv"
    info.value.save_as(board)
    rows = list(csv.DictReader(io.StringIO(board.read_text())))
    assert any(r["entrant"] == "newcomer" for r in rows)
