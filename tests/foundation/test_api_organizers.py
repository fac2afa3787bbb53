"""The organizer console in the API (docs/api.md, "Organizer actions"): every endpoint answers
401 without credentials and 404 to everyone but the organizers of that challenge (a participant,
another challenge's organizer, the site's superuser), does what it says for an organizer and
logs it, refuses in the API's error shape, and never changes a stored score."""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from challenges.models import (
    Announcement,
    ChallengeMembership,
    EntryExclusion,
    Evaluation,
    OrganizerAction,
    Result,
    Team,
    TeamMembership,
)
from challenges.services.bundles import challenge_import_bundle
from challenges.services.scoring import evaluation_score
from challenges.services.submissions import submission_create
from tests.factories import PhaseFactory, UserFactory, classification_phase

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bundles" / "synthetic-lesions"
_addresses = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def _api(user=None) -> APIClient:
    n = next(_addresses)
    client = APIClient(REMOTE_ADDR=f"10.9.{n // 256 % 256}.{n % 256}")
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def _error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"detail", "code", "field"}, body
    assert body["code"] == code, body
    assert body["field"] == field, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def _scored(phase, preds, user):
    submission = submission_create(
        user=user, phase=phase, file=SimpleUploadedFile("my preds.csv", preds.read_bytes())
    )
    evaluation_score(evaluation_id=submission.evaluations.get().pk)
    return submission


def _scores() -> list[tuple]:
    """Every stored result, as it is."""
    rows = Result.objects.values_list(
        "pk", "evaluation_id", "part", "aggregates", "case_values", "meta"
    )
    return sorted(
        (pk, ev, part, agg, bytes(cases), meta) for pk, ev, part, agg, cases, meta in rows
    )


@pytest.fixture
def world(db, tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=40, private_release="manual")
    org = UserFactory(username="org")
    phase.challenge.organizers.add(org)
    alice = UserFactory(username="alice")
    ChallengeMembership.objects.create(challenge=phase.challenge, user=alice, status="approved")
    carol = UserFactory(username="carol")
    ChallengeMembership.objects.create(challenge=phase.challenge, user=carol, status="approved")
    team = Team.objects.create(challenge=phase.challenge, name="Lesion Hunters", slug="hunters")
    TeamMembership.objects.create(team=team, user=carol, challenge=phase.challenge)
    submission = _scored(phase, preds, alice)
    team_submission = _scored(phase, preds, carol)
    pending = ChallengeMembership.objects.create(
        challenge=phase.challenge, user=UserFactory(username="waiting"), status="pending"
    )
    exclusion = EntryExclusion.objects.create(
        phase=phase, kind="hidden", submission=team_submission, reason="dup", created_by=org
    )
    other = PhaseFactory()
    other_org = UserFactory(username="other_org")
    other.challenge.organizers.add(other_org)
    return {
        "phase": phase,
        "challenge": phase.challenge,
        "org": org,
        "alice": alice,
        "carol": carol,
        "team": team,
        "submission": submission,
        "team_submission": team_submission,
        "pending": pending,
        "exclusion": exclusion,
        "other_org": other_org,
    }


def _endpoints(w) -> list[tuple[str, str, dict | None]]:
    """Every console endpoint of the API: (method, path, a valid body)."""
    base = f"/api/challenges/{w['challenge'].slug}/console"
    phase = f"{base}/phases/{w['phase'].slug}"
    sub = f"{base}/submissions/{w['submission'].pk}"
    return [
        ("get", f"{base}/", None),
        ("post", f"{base}/publish", {"published": False}),
        ("post", f"{base}/organizers", {"username": "alice"}),
        ("delete", f"{base}/organizers/org", None),
        ("patch", f"{phase}/", {"daily_limit": 3}),
        ("post", f"{phase}/open", None),
        ("post", f"{phase}/close", None),
        ("post", f"{phase}/reevaluate", None),
        ("post", f"{phase}/baselines", None),
        ("post", f"{phase}/publish-private", None),
        ("post", f"{phase}/disqualify", {"username": "alice", "reason": "two accounts"}),
        ("get", f"{base}/submissions/", None),
        ("get", f"{sub}/", None),
        ("post", f"{sub}/reevaluate", None),
        ("post", f"{sub}/hide", {"reason": "copied"}),
        ("post", f"{base}/exclusions/{w['exclusion'].pk}/lift", None),
        ("get", f"{base}/participants/", None),
        ("post", f"{base}/participants/waiting/approve", None),
        ("post", f"{base}/participants/waiting/reject", None),
        ("post", f"{base}/approval", {"requires_approval": True}),
        ("get", f"{base}/announcements/", None),
        ("post", f"{base}/announcements/", {"subject": "Hello", "body": "Text"}),
        ("get", f"{base}/actions/", None),
        ("get", f"{base}/results.csv", None),
        ("get", f"{base}/cases.csv", None),
    ]


