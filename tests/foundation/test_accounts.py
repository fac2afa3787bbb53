"""Accounts (issue 9): sign-up with an e-mail address, its confirmation by signed link, password
reset by mail, and the profile page's API token."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core import mail, signing
from django.core.cache import cache
from django.test import Client
from rest_framework.authtoken.models import Token

from challenges.services import accounts
from tests.factories import PhaseFactory, UserFactory

PASSWORD = "a-long-passphrase-42"
NEW_PASSWORD = "another-long-passphrase-7"


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()  # the log-in throttle counts in the cache
    yield
    cache.clear()


def _signup(client: Client, username: str = "newcomer", email: str = "newcomer@example.org"):
    return client.post(
        "/accounts/signup/",
        {"username": username, "email": email, "password1": PASSWORD, "password2": PASSWORD},
    )


def _link_path(body: str, pattern: str) -> str:
    match = re.search(r"https?://\S+", body)
    assert match, body
    path = urlsplit(match.group(0)).path
    assert re.match(pattern, path), path
    return path


# --- Sign-up --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_signup_page_asks_for_an_email_address(client):
    page = client.get("/accounts/signup/").content.decode()
    assert 'name="email"' in page and 'type="email"' in page


@pytest.mark.django_db
def test_signup_without_an_email_address_is_refused(client):
    response = client.post(
        "/accounts/signup/",
        {"username": "newcomer", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 400
    assert not User.objects.filter(username="newcomer").exists()
    assert "This field is required" in response.content.decode()


@pytest.mark.django_db
def test_signup_refuses_an_address_another_account_has_in_any_case(client):
    UserFactory(username="alice", email="Alice@Example.org")
    response = _signup(client, email="alice@EXAMPLE.ORG")
    assert response.status_code == 400
    assert "An account with this e-mail address already exists" in response.content.decode()
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_signup_logs_in_at_once_with_the_address_unverified(client):
    response = _signup(client)
    assert response.status_code == 302
    user = User.objects.get(username="newcomer")
    assert user.email == "newcomer@example.org"
    assert not accounts.email_is_verified(user=user)
    page = client.get("/accounts/profile/").content.decode()
    assert "newcomer@example.org" in page and "not verified" in page


# --- Verification -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_verification_mail_link_verifies_the_address(client):
    _signup(client)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["newcomer@example.org"]
    path = _link_path(message.body, r"^/accounts/verify-email/[^/]+/$")

    anonymous = Client()  # the link works without a session (another browser, a phone)
    response = anonymous.get(path)
    assert response.status_code == 200
    assert "is verified" in response.content.decode()
    user = User.objects.get(username="newcomer")
    assert accounts.email_is_verified(user=user)
    page = client.get("/accounts/profile/").content.decode()
    assert ">verified<" in page and "Send the confirmation link again" not in page


@pytest.mark.django_db
def test_a_tampered_verification_link_is_refused(client):
    _signup(client)
    path = _link_path(mail.outbox[0].body, r"^/accounts/verify-email/[^/]+/$")
    token = path.split("/")[-2]
    other = UserFactory(username="mallory", email="mallory@example.org")
    forged = token.replace(token[1], "A" if token[1] != "A" else "B", 1)
    for bad in (forged, token[:-2], "x" + token):
        response = client.get(f"/accounts/verify-email/{bad}/")
        assert response.status_code == 400, bad
        assert "not valid" in response.content.decode()
    # A link signed for another purpose (another salt) does not verify either.
    wrong_salt = signing.TimestampSigner(salt="something-else").sign_object(
        {"u": other.pk, "e": other.email}, compress=True
    )
    assert client.get(f"/accounts/verify-email/{wrong_salt}/").status_code == 400
    assert not User.objects.filter(groups__name=accounts.VERIFIED_EMAIL_GROUP).exists()


class _SignedDaysAgo(signing.TimestampSigner):
    """The project's signer with its clock set back: a link mailed ``days`` ago."""

    def __init__(self, *, days: int, **kwargs):
        super().__init__(**kwargs)
        self.days = days

    def timestamp(self) -> str:
        return signing.b62_encode(int(time.time()) - self.days * 86400)


