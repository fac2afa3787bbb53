"""The documented API v1 (docs/api.md), addressed by slugs: every endpoint of the contract, its
permission boundaries (another entrant's submission, hidden data, the private leaderboard before
its reveal, non-members, anonymous callers) and its one error shape."""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from challenges.models import ChallengeMembership, LeaderboardEntry, Submission
from challenges.services.bundles import challenge_import_bundle
from tests.factories import UserFactory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bundles" / "synthetic-lesions"
SLUG = "synthetic-lesions"
PHASE = f"/api/challenges/{SLUG}/phases/open"
PASSWORD = "a-long-passphrase-42"
CSV = b"case_id,score\nc1,0.5\n"
_addresses = itertools.count(1)


def _address() -> str:
    """A client address of this test's own (the throttles count per address)."""
    n = next(_addresses)
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def _error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"detail", "code", "field"}, body
    assert body["code"] == code, body
    assert body["field"] == field, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def storage(settings, tmp_path: Path) -> Path:
    settings.VAR_DIR = settings.SCANBENCH_VAR_DIR = tmp_path / "var"
    settings.MEDIA_ROOT = tmp_path / "var" / "media"
    settings.SCANBENCH_PRIVATE_ROOT = tmp_path / "var" / "private"
    return tmp_path


@pytest.fixture
def lesions(db, storage: Path):
    """The committed synthetic classification bundle, imported and published."""
    challenge = challenge_import_bundle(path=EXAMPLE).challenge
    challenge.is_published = True
    challenge.save(update_fields=["is_published"])
    return challenge


def _api(user=None) -> APIClient:
    client = APIClient(REMOTE_ADDR=_address())
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def _member(challenge):
    user = UserFactory()
    client = _api(user)
    response = client.post(
        f"/api/challenges/{challenge.slug}/join/", {"accept_terms": True}, format="json"
    )
    assert response.status_code == 200, response.content
    return user, client


def _submit(client: APIClient, content: bytes = CSV, name: str = "preds.csv", **extra):
    return client.post(
        f"{PHASE}/submissions/", {"file": SimpleUploadedFile(name, content), **extra}
    )


# --- token ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_token_is_obtained_with_json_or_a_form_and_stays_the_same_key():
    user = UserFactory(username="erin", password=PASSWORD)
    client = _api()
    first = client.post("/api/token/", {"username": "erin", "password": PASSWORD}, format="json")
    assert first.status_code == 200, first.content
    assert first.json() == {"token": Token.objects.get(user=user).key, "username": "erin"}
    again = client.post("/api/token/", {"username": "erin", "password": PASSWORD})
    assert again.json()["token"] == first.json()["token"]
    token = first.json()["token"]
    me = APIClient(HTTP_AUTHORIZATION=f"Token {token}")
    assert me.get(f"/api/submissions/{10**9}/").status_code == 404  # authenticated, not 401


@pytest.mark.django_db
def test_token_with_wrong_credentials_is_400_invalid_credentials():
    UserFactory(username="frank", password=PASSWORD)
    client = _api()
    wrong = client.post("/api/token/", {"username": "frank", "password": "nope"}, format="json")
    _error(wrong, 400, "invalid_credentials")
    unknown = client.post("/api/token/", {"username": "nobody", "password": "x"}, format="json")
    _error(unknown, 400, "invalid_credentials")
    missing = client.post("/api/token/", {"username": "frank"}, format="json")
    _error(missing, 400, "required", "password")
    assert not Token.objects.exists()


@pytest.mark.django_db
def test_token_requests_are_throttled_per_address_with_retry_after(settings):
    settings.SCANBENCH_API_TOKEN_RATE = "3/min"
    UserFactory(username="gina", password=PASSWORD)
    client = APIClient(REMOTE_ADDR="192.0.2.77")
    body = {"username": "gina", "password": PASSWORD}
    assert [client.post("/api/token/", body).status_code for _ in range(3)] == [200] * 3
    refused = client.post("/api/token/", body)
    error = _error(refused, 429, "throttled")
    assert 0 < int(refused["Retry-After"]) <= 60
    assert error["retry_after"] == int(refused["Retry-After"])
    assert APIClient(REMOTE_ADDR="192.0.2.78").post("/api/token/", body).status_code == 200


