"""A viewer in a real browser sees the challenge list and a task card; the organizer logs in
with the credentials `setup_demo` prints and reaches the console of a demo challenge."""

from __future__ import annotations

import io
import os
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

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # meanwhile are synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
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
    slugs = {cards.nth(i).get_attribute("data-challenge") for i in range(cards.count())}
    # the two tabular demos, and the imaging demos whose sources could be fetched
    assert {"breast-cancer-wdbc", "synthetic-lesions"} <= slugs
    assert slugs <= {
        "breast-cancer-wdbc", "synthetic-lesions", "chest-xray-pneumonia",
        "nuclei-segmentation", "lesion-segmentation-3d",
    }  # fmt: skip
    assert page.get_by_text("Breast biopsy: benign or malignant?").is_visible()
    page.get_by_role("link", name=re.compile("Breast biopsy")).click()
    page.wait_for_url(re.compile(r"/challenges/breast-cancer-wdbc/"))
    balance = page.locator("section", has_text="Class balance")
    assert balance.is_visible()
    assert "malignant" in balance.inner_text()
    assert "CC BY 4.0" in page.content()
    page.screenshot(path=str(tmp_path / "task-card.png"), full_page=True)


def test_the_printed_organizer_logs_in_and_reaches_the_console(demo, live_server, page):
    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", "organizer")
    page.fill("#id_password", demo)
    page.locator("main form button[type=submit], main form input[type=submit]").first.click()
    page.wait_for_load_state()
    page.get_by_role("link", name="Organize", exact=True).click()
    page.wait_for_url(re.compile(r"/organize/$"))
    row = page.locator('#organized tr[data-challenge="breast-cancer-wdbc"]')
    assert row.is_visible()
    row.get_by_role("link").click()
    page.wait_for_url(re.compile(r"/challenges/breast-cancer-wdbc/console/$"))
    assert page.get_by_role("heading", name=re.compile("console")).is_visible()
    assert page.locator("#phase-main, section.phase").first.is_visible()


def test_leaderboard_page_shows_baselines_scores_and_hides_the_private_part(
    demo, live_server, page
):
    from challenges.models import Evaluation, Phase
    from challenges.services.leaderboards import leaderboard_update
    from challenges.services.scoring import evaluation_score

    phase = Phase.objects.get(challenge__slug="breast-cancer-wdbc")
    for evaluation in Evaluation.objects.filter(submission__phase=phase):
        evaluation_score(evaluation_id=evaluation.pk)  # what the worker does
    leaderboard_update(phase_id=phase.pk)
    page.goto(live_server.url + phase.get_absolute_url())
    table = page.locator("#leaderboard")
    assert table.locator("tbody tr").count() == 7
    assert table.locator("tr.baseline").count() == 7
    always_negative = table.locator("tr", has_text="Always negative")
    cells = always_negative.locator("td").all_inner_texts()
    assert cells[0] == "7"  # last: it finds no malignant case
    assert "0.5000" in cells[2]  # AUC of a constant score
    page.get_by_role("link", name=re.compile("Private part")).click()
    hidden = page.locator("#hidden").inner_text()
    assert "revealed when this phase and every other phase scored on the same hidden" in hidden