@pytest.mark.django_db
def test_an_expired_verification_link_is_refused(client, settings):
    user = UserFactory(username="newcomer", email="newcomer@example.org")
    max_days = settings.SCANBENCH_EMAIL_VERIFY_MAX_AGE_S // 86400
    data = {"u": user.pk, "e": user.email}
    salt = "scanbench.accounts.email-verification"
    fresh = _SignedDaysAgo(days=max_days - 1, salt=salt).sign_object(data, compress=True)
    old = _SignedDaysAgo(days=max_days + 1, salt=salt).sign_object(data, compress=True)

    response = client.get(f"/accounts/verify-email/{old}/")
    assert response.status_code == 400
    assert "expired" in response.content.decode()
    assert not accounts.email_is_verified(user=user)
    assert client.get(f"/accounts/verify-email/{fresh}/").status_code == 200
    assert accounts.email_is_verified(user=user)


@pytest.mark.django_db
def test_a_link_for_an_address_the_account_no_longer_has_is_refused(client):
    user = UserFactory(username="newcomer", email="old@example.org")
    token = accounts.email_verification_token(user=user)
    User.objects.filter(pk=user.pk).update(email="new@example.org")
    assert client.get(f"/accounts/verify-email/{token}/").status_code == 400
    assert not accounts.email_is_verified(user=User.objects.get(pk=user.pk))


@pytest.mark.django_db
def test_profile_sends_the_verification_link_again_by_post_only(client):
    user = UserFactory(username="newcomer", email="newcomer@example.org")
    client.force_login(user)
    assert client.get("/accounts/profile/verify-email/").status_code == 405
    response = client.post("/accounts/profile/verify-email/", follow=True)
    assert "We sent a new confirmation link to newcomer@example.org" in response.content.decode()
    assert len(mail.outbox) == 1
    path = _link_path(mail.outbox[0].body, r"^/accounts/verify-email/[^/]+/$")
    assert client.get(path).status_code == 200
    assert accounts.email_is_verified(user=user)