@pytest.mark.django_db
def test_token_endpoint_counts_failed_passwords_like_the_log_in_page(settings):
    settings.SCANBENCH_LOGIN_FAILURES_PER_15MIN = 2
    UserFactory(username="hank", password=PASSWORD)
    for _ in range(2):
        wrong = _api().post("/api/token/", {"username": "hank", "password": "bad"})
        _error(wrong, 400, "invalid_credentials")
    # Paused for this username, the right password included, before any password is checked.
    paused = _api().post("/api/token/", {"username": "hank", "password": PASSWORD})
    _error(paused, 429, "throttled")
    assert int(paused["Retry-After"]) > 60


# --- challenges -------------------------------------------------------------------------------


def test_challenge_list_and_detail_describe_the_challenge_by_slugs(lesions):
    anonymous = _api()
    listed = anonymous.get("/api/challenges/")
    assert listed.status_code == 200
    body = listed.json()
    assert body["count"] == 1
    (item,) = body["results"]
    assert item["slug"] == SLUG and item["task_type"] == "classification"
    assert item["url"].endswith(f"/challenges/{SLUG}/")
    (phase,) = item["phases"]
    assert phase["slug"] == "open" and phase["status"] == "open"
    assert set(phase) >= {"title", "opens_at", "closes_at", "submission_kind", "primary_metric"}

    detail = anonymous.get(f"/api/challenges/{SLUG}/").json()
    assert detail["joined"] is False and detail["membership_status"] is None
    assert detail["classes"] == ["no lesion", "lesion"]
    assert detail["licence"] == "CC0 1.0" and detail["terms"]
    assert detail["task_card"]["task_type"] == "classification"
    assert detail["task_card"]["phases"][0]["phase"] == "open"
    assert detail["phases"][0]["slug"] == "open"

    _, member = _member(lesions)
    joined = member.get(f"/api/challenges/{SLUG}/").json()
    assert joined["joined"] is True and joined["membership_status"] == "approved"
    _error(anonymous.get("/api/challenges/no-such-challenge/"), 404, "not_found")


def test_unpublished_challenges_are_not_listed_nor_found(lesions):
    lesions.is_published = False
    lesions.save(update_fields=["is_published"])
    assert _api().get("/api/challenges/").json() == {"count": 0, "results": []}
    body = _error(_api().get(f"/api/challenges/{SLUG}/"), 404, "not_found")
    assert body == {"detail": "Not found.", "code": "not_found", "field": None}


def test_join_needs_the_terms_accepted(lesions):
    user = UserFactory()
    client = _api(user)
    url = f"/api/challenges/{SLUG}/join/"
    _error(client.post(url, {}, format="json"), 400, "terms_not_accepted", "accept_terms")
    _error(
        client.post(url, {"accept_terms": False}, format="json"),
        400,
        "terms_not_accepted",
        "accept_terms",
    )
    assert not ChallengeMembership.objects.filter(user=user).exists()
    ok = client.post(url, {"accept_terms": True}, format="json")
    assert ok.json() == {"joined": True, "status": "approved"}
    _error(_api().post(url, {"accept_terms": True}, format="json"), 401, "not_authenticated")


def test_join_waits_for_approval_where_the_challenge_requires_it(lesions):
    lesions.requires_approval = True
    lesions.save(update_fields=["requires_approval"])
    user, client = _member(lesions)
    assert ChallengeMembership.objects.get(user=user).status == "pending"
    body = _error(client.get(f"/api/challenges/{SLUG}/data/"), 403, "not_joined")
    assert "approval" in body["detail"]


def test_malformed_json_and_wrong_media_type_are_400_and_415_in_the_error_shape(lesions):
    client = _api(UserFactory())
    url = f"/api/challenges/{SLUG}/join/"
    bad = client.post(url, data=b'{"accept_terms": tru', content_type="application/json")
    _error(bad, 400, "parse_error")
    odd = client.post(url, data=b"accept_terms", content_type="text/plain")
    _error(odd, 415, "unsupported_media_type")
    _error(client.delete(url), 405, "method_not_allowed")