def _call(client: APIClient, method: str, url: str, body: dict | None):
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, format="json")


def _untouched(w, scores) -> None:
    assert not OrganizerAction.objects.filter(challenge=w["challenge"]).exists()
    assert not Announcement.objects.exists()
    assert EntryExclusion.objects.get() == w["exclusion"]
    w["exclusion"].refresh_from_db()
    assert w["exclusion"].lifted_at is None
    w["challenge"].refresh_from_db()
    assert w["challenge"].is_published and not w["challenge"].requires_approval
    assert list(w["challenge"].organizers.values_list("username", flat=True)) == ["org"]
    w["pending"].refresh_from_db()
    assert w["pending"].status == "pending"
    assert Evaluation.objects.count() == 2
    assert _scores() == scores


def test_anonymous_callers_get_401_on_every_console_endpoint(world):
    scores = _scores()
    client = _api()
    for method, url, body in _endpoints(world):
        _error(_call(client, method, url, body), 401, "not_authenticated")
    _untouched(world, scores)


@pytest.mark.parametrize("who", ["participant", "other_org", "superuser"])
def test_everyone_but_the_organizers_gets_404_on_every_console_endpoint(world, who):
    intruder = {
        "participant": world["alice"],
        "other_org": world["other_org"],
        "superuser": UserFactory(username="root", is_staff=True, is_superuser=True),
    }[who]
    scores = _scores()
    client = _api(intruder)
    for method, url, body in _endpoints(world):
        body_ = _error(_call(client, method, url, body), 404, "not_found")
        assert body_["detail"] == "Not found.", url
    _untouched(world, scores)


def test_an_unknown_challenge_is_404_for_an_organizer_too(world):
    client = _api(world["org"])
    _error(client.get("/api/challenges/nope/console/"), 404, "not_found")
    _error(client.get(f"/api/challenges/{world['challenge'].slug}/console/phases/x/"), 405,
           "method_not_allowed")  # fmt: skip
    _error(
        client.post(f"/api/challenges/{world['challenge'].slug}/console/phases/x/open"),
        404,
        "not_found",
    )


def _last_action() -> str:
    return OrganizerAction.objects.order_by("-pk").values_list("action", flat=True).first() or ""


