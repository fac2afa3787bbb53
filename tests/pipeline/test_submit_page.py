"""A participant in a real browser signs up, sees the limits, submits a CSV, and the page tells
them when the real worker has scored it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.factories import classification_phase

pytestmark = [pytest.mark.browser, pytest.mark.worker]
CHROMIUM = "/usr/bin/chromium"


def test_participant_submits_in_the_browser_and_sees_the_score(start_worker, live_server, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    phase, preds = classification_phase(tmp_path, daily_limit=3)
    start_worker(queues="cpu")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,score\nnot_a_case,0.3\n")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                            "--disable-background-networking"],
        )  # fmt: skip
        page = browser.new_page()
        submit_url = f"{live_server.url}/challenges/{phase.challenge.slug}/{phase.slug}/submit/"
        page.goto(submit_url)
        page.wait_for_url(re.compile(r"/accounts/login/"))
        page.get_by_role("link", name="Sign up").last.click()
        page.fill("#id_username", "newcomer")
        page.fill("#id_email", "newcomer@example.org")
        page.fill("#id_password1", "a-long-passphrase-42")
        page.fill("#id_password2", "a-long-passphrase-42")
        page.get_by_role("button", name="Create account").click()
        page.wait_for_url(re.compile(r"/submit/$"))
        assert "3 submissions left" in page.locator("#limits").inner_text()

        page.set_input_files("input[type=file]", str(preds))
        page.get_by_role("button", name="Submit").click()
        assert "Submitted" in page.get_by_role("status").inner_text()
        expect(page.locator("#submissions td.state").first).to_have_text(
            "Succeeded", timeout=90_000
        )
        first_row = page.locator("#submissions tbody tr").first.inner_text()
        assert re.search(r"0\.\d{4}", first_row), first_row

        page.set_input_files("input[type=file]", str(bad))
        page.get_by_role("button", name="Submit").click()
        expect(page.locator("#submissions td.state").first).to_have_text("Failed", timeout=90_000)
        message = page.locator("#submissions td.message").first.inner_text()
        assert "not_a_case" in message
        assert "1 submission left" in page.locator("#limits").inner_text()
        page.screenshot(path=str(tmp_path / "submit.png"), full_page=True)
        browser.close()