# --- data -------------------------------------------------------------------------------------


def test_data_is_listed_and_downloaded_by_members_only(lesions):
    _error(_api().get(f"/api/challenges/{SLUG}/data/"), 401, "not_authenticated")
    stranger = _api(UserFactory())
    body = _error(stranger.get(f"/api/challenges/{SLUG}/data/"), 403, "not_joined")
    assert "Join" in body["detail"]
    _error(stranger.get(f"/api/challenges/{SLUG}/data/train.csv"), 403, "not_joined")
    anonymous = _api().get(f"/api/challenges/{SLUG}/data/train.csv")
    _error(anonymous, 401, "not_authenticated")
    assert anonymous["WWW-Authenticate"] == "Token"

    _, member = _member(lesions)
    files = member.get(f"/api/challenges/{SLUG}/data/").json()["files"]
    names = [f["name"] for f in files]
    assert "train.csv" in names
    for f in files:
        assert set(f) == {"name", "description", "size", "sha256", "url"}
        response = member.get(f["url"], HTTP_ACCEPT="application/octet-stream")
        assert response.status_code == 200
        content = b"".join(response.streaming_content)
        assert len(content) == f["size"]
        assert hashlib.sha256(content).hexdigest() == f["sha256"]
    url = next(f["url"] for f in files if f["name"] == "train.csv")
    part = member.get(url, HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206 and len(b"".join(part.streaming_content)) == 10


@pytest.mark.parametrize(
    "name",
    [
        "cases.csv",
        "labels.csv",
        "test_labels.csv",
        "reference.csv",
        "labels",
        "..%2F..%2Fprivate",
        "..%2Fcases.csv",
        "%2E%2E",
        "..",
        "train.csv%00",
        "features.csv",
    ],
)
def test_hidden_files_and_path_traversal_names_are_not_found(lesions, storage, name):
    _, member = _member(lesions)
    response = member.get(f"/api/challenges/{SLUG}/data/{name}")
    assert response.status_code == 404
    if response["Content-Type"].startswith("application/json"):
        assert response.json() == {"detail": "Not found.", "code": "not_found", "field": None}
    assert str(storage) not in response.content.decode(errors="replace")


# --- phases and submissions -------------------------------------------------------------------


def test_phase_detail_has_metrics_limits_and_the_callers_usage(lesions):
    anonymous = _api().get(f"{PHASE}/").json()
    assert anonymous["slug"] == "open" and anonymous["status"] == "open"
    assert anonymous["metrics"][0] == "auc_roc" and anonymous["limits"] is None
    assert anonymous["daily_limit"] == 10 and anonymous["total_limit"] == 200
    user = UserFactory()
    client = _api(user)
    assert _submit(client).status_code == 201
    limits = client.get(f"{PHASE}/").json()["limits"]
    assert limits["daily_used"] == 1 and limits["daily_left"] == 9
    assert limits["total_used"] == 1 and limits["total_left"] == 199
    assert limits["resets_at"]
    _error(_api().get(f"/api/challenges/{SLUG}/phases/nope/"), 404, "not_found")


def test_submit_list_and_read_own_submissions(lesions):
    user = UserFactory()
    client = _api(user)
    created = _submit(client, comment="first try")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["challenge"] == SLUG and body["phase"] == "open"
    assert body["file_name"] == "preds.csv" and body["comment"] == "first try"
    assert body["state"] == "queued" and body["message"] == ""
    assert body["url"].endswith(f"/api/submissions/{body['id']}/")
    (evaluation,) = body["evaluations"]
    assert evaluation["attempt"] == 1 and evaluation["results"] == {}
    assert "logs" not in evaluation

    listed = client.get(f"{PHASE}/submissions/").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    assert client.get(body["url"]).json()["id"] == body["id"]

    other = _api(UserFactory())
    assert other.get(f"{PHASE}/submissions/").json() == {"count": 0, "results": []}
    _error(other.get(f"/api/submissions/{body['id']}/"), 404, "not_found")
    _error(_api().get(f"/api/submissions/{body['id']}/"), 401, "not_authenticated")

    organizer = UserFactory()
    lesions.organizers.add(organizer)
    seen = _api(organizer).get(f"/api/submissions/{body['id']}/").json()
    assert seen["id"] == body["id"] and "logs" in seen["evaluations"][0]


def test_anonymous_submit_is_401_in_the_error_shape(lesions):
    response = _submit(_api())
    _error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"
    assert not Submission.objects.exists()


def test_bad_uploads_are_400_naming_the_field_and_store_nothing(lesions):
    client = _api(UserFactory())
    empty = _error(_submit(client, content=b""), 400, "empty", "file")
    assert empty["detail"] == "The submitted file is empty."
    _error(
        client.post(f"{PHASE}/submissions/", {"upload": SimpleUploadedFile("p.csv", CSV)}),
        400,
        "required",
        "file",
    )
    wrong_type = _error(_submit(client, name="preds.exe"), 400, "file_type")
    assert "preds.exe" in wrong_type["detail"]
    _error(_submit(client, comment="x" * 501), 400, "max_length", "comment")
    assert not Submission.objects.exists()


def test_refusals_of_the_submission_service_keep_their_status_and_code(lesions):
    phase = lesions.phases.get()
    phase.daily_limit = 1
    phase.save(update_fields=["daily_limit"])
    client = _api(UserFactory())
    assert _submit(client).status_code == 201
    refused = _error(_submit(client), 429, "daily_limit")
    assert "today's 1 submissions" in refused["detail"]
    phase.closes_at = timezone.now()
    phase.save(update_fields=["closes_at"])
    _error(_submit(_api(UserFactory())), 403, "phase_closed")


# --- leaderboards -----------------------------------------------------------------------------


def _entry(phase, submission, *, part: str, score: float) -> LeaderboardEntry:
    return LeaderboardEntry.objects.create(
        phase=phase,
        part=part,
        entrant=f"user:{submission.participant_id}",
        display_name=submission.participant.username,
        participant=submission.participant,
        submission=submission,
        evaluation=submission.evaluations.get(),
        rank=1,
        score=score,
        aggregates={"auc_roc": score},
        submitted_at=submission.created_at,
    )


def test_leaderboard_public_private_and_csv(lesions):
    phase = lesions.phases.get()
    user = UserFactory(username="ivy")
    client = _api(user)
    submission = Submission.objects.get(pk=_submit(client).json()["id"])
    _entry(phase, submission, part="public", score=0.75)
    _entry(phase, submission, part="private", score=0.7)

    board = _api().get(f"{PHASE}/leaderboard/").json()
    assert board["count"] == 1 and board["part"] == "public" and board["metric"] == "auc_roc"
    (row,) = board["results"]
    assert row["rank"] == 1 and row["entrant"] == "ivy" and row["score"] == 0.75
    assert set(row) >= {
        "score_ci_low", "score_ci_high", "rank_low", "rank_high", "tier", "is_baseline",
        "aggregates", "n_submissions",
    }  # fmt: skip

    hidden = _error(client.get(f"{PHASE}/leaderboard/?part=private"), 403, "private_hidden", "part")
    assert "revealed" in hidden["detail"]
    _error(_api().get(f"{PHASE}/leaderboard.csv?part=private"), 403, "private_hidden", "part")
    organizer = UserFactory()
    lesions.organizers.add(organizer)
    private = _api(organizer).get(f"{PHASE}/leaderboard/?part=private").json()
    assert private["results"][0]["score"] == 0.7

    csv = _api().get(f"{PHASE}/leaderboard.csv", HTTP_ACCEPT="text/csv")
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
    text = b"".join(csv.streaming_content).decode()
    assert text.splitlines()[0].startswith("rank,entrant,baseline,auc_roc")
    assert "ivy" in text
    organizer_csv = _api(organizer).get(f"{PHASE}/leaderboard.csv?part=private")
    assert organizer_csv.status_code == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("limit=99999999999999999999", "limit"),
        ("part=secret", "part"),
    ],
)
def test_bad_leaderboard_parameters_are_400_naming_the_parameter(lesions, query, field):
    _error(_api().get(f"{PHASE}/leaderboard/?{query}"), 400, "invalid_parameter", field)


