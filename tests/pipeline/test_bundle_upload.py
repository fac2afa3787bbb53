"""An organizer uploads a challenge bundle from the API and from the browser: the dry run
reports what the import would do (or every problem), confirming hands it to a real Celery worker
that imports it, and the new challenge is unpublished with the uploader as its organizer. Who
may create, update and see an upload is checked (API 403/404, pages 403/404). The pages are
photographed at 1366 and 390 px (var/screenshots/) and never scroll sideways on a phone."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.authtoken.models import Token

from challenges.models import BundleUpload, Challenge, OrganizerAction
from tests.factories import UserFactory
from tests.foundation.test_bundle_checks import (
    _other_spacing,
    _undeclared_label,
    creator,
    seg_bundle,
    zipped,
)
from tests.foundation.test_pages import page  # noqa: F401 -- shared fixture
from tests.helpers import wait_for

SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture
def slug() -> object:
    """A slug of its own per test; its stored data is removed afterwards (the worker and this
    process share the var folder of the environment)."""
    value = f"upload-{uuid.uuid4().hex[:8]}"
    yield value
    for root in (settings.MEDIA_ROOT, settings.SCANBENCH_PRIVATE_ROOT):
        shutil.rmtree(Path(root) / "challenges" / value, ignore_errors=True)


def _api(user) -> Client:  # type: ignore[no-untyped-def]
    token, _ = Token.objects.get_or_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


def _post_bundle(client: Client, archive: Path, **extra: str):  # type: ignore[no-untyped-def]
    with archive.open("rb") as fh:
        return client.post("/api/bundles/", {"file": fh, **extra})


def test_api_dry_run_confirm_and_background_import(start_worker, tmp_path, slug):
    start_worker()
    user = creator()
    api = _api(user)
    archive = zipped(seg_bundle(tmp_path / "bundle", slug=slug), tmp_path / "bundle.zip")
    response = _post_bundle(api, archive)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["state"] == "checked" and body["slug"] == slug
    assert body["report"]["cases"] == {"train": 2, "test": 2}
    assert not Challenge.objects.filter(slug=slug).exists()  # a dry run writes no challenge

    response = api.post(f"/api/bundles/{body['id']}/confirm/")
    assert response.status_code == 202 and response.json()["state"] == "importing"
    final = wait_for(
        lambda: (r := api.get(f"/api/bundles/{body['id']}/").json())["state"] != "importing" and r,
        timeout=60,
    )
    assert final["state"] == "imported", final  # type: ignore[index]
    assert final["progress"]["stage"] == "done"  # type: ignore[index]
    challenge = Challenge.objects.get(slug=slug)
    assert challenge.is_published is False
    assert list(challenge.organizers.all()) == [user]
    assert challenge.bundle_uploads.get().pk == body["id"]
    action = OrganizerAction.objects.get(challenge=challenge)
    assert action.action == "import" and action.actor == user
    # a second confirmation is refused: the upload is no longer waiting
    assert api.post(f"/api/bundles/{body['id']}/confirm/").status_code == 409


@pytest.mark.django_db
def test_api_refuses_a_bad_bundle_with_every_problem(tmp_path, slug):
    bundle = seg_bundle(tmp_path / "bundle", slug=slug)
    _other_spacing(bundle)
    _undeclared_label(bundle)
    response = _post_bundle(_api(creator()), zipped(bundle, tmp_path / "bundle.zip"))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "bundle_invalid" and body["state"] == "refused"
    assert "2 problem(s)" in body["detail"]
    assert any("mask spacing (0.8, 0.8, 3) mm differs" in p for p in body["problems"])
    assert any("mask holds label 3" in p for p in body["problems"])


@pytest.mark.django_db
def test_api_permissions(tmp_path, slug):
    archive = zipped(seg_bundle(tmp_path / "bundle", slug=slug), tmp_path / "bundle.zip")
    plain = UserFactory()
    response = _post_bundle(_api(plain), archive)
    assert response.status_code == 403 and response.json()["code"] == "bundle_forbidden"
    assert Client().post("/api/bundles/").status_code in (401, 403)

    owner = creator()
    upload = _post_bundle(_api(owner), archive).json()
    assert _api(plain).get(f"/api/bundles/{upload['id']}/").status_code == 404
    assert _api(plain).post(f"/api/bundles/{upload['id']}/confirm/").status_code == 404
    assert _api(owner).get(f"/api/bundles/{upload['id'] + 999}/").status_code == 404

    # organizing another challenge gives no right to update this one
    other = seg_bundle(tmp_path / "other", slug=f"{slug}-other")
    from challenges.services.bundles import challenge_import_bundle

    challenge_import_bundle(path=tmp_path / "bundle", organizer=owner)
    theirs = challenge_import_bundle(path=other, organizer=plain).challenge
    response = _post_bundle(_api(plain), archive, challenge=theirs.slug)
    assert response.status_code == 400
    assert "uploaded to update" in response.json()["problems"][0]
    response = _post_bundle(_api(plain), archive, challenge=slug)
    assert response.status_code == 403
    for root in (settings.MEDIA_ROOT, settings.SCANBENCH_PRIVATE_ROOT):
        shutil.rmtree(Path(root) / "challenges" / theirs.slug, ignore_errors=True)


@pytest.mark.django_db
def test_pages_permissions(tmp_path, slug):
    plain, owner = UserFactory(), creator()
    client = Client()
    assert client.get("/organize/new/").status_code == 302  # to the log-in page
    client.force_login(plain)
    assert client.get("/organize/new/").status_code == 403
    owner_client = Client()
    owner_client.force_login(owner)
    assert owner_client.get("/organize/new/").status_code == 200
    archive = zipped(seg_bundle(tmp_path / "bundle", slug=slug), tmp_path / "bundle.zip")
    with archive.open("rb") as fh:
        response = owner_client.post("/organize/new/", {"file": fh})
    assert response.status_code == 302
    upload = BundleUpload.objects.get()
    assert response["Location"] == f"/organize/uploads/{upload.pk}/"
    page_html = owner_client.get(response["Location"]).content.decode()
    assert "Confirm and import" in page_html and slug in page_html
    assert client.get(response["Location"]).status_code == 404  # not the uploader
    assert client.get(f"/challenges/{slug}/console/bundle/").status_code == 404


def _login(context, live_server, user) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def _shoot(page, name: str) -> None:  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1366, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"bundle-{name}-{width}.png"), full_page=True)
        if width == 390:
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= 390, f"{name} scrolls sideways at 390 px ({scroll} px wide)"
    page.set_viewport_size({"width": 1366, "height": 900})


@pytest.mark.browser
def test_organizer_uploads_checks_and_imports_from_the_browser(
    page,  # noqa: F811
    live_server,
    start_worker,
    tmp_path,
    slug,
):
    start_worker()
    user = creator()
    _login(page.context, live_server, user)
    bad = seg_bundle(tmp_path / "bad", slug=slug)
    _other_spacing(bad)
    _undeclared_label(bad)
    good = seg_bundle(tmp_path / "good", slug=slug)

    page.goto(live_server.url + "/organize/new/")
    _shoot(page, "new")
    page.set_input_files("#bundle-file", str(zipped(bad, tmp_path / "bad.zip")))
    page.get_by_role("button", name="Upload and check").click()
    page.wait_for_url(re.compile(r"/organize/uploads/\d+/"))
    problems = page.locator("#problems")
    assert "2 problems" in problems.inner_text()
    assert "mask holds label 3" in problems.inner_text()
    _shoot(page, "refused")

    page.goto(live_server.url + "/organize/new/")
    page.set_input_files("#bundle-file", str(zipped(good, tmp_path / "good.zip")))
    page.get_by_role("button", name="Upload and check").click()
    page.wait_for_url(re.compile(r"/organize/uploads/\d+/"))
    assert "creates a new challenge" in page.locator("#report-challenge").inner_text()
    _shoot(page, "checked")
    page.get_by_role("button", name="Confirm and import").click()
    page.get_by_text("Imported:").wait_for(timeout=60_000)  # the poll reloads the page
    assert "unpublished" in page.locator("main").inner_text()
    _shoot(page, "imported")
    page.goto(f"{live_server.url}/challenges/{slug}/console/bundle/")
    assert "Its slug must be" in page.locator("main").inner_text()
    _shoot(page, "update")
    challenge = Challenge.objects.get(slug=slug)
    assert challenge.is_published is False and challenge.organizers.filter(pk=user.pk).exists()
