"""Issue 8, web hardening: safe redirects, log-in and API throttling, uploads refused before
their body is read, client input that cannot cause a server error, look-alike usernames."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from django.contrib.auth import user_login_failed
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from challenges.models import Submission
from challenges.services.submissions import submission_create
from tests.factories import PhaseFactory, UserFactory

PASSWORD = "a-long-passphrase-42"
CSV = b"case_id,score\nc1,0.5\n"
# The storage adds a random suffix when the same content was stored before in the phase.
STORED_NAME = re.compile(r"submission(_[A-Za-z0-9]{7})?\.csv")


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    """Throttle counters live in the (local-memory) cache: each test starts from none."""
    cache.clear()
    yield
    cache.clear()


def _api(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


# --- 6. Redirects only to this site's own paths ----------------------------------------------

OFF_SITE = [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example/",
    "https:evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " //evil.example/",
    "/\tevil.example/",
    "/ok\r\nSet-Cookie: x=y",
    "/" + "x" * 10_000,
    "\x00\x01garbage" * 200,
]


def _assert_local(response, expected: str) -> None:
    assert response.status_code == 302, response.content[:300]
    location = response["Location"]
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc, location
    assert location == expected


@pytest.mark.django_db
@pytest.mark.parametrize("target", OFF_SITE)
def test_signup_redirects_off_site_next_to_the_home_page(client, target):
    response = client.post(
        "/accounts/signup/?" + urlencode({"next": target}),
        {
            "username": "newcomer",
            "email": "newcomer@example.org",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    _assert_local(response, "/")
    assert User.objects.filter(username="newcomer").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("target", OFF_SITE)
def test_login_redirects_off_site_next_to_the_default(client, target):
    UserFactory(username="alice", password=PASSWORD)
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD, "next": target}
    )
    _assert_local(response, "/")


@pytest.mark.django_db
def test_signup_and_login_follow_a_path_on_this_site(client):
    path = "/challenges/some-challenge/?tab=phases"
    response = client.post(
        "/accounts/signup/?" + urlencode({"next": path}),
        {
            "username": "newcomer",
            "email": "newcomer@example.org",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    _assert_local(response, path)
    client.logout()
    response = client.post(
        "/accounts/login/", {"username": "newcomer", "password": PASSWORD, "next": path}
    )
    _assert_local(response, path)


# --- 9. Throttling; no HTTP Basic on the API ---------------------------------------------------


def _login(client: Client, username: str, password: str, **extra):
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


@pytest.mark.django_db
def test_eleventh_log_in_is_refused_even_with_the_right_password(client, settings):
    settings.SCANBENCH_LOGIN_FAILURES_PER_15MIN = 10
    UserFactory(username="alice", password=PASSWORD)
    for _ in range(10):
        response = _login(client, "alice", "wrong-password")
        assert response.status_code == 200
        assert "correct username and password" in response.content.decode()
    checked: list[str] = []

    def on_failure(**kwargs) -> None:
        checked.append(kwargs["credentials"]["username"])

    user_login_failed.connect(on_failure)
    try:
        response = _login(client, "alice", PASSWORD)
    finally:
        user_login_failed.disconnect(on_failure)
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 15 * 60 + 1
    assert "Too many failed log-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert checked == []  # refused before authenticate() ran: no password was checked
    # The count is per username, not per letter case.
    assert _login(client, "ALICE", PASSWORD).status_code == 429
    # Another account from another address is not affected.
    UserFactory(username="bob", password=PASSWORD)
    other = Client(REMOTE_ADDR="192.0.2.7")
    assert _login(other, "bob", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_admin_log_in_shares_the_failure_count(client, settings):
    settings.SCANBENCH_LOGIN_FAILURES_PER_15MIN = 3
    UserFactory(username="root", password=PASSWORD, is_staff=True, is_superuser=True)
    for _ in range(3):
        _login(client, "root", "wrong-password")
    response = client.post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD})
    assert response.status_code == 200  # the admin's form shows the error
    assert "Too many failed log-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_log_in_from_one_address_is_refused_after_failures_across_usernames(settings):
    settings.SCANBENCH_LOGIN_FAILURES_PER_ADDRESS_PER_15MIN = 3
    UserFactory(username="carol", password=PASSWORD)
    attacker = Client(REMOTE_ADDR="198.51.100.9")
    for name in ("u1", "u2", "u3"):
        assert _login(attacker, name, "guess").status_code == 200
    assert _login(attacker, "carol", PASSWORD).status_code == 429
    # Without SCANBENCH_BEHIND_PROXY a forged X-Forwarded-For does not change the address.
    forged = _login(attacker, "carol", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.1")
    assert forged.status_code == 429
    assert _login(Client(REMOTE_ADDR="198.51.100.10"), "carol", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_api_does_not_accept_http_basic_credentials(client):
    phase = PhaseFactory()
    user = UserFactory(username="dave", password=PASSWORD)
    basic = "Basic " + base64.b64encode(f"dave:{PASSWORD}".encode()).decode()
    url = f"/api/phases/{phase.pk}/limits/"
    assert client.get(url, HTTP_AUTHORIZATION=basic).status_code in (401, 403)
    assert _api(user).get(url).status_code == 200


@pytest.mark.django_db
def test_anonymous_api_reads_are_throttled_per_address_with_retry_after(settings):
    settings.SCANBENCH_API_ANON_RATE = "3/min"
    phase = PhaseFactory()
    url = f"/api/phases/{phase.pk}/leaderboard/"
    anonymous = APIClient(REMOTE_ADDR="192.0.2.1")
    assert [anonymous.get(url).status_code for _ in range(3)] == [200, 200, 200]
    refused = anonymous.get(url)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert APIClient(REMOTE_ADDR="192.0.2.2").get(url).status_code == 200
    assert _api(UserFactory()).get(url).status_code == 200  # signed-in callers: not this limit


@pytest.mark.django_db
def test_api_uploads_are_throttled_per_user_with_retry_after(settings):
    settings.SCANBENCH_API_UPLOAD_RATE = "2/min"
    phase = PhaseFactory()
    client = _api(UserFactory())
    url = f"/api/phases/{phase.pk}/submissions/"
    for i in range(2):
        response = client.post(url, {"file": SimpleUploadedFile(f"p{i}.csv", CSV)})
        assert response.status_code == 201, response.content
    refused = client.post(url, {"file": SimpleUploadedFile("p.csv", CSV)})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert (
        _api(UserFactory()).post(url, {"file": SimpleUploadedFile("p.csv", CSV)}).status_code == 201
    )


# --- 10. Limits checked before the body is read -----------------------------------------------


def _raw_post(
    live_server, path: str, headers: dict[str, str], declared: int
) -> tuple[int, dict, bytes]:
    """Send only the headers and a few bytes of a ``declared``-byte multipart body over a real
    socket; return the response that arrives without the rest being sent."""
    url = urlsplit(live_server.url)
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {url.hostname}:{url.port}",
        "Content-Type: multipart/form-data; boundary=xyz",
        f"Content-Length: {declared}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=15) as sock:
        sock.sendall(head + b'--xyz\r\nContent-Disposition: form-data; name="file"')
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection without answering"
            data += chunk
        header_blob, body = data.split(b"\r\n\r\n", 1)
        status_line, *header_lines = header_blob.decode("latin-1").split("\r\n")
        response_headers = {
            k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)
        }
        length = int(response_headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    assert time.monotonic() - started < 10, "the answer waited for the body"
    return int(status_line.split()[1]), response_headers, body


@pytest.fixture
def upload_setup(live_server, transactional_db, settings):
    settings.SCANBENCH_MAX_UPLOAD_BYTES = 1024 * 1024
    user = UserFactory(username="erin", password=PASSWORD)
    token = Token.objects.create(user=user).key
    return user, token


def _api_refusal(live_server, phase, token: str, declared: int) -> tuple[int, dict]:
    status, _, body = _raw_post(
        live_server,
        f"/api/phases/{phase.pk}/submissions/",
        {"Authorization": f"Token {token}"},
        declared,
    )
    return status, json.loads(body)


def test_api_refuses_an_over_size_declared_upload_without_reading_it(live_server, upload_setup):
    _, token = upload_setup
    phase = PhaseFactory()
    status, body = _api_refusal(live_server, phase, token, 300 * 1024 * 1024)
    assert status == 413
    assert body["code"] == "too_large"
    assert "over the upload limit of 1048576 bytes" in body["detail"]
    assert not Submission.objects.exists()


def test_api_refuses_an_upload_to_a_closed_phase_without_reading_it(live_server, upload_setup):
    _, token = upload_setup
    phase = PhaseFactory(
        opens_at=timezone.now() - timedelta(days=10), closes_at=timezone.now() - timedelta(days=1)
    )
    status, body = _api_refusal(live_server, phase, token, 500_000)
    assert status == 403
    assert body["code"] == "phase_closed"
    assert "is closed" in body["detail"]


def test_api_refuses_an_upload_past_the_daily_limit_without_reading_it(live_server, upload_setup):
    user, token = upload_setup
    phase = PhaseFactory(daily_limit=1)
    submission_create(user=user, phase=phase, file=SimpleUploadedFile("p.csv", CSV))
    status, body = _api_refusal(live_server, phase, token, 500_000)
    assert status == 429
    assert body["code"] == "daily_limit"
    assert "today's 1 submissions" in body["detail"]
    assert Submission.objects.count() == 1


def test_api_refuses_an_upload_past_the_total_limit_without_reading_it(live_server, upload_setup):
    user, token = upload_setup
    phase = PhaseFactory(daily_limit=1, total_limit=1)
    submission_create(user=user, phase=phase, file=SimpleUploadedFile("p.csv", CSV))
    status, body = _api_refusal(live_server, phase, token, 500_000)
    assert status == 429
    assert body["code"] == "total_limit"


def test_submit_page_refuses_an_over_size_upload_with_a_clear_error_without_reading_it(
    live_server, upload_setup, client
):
    user, _ = upload_setup
    phase = PhaseFactory()
    client.force_login(user)
    path = f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/"
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    status, _, body = _raw_post(live_server, path, {"Cookie": cookie}, 300 * 1024 * 1024)
    assert status == 413
    page = body.decode()
    assert 'class="card error"' in page
    assert "over the upload limit of 1048576 bytes" in page
    assert not Submission.objects.exists()


def test_submit_page_refuses_a_closed_phase_and_a_spent_limit_without_reading_the_body(
    live_server, upload_setup, client
):
    user, _ = upload_setup
    closed = PhaseFactory(
        opens_at=timezone.now() - timedelta(days=10), closes_at=timezone.now() - timedelta(days=1)
    )
    spent = PhaseFactory(daily_limit=1)
    submission_create(user=user, phase=spent, file=SimpleUploadedFile("p.csv", CSV))
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    cases = ((closed, 403, "is closed"), (spent, 429, "submissions; the next one"))
    for phase, status_expected, text in cases:
        path = f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/"
        status, _, body = _raw_post(live_server, path, {"Cookie": cookie}, 500_000)
        assert status == status_expected
        assert text in body.decode()


@pytest.mark.django_db
def test_submit_page_still_requires_the_csrf_token_once_the_checks_pass():
    phase = PhaseFactory()
    user = UserFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    path = f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/"
    forged = client.post(path, {"file": SimpleUploadedFile("p.csv", CSV)})
    assert forged.status_code == 403
    assert not Submission.objects.exists()
    token = client.get(path).context["csrf_token"]
    response = client.post(
        path, {"file": SimpleUploadedFile("p.csv", CSV), "csrfmiddlewaretoken": str(token)}
    )
    assert response.status_code == 302
    assert Submission.objects.count() == 1


@pytest.mark.django_db
def test_session_api_upload_still_requires_the_csrf_token_once_the_checks_pass():
    phase = PhaseFactory()
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(UserFactory())
    url = f"/api/phases/{phase.pk}/submissions/"
    assert client.post(url, {"file": SimpleUploadedFile("p.csv", CSV)}).status_code == 403
    assert not Submission.objects.exists()


@pytest.mark.django_db
def test_declared_length_over_the_limit_is_refused_by_the_test_client_without_reading(settings):
    """The Django test client raises if a view reads more than the body it was given."""
    settings.SCANBENCH_MAX_UPLOAD_BYTES = 1024 * 1024
    phase = PhaseFactory()
    client = _api(UserFactory())
    response = client.generic(
        "POST",
        f"/api/phases/{phase.pk}/submissions/",
        b"--xyz\r\n",
        content_type="multipart/form-data; boundary=xyz",
        CONTENT_LENGTH=str(50 * 1024 * 1024),
    )
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


# --- 11. Client input never causes a server error ---------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {"offset": "99999999999999999999"},
        {"offset": "-1"},
        {"offset": "1e3"},
        {"offset": "ten"},
        {"limit": "-5"},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "abc"},
        {"limit": "99999999999999999999"},
        {"limit": "٣"},  # an Arabic-Indic digit: a digit to str.isdigit, not a number here
    ],
)
def test_leaderboard_api_answers_bad_integers_with_400_detail_and_code(params):
    phase = PhaseFactory()
    response = APIClient().get(f"/api/phases/{phase.pk}/leaderboard/", params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_parameter"
    assert next(iter(params)) in body["detail"]


@pytest.mark.django_db
def test_leaderboard_api_takes_limit_and_offset_within_bounds():
    phase = PhaseFactory()
    response = APIClient().get(
        f"/api/phases/{phase.pk}/leaderboard/", {"limit": "500", "offset": "1000000000"}
    )
    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.django_db
def test_leaderboard_page_takes_any_page_number():
    phase = PhaseFactory()
    url = f"/challenges/{phase.challenge.slug}/{phase.slug}/leaderboard/"
    for page in ("99999999999999999999", "-1", "x", "1e400"):
        assert Client().get(url, {"page": page}).status_code == 200


@pytest.mark.django_db
def test_upload_with_a_name_too_long_for_the_file_system_is_stored_under_a_server_name():
    phase = PhaseFactory()
    client = _api(UserFactory())
    name = "\U00020000" * 70 + ".csv"  # 280 bytes of UTF-8 before the suffix: ENAMETOOLONG
    response = client.post(
        f"/api/phases/{phase.pk}/submissions/", {"file": SimpleUploadedFile(name, CSV)}
    )
    assert response.status_code == 201, response.content
    assert response.json()["original_name"] == name
    submission = Submission.objects.get()
    stored = Path(submission.file.path)
    assert STORED_NAME.fullmatch(stored.name), stored.name  # short, ASCII, the server's
    assert stored.read_bytes() == CSV
    assert submission.original_name == name


@pytest.mark.django_db
def test_original_name_is_cut_to_a_safe_length_keeping_the_file_type():
    phase = PhaseFactory()
    client = _api(UserFactory())
    name = "dir/../" + "é" * 400 + ".CSV"
    response = client.post(
        f"/api/phases/{phase.pk}/submissions/", {"file": SimpleUploadedFile(name, CSV)}
    )
    assert response.status_code == 201, response.content
    shown = response.json()["original_name"]
    assert len(shown) <= 200 and shown.endswith(".CSV") and "/" not in shown
    assert STORED_NAME.fullmatch(Path(Submission.objects.get().file.path).name)


@pytest.mark.django_db
def test_submit_page_lists_the_original_file_name():
    phase = PhaseFactory()
    user = UserFactory()
    submission_create(user=user, phase=phase, file=SimpleUploadedFile("my predictions v2.csv", CSV))
    client = Client()
    client.force_login(user)
    page = client.get(f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/")
    assert '<td class="file">my predictions v2.csv</td>' in page.content.decode()


@pytest.mark.django_db
def test_api_answers_a_huge_phase_id_with_404():
    client = _api(UserFactory())
    for url in ("/api/phases/99999999999999999999/limits/",
                "/api/phases/99999999999999999999/leaderboard/"):  # fmt: skip
        assert client.get(url).status_code == 404


# --- 13. Look-alike usernames -------------------------------------------------------------------


def _signup(client: Client, username: str):
    return client.post(
        "/accounts/signup/",
        {
            "username": username,
            "email": f"signup{User.objects.count()}@example.org",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "lookalike",
    [
        "\N{CYRILLIC SMALL LETTER A}lice",
        "ALICE",
        "\N{FULLWIDTH LATIN SMALL LETTER A}lice",
        "\N{GREEK SMALL LETTER ALPHA}lic\N{CYRILLIC SMALL LETTER IE}",
        "AL\N{CYRILLIC CAPITAL LETTER BYELORUSSIAN-UKRAINIAN I}CE",
        "a1ice",
    ],
)
def test_signup_refuses_a_username_that_looks_like_an_existing_one(client, lookalike):
    UserFactory(username="alice")
    response = _signup(client, lookalike)
    assert response.status_code == 400
    assert User.objects.count() == 1
    page = response.content.decode()
    assert "looks like the existing username" in page or "already exists" in page


@pytest.mark.django_db
def test_signup_refuses_cyrillic_alice_naming_the_existing_user(client):
    UserFactory(username="alice")
    response = _signup(client, "\N{CYRILLIC SMALL LETTER A}lice")
    assert "looks like the existing username “alice”" in response.content.decode()


@pytest.mark.django_db
def test_signup_accepts_a_different_name(client):
    UserFactory(username="alice")
    assert _signup(client, "alicia").status_code == 302
    assert _signup(Client(), "bob_42").status_code == 302
    assert set(User.objects.values_list("username", flat=True)) == {"alice", "alicia", "bob_42"}


@pytest.mark.django_db
def test_admin_add_user_refuses_a_lookalike_username(client):
    UserFactory(username="alice")
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(root)
    response = client.post(
        "/admin/auth/user/add/",
        {
            "username": "\N{CYRILLIC SMALL LETTER A}lice",
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 200
    assert "looks like the existing username" in response.content.decode()
    assert User.objects.count() == 2
    response = client.post(
        "/admin/auth/user/add/",
        {"username": "frank", "usable_password": "true", "password1": PASSWORD,
         "password2": PASSWORD},
    )  # fmt: skip
    assert response.status_code == 302
    assert User.objects.filter(username="frank").exists()