def test_bad_list_parameters_are_400(lesions):
    _error(_api().get("/api/challenges/?limit=-3"), 400, "invalid_parameter", "limit")
    _error(
        _api(UserFactory()).get(f"{PHASE}/submissions/?offset=x"),
        400,
        "invalid_parameter",
        "offset",
    )


# --- schema and documentation -----------------------------------------------------------------


@pytest.mark.django_db
def test_schema_documents_the_slug_routes_and_the_docs_page_loads_nothing_from_outside():
    schema = _api().get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/token/",
        "/api/challenges/",
        "/api/challenges/{slug}/",
        "/api/challenges/{slug}/join/",
        "/api/challenges/{slug}/data/",
        "/api/challenges/{slug}/data/{name}",
        "/api/challenges/{slug}/phases/{phase}/",
        "/api/challenges/{slug}/phases/{phase}/submissions/",
        "/api/challenges/{slug}/phases/{phase}/leaderboard/",
        "/api/challenges/{slug}/phases/{phase}/leaderboard.csv",
        "/api/submissions/{submission_id}/",
    ):
        assert path in paths, path
    assert not [p for p in paths if p.startswith("/api/phases/")]
    docs = _api().get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html


# --- broken uploads ---------------------------------------------------------------------------


@pytest.fixture
def lesions_committed(transactional_db, storage: Path):
    """The synthetic challenge, committed (the live server's thread has its own connection)."""
    challenge = challenge_import_bundle(path=EXAMPLE).challenge
    challenge.is_published = True
    challenge.save(update_fields=["is_published"])
    return challenge


