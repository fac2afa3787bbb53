"""Teams in the API (docs/api.md, "Teams"): create, invite, accept or decline, leave, each
rule of challenges.services.teams refused in the API's error shape, and only the caller's own
team and invitations ever shown."""

from __future__ import annotations

import itertools

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from challenges.models import ChallengeMembership, Team, TeamInvitation, TeamMembership
from challenges.services.submissions import submission_create
from tests.factories import PhaseFactory, UserFactory

_addresses = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def _api(user=None) -> APIClient:
    n = next(_addresses)
    client = APIClient(REMOTE_ADDR=f"10.8.{n // 256 % 256}.{n % 256}")
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


@pytest.fixture
def world(db):
    phase = PhaseFactory()
    challenge = phase.challenge
    users = {}
    for name in ("ann", "ben", "cat", "dan"):
        users[name] = UserFactory(username=name)
        ChallengeMembership.objects.create(challenge=challenge, user=users[name])
    users["outsider"] = UserFactory(username="outsider")  # never joined
    return {
        "challenge": challenge,
        "phase": phase,
        "url": f"/api/challenges/{challenge.slug}/team",
        **users,
    }


def test_the_team_flow_create_invite_accept_decline_leave(world):
    url = world["url"]
    ann, ben, cat = _api(world["ann"]), _api(world["ben"]), _api(world["cat"])

    empty = ann.get(f"{url}/")
    assert empty.status_code == 200, empty.content
    assert empty.json() == {"team": None, "invitations": []}

    created = ann.post(f"{url}/", {"name": "  Lesion   Hunters "}, format="json")
    assert created.status_code == 201, created.content
    team = created.json()["team"]
    assert team["name"] == "Lesion Hunters" and team["slug"] == "lesion-hunters"
    assert team["members"] == ["ann"] and team["invitations_sent"] == []

    invited = ann.post(f"{url}/invite", {"username": "ben"}, format="json")
    assert invited.status_code == 201, invited.content
    invitation = invited.json()
    assert invitation["team"] == "Lesion Hunters" and invitation["invitee"] == "ben"
    assert invitation["invited_by"] == "ann"
    assert ann.get(f"{url}/").json()["team"]["invitations_sent"][0]["invitee"] == "ben"
    ann.post(f"{url}/invite", {"username": "cat"}, format="json")

    page = ben.get(f"{url}/").json()
    assert page["team"] is None and [i["id"] for i in page["invitations"]] == [invitation["id"]]
    assert cat.get(f"{url}/").json()["invitations"][0]["team"] == "Lesion Hunters"

    accepted = ben.post(f"{url}/invitations/{invitation['id']}/accept")
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["team"]["members"] == ["ann", "ben"]
    assert accepted.json()["invitations"] == []
    assert not TeamInvitation.objects.filter(pk=invitation["id"]).exists()

    cat_invitation = TeamInvitation.objects.get(invitee=world["cat"])
    declined = cat.post(f"{url}/invitations/{cat_invitation.pk}/decline")
    assert declined.status_code == 200 and declined.json() == {"team": None, "invitations": []}

    left = ben.post(f"{url}/leave")
    assert left.status_code == 200 and left.json() == {"left": True, "team_deleted": False}
    assert ann.get(f"{url}/").json()["team"]["members"] == ["ann"]
    last = ann.post(f"{url}/leave")
    assert last.json() == {"left": True, "team_deleted": True}
    assert not Team.objects.exists()


def test_team_refusals_have_the_error_shape(world):
    url = world["url"]
    ann, ben = _api(world["ann"]), _api(world["ben"])

    _error(ann.post(f"{url}/invite", {"username": "ben"}, format="json"), 400, "team_refused")
    _error(ann.post(f"{url}/leave"), 400, "team_refused")
    _error(ann.post(f"{url}/", {}, format="json"), 400, "required", "name")
    _error(ann.post(f"{url}/", {"name": "x" * 101}, format="json"), 400, "max_length", "name")
    _error(ann.post(f"{url}/", {"name": "   "}, format="json"), 400, "blank", "name")

    assert ann.post(f"{url}/", {"name": "Alpha"}, format="json").status_code == 201
    taken = _error(ben.post(f"{url}/", {"name": "ALPHA"}, format="json"), 400, "team_refused")
    assert "already exists" in taken["detail"]
    _error(ann.post(f"{url}/", {"name": "Beta"}, format="json"), 400, "team_refused")
    nobody = _error(ann.post(f"{url}/invite", {"username": "nobody"}, format="json"), 400,
                    "team_refused")  # fmt: skip
    assert "nobody" in nobody["detail"]
    _error(ann.post(f"{url}/invite", {"username": "ann"}, format="json"), 400, "team_refused")
    assert ann.post(f"{url}/invite", {"username": "ben"}, format="json").status_code == 201
    _error(ann.post(f"{url}/invite", {"username": "ben"}, format="json"), 400, "team_refused")

    # an invitation that is not the caller's, or does not exist, is not found
    invitation = TeamInvitation.objects.get(invitee=world["ben"])
    for caller in (ann, _api(world["cat"])):
        _error(caller.post(f"{url}/invitations/{invitation.pk}/accept"), 404, "not_found")
        _error(caller.post(f"{url}/invitations/{invitation.pk}/decline"), 404, "not_found")
    _error(ben.post(f"{url}/invitations/{10**6}/accept"), 404, "not_found")
    _error(ben.post(f"{url}/invitations/{10**30}/decline"), 404, "not_found")  # past bigint
    assert TeamInvitation.objects.filter(pk=invitation.pk).exists()

    # ben submitted alone: he may not join a team any more
    submission_create(
        user=world["ben"],
        phase=world["phase"],
        file=SimpleUploadedFile("p.csv", b"case_id,score\n"),
    )
    alone = _error(ben.post(f"{url}/invitations/{invitation.pk}/accept"), 400, "team_refused")
    assert "outside this team" in alone["detail"]
    assert not TeamMembership.objects.filter(user=world["ben"]).exists()


def test_teams_need_credentials_a_joined_published_challenge(world):
    url = world["url"]
    endpoints = [
        ("get", "/"), ("post", "/"), ("post", "/invite"), ("post", "/leave"),
        ("post", "/invitations/1/accept"), ("post", "/invitations/1/decline"),
    ]  # fmt: skip
    for method, path in endpoints:
        _error(getattr(_api(), method)(f"{url}{path}"), 401, "not_authenticated")
        outsider = getattr(_api(world["outsider"]), method)(f"{url}{path}")
        _error(outsider, 403, "not_joined")
    _error(_api(world["ann"]).get("/api/challenges/nope/team/"), 404, "not_found")
    world["challenge"].is_published = False
    world["challenge"].save()
    _error(_api(world["ann"]).get(f"{url}/"), 404, "not_found")
    assert not Team.objects.exists()


def test_the_team_page_shows_only_the_callers_own_team(world):
    url = world["url"]
    ann, cat = _api(world["ann"]), _api(world["cat"])
    ann.post(f"{url}/", {"name": "Alpha"}, format="json")
    ann.post(f"{url}/invite", {"username": "ben"}, format="json")
    cat.post(f"{url}/", {"name": "Gamma"}, format="json")
    page = cat.get(f"{url}/").json()
    assert page["team"]["name"] == "Gamma" and page["team"]["members"] == ["cat"]
    assert page["team"]["invitations_sent"] == [] and page["invitations"] == []
    # the team of another challenge is not this one's
    other = PhaseFactory().challenge
    ChallengeMembership.objects.create(challenge=other, user=world["ann"])
    assert ann.get(f"/api/challenges/{other.slug}/team/").json()["team"] is None