def test_the_organizer_reads_the_console_submissions_participants_and_exports(world):
    scores = _scores()
    client, slug = _api(world["org"]), world["challenge"].slug
    base = f"/api/challenges/{slug}/console"

    state = client.get(f"{base}/")
    assert state.status_code == 200, state.content
    body = state.json()
    assert body["published"] is True and body["requires_approval"] is False
    assert body["organizers"] == ["org"]
    [phase] = body["phases"]
    assert phase["slug"] == world["phase"].slug and phase["status"] == "open"
    assert phase["n_submissions"] == 2 and phase["private_release"] == "manual"
    assert phase["private_published_at"] is None
    assert set(phase) >= {"opens_at", "closes_at", "daily_limit", "total_limit"}

    listing = client.get(f"{base}/submissions/").json()
    assert listing["count"] == 2
    rows = {r["entrant"]: r for r in listing["results"]}
    assert set(rows) == {"alice", "Lesion Hunters"}
    assert rows["Lesion Hunters"]["hidden"] and not rows["alice"]["hidden"]
    assert rows["alice"]["state"] == "succeeded" and isinstance(rows["alice"]["score"], float)
    assert client.get(f"{base}/submissions/", {"q": "alic"}).json()["count"] == 1
    assert client.get(f"{base}/submissions/", {"failed": "1"}).json()["count"] == 0
    assert client.get(f"{base}/submissions/", {"phase": "nope"}).json()["count"] == 0
    assert client.get(f"{base}/submissions/", {"state": "succeeded"}).json()["count"] == 2
    page = client.get(f"{base}/submissions/", {"limit": 1, "offset": 1}).json()
    assert page["count"] == 2 and len(page["results"]) == 1
    _error(client.get(f"{base}/submissions/", {"state": "bogus"}), 400, "invalid_parameter",
           "state")  # fmt: skip
    _error(client.get(f"{base}/submissions/", {"limit": 0}), 400, "invalid_parameter", "limit")

    Evaluation.objects.filter(submission=world["submission"]).update(logs="x" * 30_000 + "END")
    detail = client.get(f"{base}/submissions/{world['submission'].pk}/").json()
    assert detail["entrant"] == "alice" and detail["participant"] == "alice"
    assert detail["team"] is None and detail["hidden"] is None
    [attempt] = detail["attempts"]
    assert attempt["logs"].endswith("END") and len(attempt["logs"]) < 30_000
    parts = {r["part"]: r for r in attempt["results"]}
    assert set(parts) == {"public", "private"}  # organizers see the private part
    assert parts["public"]["cases"] and parts["private"]["n_cases"] > 0
    team_detail = client.get(f"{base}/submissions/{world['team_submission'].pk}/").json()
    assert team_detail["team"] == "Lesion Hunters" and team_detail["hidden"]["reason"] == "dup"
    _error(client.get(f"{base}/submissions/{10**6}/"), 404, "not_found")
    _error(client.get(f"{base}/submissions/{10**30}/"), 404, "not_found")  # past bigint
    _error(client.post(f"{base}/exclusions/{10**30}/lift"), 404, "not_found")
    other = PhaseFactory()
    foreign = submission_create(
        user=world["alice"], phase=other, file=SimpleUploadedFile("p.csv", b"case_id,score\n")
    )
    _error(client.get(f"{base}/submissions/{foreign.pk}/"), 404, "not_found")

    members = client.get(f"{base}/participants/").json()
    assert members["count"] == 3 and members["results"][0]["username"] == "waiting"
    assert members["results"][0]["status"] == "pending"

    results = client.get(f"{base}/results.csv")
    assert results.status_code == 200 and results["Content-Type"].startswith("text/csv")
    assert f'filename="{slug}-results.csv"' in results["Content-Disposition"]
    table = list(csv.reader(io.StringIO(b"".join(results.streaming_content).decode())))
    assert table[0][:3] == ["submission", "phase", "entrant"] and len(table) > 2
    cases = client.get(f"{base}/cases.csv", HTTP_ACCEPT="text/html")
    assert cases.status_code == 200
    rows_ = list(csv.reader(io.StringIO(b"".join(cases.streaming_content).decode())))
    assert rows_[0] == ["submission", "attempt", "part", "case_id", "metric", "value"]
    assert len(rows_) > 40

    assert client.get(f"{base}/actions/").json() == {"count": 0, "results": []}
    assert client.get(f"{base}/announcements/").json() == {"count": 0, "results": []}
    assert not OrganizerAction.objects.exists()  # reading logs nothing
    assert _scores() == scores