def _multipart(content: bytes, *, closed: bool = True) -> bytes:
    head = (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="p.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n"
    )
    return head + content + (b"\r\n--xyz--\r\n" if closed else b"")


def _raw_upload(live_server, token: str, body: bytes, declared: int) -> tuple[int, dict]:
    """Send ``body`` under a ``Content-Length`` of ``declared`` over a real socket, then end
    the sending side as a client that disconnects does; the server's answer."""
    url = urlsplit(live_server.url)
    head = (
        f"POST {PHASE}/submissions/ HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
        f"Authorization: Token {token}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {declared}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(payload or b"{}")


@pytest.mark.parametrize(
    "broken",
    ["disconnected_mid_file", "content_length_larger_than_body"],
)
def test_a_broken_upload_fails_clearly_and_stores_nothing(live_server, lesions_committed, broken):
    token = Token.objects.create(user=UserFactory()).key
    content = b"case_id,score\n" + b"c1,0.5\n" * 150_000  # about 1 MB: streamed to a temp file
    if broken == "disconnected_mid_file":
        body = _multipart(content[: len(content) // 3], closed=False)
        declared = len(_multipart(content))
    else:
        body = _multipart(content)
        declared = len(body) + 1000
    status, error = _raw_upload(live_server, token, body, declared)
    assert status == 400, error
    assert error["code"] == "incomplete_upload" and error["field"] is None
    assert "nothing was stored" in error["detail"]
    assert not Submission.objects.exists()
    media = Path(settings.MEDIA_ROOT) / "submissions"
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]
    # The same upload, whole, is accepted.
    whole = _multipart(content)
    status, created = _raw_upload(live_server, token, whole, len(whole))
    assert status == 201, created
    assert Submission.objects.get().sha256 == hashlib.sha256(content).hexdigest()


@pytest.mark.django_db
def test_unknown_api_paths_are_404_in_the_error_shape_and_a_missing_slash_is_redirected():
    client = _api()
    body = _error(client.get("/api/nothing-here/"), 404, "not_found")
    assert body == {"detail": "Not found.", "code": "not_found", "field": None}
    _error(client.get("/api/submissions/abc/"), 404, "not_found")
    redirected = client.get("/api/challenges?limit=5")
    assert redirected.status_code == 301
    assert redirected["Location"] == "/api/challenges/?limit=5"
    told = _error(client.post("/api/token", {"username": "a", "password": "b"}), 404, "not_found")
    assert told["detail"].endswith("/api/token/")