@pytest.mark.django_db
def test_profile_actions_need_the_csrf_token():
    user = UserFactory(username="newcomer")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/accounts/profile/token/", {"action": "create"}).status_code == 403
    assert client.post("/accounts/profile/verify-email/").status_code == 403
    assert not Token.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_changing_the_address_in_the_admin_drops_the_verification(client):
    organizer = User.objects.create_superuser("organizer", "org@example.org", PASSWORD)
    user = UserFactory(username="newcomer", email="newcomer@example.org")
    accounts.email_verify(token=accounts.email_verification_token(user=user))
    client.force_login(organizer)
    data = {
        "username": "newcomer",
        "email": "newcomer@example.org",
        "groups": list(user.groups.values_list("pk", flat=True)),
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    url = f"/admin/auth/user/{user.pk}/change/"
    data["first_name"] = "New"  # another change keeps the verification
    assert client.post(url, data).status_code == 302
    assert accounts.email_is_verified(user=user)
    data["email"] = "elsewhere@example.org"
    assert client.post(url, data).status_code == 302
    assert User.objects.get(pk=user.pk).email == "elsewhere@example.org"
    assert not accounts.email_is_verified(user=user)


# --- Password reset ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_login_page_links_to_password_reset(client):
    page = client.get("/accounts/login/").content.decode()
    assert 'href="/accounts/password_reset/"' in page and "Forgot password?" in page


@pytest.mark.django_db
def test_password_reset_end_to_end(client, settings):
    UserFactory(username="alice", email="Alice@example.org", password=PASSWORD)
    page = client.get("/accounts/password_reset/").content.decode()
    assert "Reset your password" in page and "Scanbench" in page  # the site's page, not admin's

    response = client.post("/accounts/password_reset/", {"email": "alice@example.org"})
    assert response.status_code == 302
    assert client.get(response["Location"]).status_code == 200  # "check your mail"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["Alice@example.org"]
    assert message.subject == "[Scanbench] Reset your password"
    assert message.body.count(settings.SCANBENCH_SITE_URL) == 1
    path = _link_path(message.body, r"^/accounts/reset/[^/]+/[^/]+/$")

    response = client.get(path)  # Django moves the token into the session, then redirects
    assert response.status_code == 302
    form_url = response["Location"]
    assert "Choose a new password" in client.get(form_url).content.decode()
    response = client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert "Password changed" in client.get(response["Location"]).content.decode()

    fresh = Client()
    assert (
        fresh.post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code
        == 200
    )
    response = fresh.post("/accounts/login/", {"username": "alice", "password": NEW_PASSWORD})
    assert response.status_code == 302
    # The link works once.
    assert "not valid" in Client().get(path, follow=True).content.decode()


@pytest.mark.django_db
def test_password_reset_for_an_unknown_address_sends_nothing_and_says_the_same(client):
    response = client.post("/accounts/password_reset/", {"email": "nobody@example.org"})
    assert response.status_code == 302 and response["Location"] == "/accounts/password_reset/done/"
    assert mail.outbox == []


@pytest.mark.django_db
def test_login_throttle_still_applies_and_a_reset_lifts_the_username_lock(client, settings):
    settings.SCANBENCH_LOGIN_FAILURES_PER_15MIN = 3
    UserFactory(username="alice", email="alice@example.org", password=PASSWORD)
    for _ in range(3):
        client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429 and int(response["Retry-After"]) > 0

    client.post("/accounts/password_reset/", {"email": "alice@example.org"})
    path = _link_path(mail.outbox[0].body, r"^/accounts/reset/")
    form_url = client.get(path)["Location"]
    client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    response = client.post("/accounts/login/", {"username": "alice", "password": NEW_PASSWORD})
    assert response.status_code == 302


# --- Profile and API token ---------------------------------------------------------------------


@pytest.mark.django_db
def test_profile_needs_a_log_in(client):
    for method, url in (
        ("get", "/accounts/profile/"),
        ("post", "/accounts/profile/token/"),
        ("post", "/accounts/profile/verify-email/"),
    ):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next=/accounts/profile/")


@pytest.mark.django_db
def test_header_links_the_username_to_the_profile(client):
    client.force_login(UserFactory(username="newcomer"))
    page = client.get("/").content.decode()
    assert 'href="/accounts/profile/"' in page


@pytest.mark.django_db
def test_token_is_shown_once_and_authenticates_the_api(client):
    user = UserFactory(username="newcomer")
    phase = PhaseFactory()
    client.force_login(user)
    assert "No API token" in client.get("/accounts/profile/").content.decode()

    response = client.post("/accounts/profile/token/", {"action": "create"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    key = Token.objects.get(user=user).key
    assert key in response.content.decode()

    page = client.get("/accounts/profile/").content.decode()
    assert key not in page
    assert f"{key[:4]}…" in page and "created" in page

    api = Client()
    url = f"/api/phases/{phase.pk}/limits/"
    assert api.get(url).status_code in (401, 403)
    response = api.get(url, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_rotating_the_token_invalidates_the_old_key(client):
    user = UserFactory(username="newcomer")
    phase = PhaseFactory()
    client.force_login(user)
    client.post("/accounts/profile/token/", {"action": "create"})
    old = Token.objects.get(user=user).key

    response = client.post("/accounts/profile/token/", {"action": "rotate"})
    new = Token.objects.get(user=user).key
    assert new != old and new in response.content.decode()
    url = f"/api/phases/{phase.pk}/limits/"
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {old}").status_code == 401
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {new}").status_code == 200


@pytest.mark.django_db
def test_revoking_the_token_removes_it(client):
    user = UserFactory(username="newcomer")
    phase = PhaseFactory()
    client.force_login(user)
    client.post("/accounts/profile/token/", {"action": "create"})
    key = Token.objects.get(user=user).key

    response = client.post("/accounts/profile/token/", {"action": "revoke"}, follow=True)
    assert "API token revoked" in response.content.decode()
    assert not Token.objects.filter(user=user).exists()
    url = f"/api/phases/{phase.pk}/limits/"
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
    assert client.get("/accounts/profile/token/").status_code == 405


@pytest.mark.django_db
def test_profile_links_to_a_working_password_change_page(client):
    client.force_login(UserFactory(username="newcomer"))
    assert client.get("/accounts/password_change/").status_code == 200