def test_challenge_actions_change_it_are_logged_and_refusals_have_the_error_shape(world):
    scores = _scores()
    client, challenge = _api(world["org"]), world["challenge"]
    base = f"/api/challenges/{challenge.slug}/console"

    off = client.post(f"{base}/publish", {"published": False}, format="json")
    assert off.status_code == 200 and off.json()["published"] is False
    assert _last_action() == "unpublish"
    assert client.get(f"{base}/").status_code == 200  # still the organizers'
    assert _api(world["alice"]).get(f"/api/challenges/{challenge.slug}/").status_code == 404
    on = client.post(f"{base}/publish", {"published": True}, format="json")
    assert on.json()["published"] is True and _last_action() == "publish"
    _error(client.post(f"{base}/publish", {}, format="json"), 400, "required", "published")

    added = client.post(f"{base}/organizers", {"username": "alice"}, format="json")
    assert added.status_code == 201 and added.json()["organizers"] == ["alice", "org"]
    assert _last_action() == "organizer_add"
    _error(client.post(f"{base}/organizers", {"username": "alice"}, format="json"), 409,
           "action_refused")  # fmt: skip
    refused = _error(
        client.post(f"{base}/organizers", {"username": "nobody"}, format="json"),
        409,
        "action_refused",
    )
    assert refused["detail"] == "No user named 'nobody'."
    removed = client.delete(f"{base}/organizers/alice")
    assert removed.status_code == 200 and removed.json()["organizers"] == ["org"]
    assert _last_action() == "organizer_remove"
    _error(client.delete(f"{base}/organizers/org"), 409, "action_refused")  # keeps one
    _error(client.delete(f"{base}/organizers/alice"), 409, "action_refused")

    required = client.post(f"{base}/approval", {"requires_approval": True}, format="json")
    assert required.json()["requires_approval"] is True and _last_action() == "requires_approval"
    client.post(f"{base}/approval", {"requires_approval": False}, format="json")
    challenge.refresh_from_db()
    assert not challenge.requires_approval and _last_action() == "open_joining"

    approved = client.post(f"{base}/participants/waiting/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert approved.json()["decided_by"] == "org" and _last_action() == "approve"
    rejected = client.post(f"{base}/participants/waiting/reject")
    assert rejected.json()["status"] == "rejected" and _last_action() == "reject"
    _error(client.post(f"{base}/participants/nobody/approve"), 404, "not_found")

    mail.outbox.clear()
    sent = client.post(f"{base}/announcements/", {"subject": "Hello", "body": "Text"},
                       format="json")  # fmt: skip
    assert sent.status_code == 201 and sent.json()["recipients"] == 2  # alice, carol
    assert len(mail.outbox) == 2 and _last_action() == "announce"
    listed = client.get(f"{base}/announcements/").json()
    assert listed["count"] == 1 and listed["results"][0]["subject"] == "Hello"
    _error(client.post(f"{base}/announcements/", {"subject": "Hi"}, format="json"), 400,
           "required", "body")  # fmt: skip
    _error(client.post(f"{base}/announcements/", {"subject": " ", "body": "x"}, format="json"),
           400, "blank", "subject")  # fmt: skip

    log = client.get(f"{base}/actions/").json()
    assert log["count"] == OrganizerAction.objects.count() > 5
    assert log["results"][0]["action"] == "announce" and log["results"][0]["actor"] == "org"
    assert client.get(f"{base}/actions/", {"limit": 2}).json()["results"] == log["results"][:2]
    assert _scores() == scores


def test_phase_actions_change_it_are_logged_and_keep_every_score(world):
    scores = _scores()
    client, phase = _api(world["org"]), world["phase"]
    url = f"/api/challenges/{world['challenge'].slug}/console/phases/{phase.slug}"

    changed = client.patch(f"{url}/", {"daily_limit": 7, "total_limit": 70}, format="json")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["daily_limit"], changed.json()["total_limit"]) == (7, 70)
    assert _last_action() == "phase_update"
    _error(client.patch(f"{url}/", {"daily_limit": 99}, format="json"), 409, "action_refused")
    _error(client.patch(f"{url}/", {"daily_limit": -1}, format="json"), 400, "min_value",
           "daily_limit")  # fmt: skip
    _error(client.patch(f"{url}/", {"opens_at": "not a date"}, format="json"), 400, "invalid",
           "opens_at")  # fmt: skip
    open_ended = client.patch(f"{url}/", {"closes_at": None}, format="json")
    assert open_ended.json()["closes_at"] is None
    phase.refresh_from_db()
    assert phase.closes_at is None and phase.daily_limit == 7

    n = Evaluation.objects.count()
    queued = client.post(f"{url}/reevaluate")
    assert queued.status_code == 202 and queued.json() == {"queued": 2}
    assert Evaluation.objects.count() == n + 2 and _last_action() == "reevaluate_all"

    _error(client.post(f"{url}/baselines"), 409, "action_refused")  # no feature table

    early = _error(client.post(f"{url}/publish-private"), 409, "action_refused")
    assert early["detail"].startswith("Close the phase")
    closed = client.post(f"{url}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert _last_action() == "phase_update"
    published = client.post(f"{url}/publish-private")
    assert published.status_code == 200 and published.json()["private_published_at"]
    assert _last_action() == "private_publish"
    n_actions = OrganizerAction.objects.count()
    reopened = client.post(f"{url}/open")
    assert reopened.json()["status"] == "open" and reopened.json()["closes_at"] is None
    assert OrganizerAction.objects.count() == n_actions + 1 and _last_action() == "phase_update"
    assert _scores() == scores


def test_entry_actions_hide_disqualify_lift_and_reevaluate_without_touching_scores(world):
    scores = _scores()
    client, phase = _api(world["org"]), world["phase"]
    base = f"/api/challenges/{world['challenge'].slug}/console"
    sub = world["submission"]

    again = client.post(f"{base}/submissions/{sub.pk}/reevaluate")
    assert again.status_code == 202 and [a["attempt"] for a in again.json()["attempts"]] == [2, 1]
    assert _last_action() == "reevaluate"

    hidden = client.post(f"{base}/submissions/{sub.pk}/hide", {"reason": "copied"}, format="json")
    assert hidden.status_code == 201, hidden.content
    assert hidden.json()["kind"] == "hidden" and hidden.json()["submission"] == sub.pk
    assert _last_action() == "hide"
    _error(client.post(f"{base}/submissions/{sub.pk}/hide", {"reason": "x"}, format="json"),
           409, "action_refused")  # fmt: skip
    _error(client.post(f"{base}/submissions/{sub.pk}/hide", {"reason": ""}, format="json"),
           400, "blank", "reason")  # fmt: skip

    dq = f"{base}/phases/{phase.slug}/disqualify"
    solo = client.post(dq, {"username": "alice", "reason": "two accounts"}, format="json")
    assert solo.status_code == 201 and solo.json()["participant"] == "alice"
    assert _last_action() == "disqualify"
    team = client.post(dq, {"team": "lesion hunters", "reason": "shared"}, format="json")
    assert team.status_code == 201 and team.json()["team"] == "Lesion Hunters"
    _error(client.post(dq, {"team": "hunters", "reason": "again"}, format="json"), 409,
           "action_refused")  # fmt: skip
    _error(client.post(dq, {"reason": "who?"}, format="json"), 400, "invalid")
    _error(client.post(dq, {"username": "nobody", "reason": "x"}, format="json"), 400,
           "does_not_exist", "username")  # fmt: skip
    _error(client.post(dq, {"team": "nope", "reason": "x"}, format="json"), 400,
           "does_not_exist", "team")  # fmt: skip

    exclusion = EntryExclusion.objects.get(pk=solo.json()["id"])
    lifted = client.post(f"{base}/exclusions/{exclusion.pk}/lift")
    assert lifted.status_code == 200 and lifted.json()["lifted_by"] == "org"
    assert _last_action() == "lift"
    exclusion.refresh_from_db()
    assert exclusion.lifted_at is not None
    _error(client.post(f"{base}/exclusions/{10**6}/lift"), 404, "not_found")

    detail = client.get(f"{base}/submissions/{sub.pk}/").json()
    assert detail["hidden"]["reason"] == "copied" and detail["disqualified"] is None
    assert len(detail["exclusions"]) == 2
    assert _scores() == scores


def test_baselines_are_added_for_a_feature_table_phase(db, settings, tmp_path):
    settings.VAR_DIR = settings.SCANBENCH_VAR_DIR = tmp_path / "var"
    settings.MEDIA_ROOT = tmp_path / "var" / "media"
    settings.SCANBENCH_PRIVATE_ROOT = tmp_path / "var" / "private"
    challenge = challenge_import_bundle(path=EXAMPLE).challenge
    org = UserFactory(username="lesion_org")
    challenge.organizers.add(org)
    phase = challenge.phases.get()
    url = f"/api/challenges/{challenge.slug}/console/phases/{phase.slug}/baselines"
    _error(_api(UserFactory()).post(url), 404, "not_found")
    added = _api(org).post(url)
    assert added.status_code == 202, added.content
    assert added.json()["queued"] >= 1 and _last_action() == "baselines"
    assert phase.submissions.filter(is_baseline=True).count() == added.json()["queued"]
