"""A viewer in a real browser sees the challenge list and a task card; an organizer logs into
the admin with the credentials `setup_demo` prints."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def page(tmp_path: Path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        yield page
        browser.close()


@pytest.fixture
def demo(transactional_db, settings, tmp_path) -> str:
    settings.SCANBENCH_VAR_DIR = settings.VAR_DIR = tmp_path
    out = io.StringIO()
    call_command("setup_demo", stdout=out)
    match = re.search(r"password '([^']+)'", out.getvalue())
    assert match, out.getvalue()
    return match.group(1)


def test_challenge_list_and_task_card_in_browser(demo, live_server, page, tmp_path):
    page.goto(live_server.url + "/")
    cards = page.locator("article[data-challenge]")
    assert cards.count() == 2
    assert page.get_by_text("Breast biopsy: benign or malignant?").is_visible()
    page.get_by_role("link", name=re.compile("Breast biopsy")).click()
    page.wait_for_url(re.compile(r"/challenges/breast-cancer-wdbc/"))
    balance = page.locator("section", has_text="Class balance")
    assert balance.is_visible()
    assert "malignant" in balance.inner_text()
    assert "CC BY 4.0" in page.content()
    page.screenshot(path=str(tmp_path / "task-card.png"), full_page=True)


def test_admin_accepts_the_printed_organizer_credentials(demo, live_server, page):
    page.goto(live_server.url + "/admin/")
    page.fill("#id_username", "organizer")
    page.fill("#id_password", demo)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))
    page.goto(live_server.url + "/admin/challenges/challenge/")
    assert page.locator("#result_list").get_by_text("breast-cancer-wdbc").is_visible()
