"""Teams from the browser: create one, invite by username, accept or decline, leave; a team is
one entrant, sharing limits and one leaderboard row under its name (docs/teams.md)."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from challenges.models import LeaderboardEntry, Phase, Team, TeamInvitation, TeamMembership
from challenges.services.leaderboards import leaderboard_update
from challenges.services.scoring import evaluation_score
from challenges.services.submissions import SubmissionRefused, limits_for, submission_create
from challenges.services.teams import TeamError, team_create
from tests.factories import UserFactory, classification_phase


@pytest.fixture
def phase(db, settings, tmp_path: Path) -> tuple[Phase, Path]:
    settings.VAR_DIR = settings.SCANBENCH_VAR_DIR = tmp_path / "var"
    settings.MEDIA_ROOT = tmp_path / "var" / "media"
    settings.SCANBENCH_PRIVATE_ROOT = tmp_path / "var" / "private"
    return classification_phase(tmp_path, n_cases=60, daily_limit=3)


def _joined(phase: Phase, username: str) -> tuple[User, Client]:
    """A participant who joined the challenge through its join page, logged in."""
    user = UserFactory(username=username)
    client = Client()
    client.force_login(user)
    response = client.post(f"/challenges/{phase.challenge.slug}/join/", {"accept_terms": "on"})
    assert response.status_code == 302
    return user, client


def _text(response) -> str:
    return html.unescape(response.content.decode())


def _url(phase: Phase, action: str = "") -> str:
    return f"/challenges/{phase.challenge.slug}/team/" + (f"{action}/" if action else "")


def _invite(phase: Phase, client: Client, username: str) -> TeamInvitation:
    response = client.post(_url(phase, "invite"), {"username": username})
    assert response.status_code == 302, _text(response)
    return TeamInvitation.objects.get(invitee__username=username)


def _team_of_two(phase: Phase) -> tuple[Team, Client, Client]:
    _, a = _joined(phase, "alice")
    _, b = _joined(phase, "bob")
    assert a.post(_url(phase, "create"), {"name": "Lesion Hunters"}).status_code == 302
    invitation = _invite(phase, a, "bob")
    assert b.post(_url(phase, "accept"), {"invitation": invitation.pk}).status_code == 302
    return Team.objects.get(name="Lesion Hunters"), a, b


def _submit(phase: Phase, preds: Path, username: str):
    user = User.objects.get(username=username)
    upload = SimpleUploadedFile("p.csv", preds.read_bytes())
    return submission_create(user=user, phase=phase, file=upload)


def test_creating_a_team_makes_the_creator_its_member_and_names_are_unique(phase):
    phase, _ = phase
    alice, a = _joined(phase, "alice")
    response = a.post(_url(phase, "create"), {"name": "  Lesion   Hunters "}, follow=True)
    assert response.status_code == 200
    text = _text(response)
    assert "Team Lesion Hunters" in text and "alice (you)" in text
    team = Team.objects.get(challenge=phase.challenge)
    assert team.name == "Lesion Hunters" and team.slug == "lesion-hunters"
    assert list(team.members.all()) == [alice]

    _, b = _joined(phase, "bob")
    response = b.post(_url(phase, "create"), {"name": "lesion hunters"})
    assert response.status_code == 400
    assert "already exists in this challenge" in _text(response)
    assert Team.objects.count() == 1


def test_member_invites_by_username_and_the_invitee_accepts(phase):
    phase, _ = phase
    _, a = _joined(phase, "alice")
    _, b = _joined(phase, "bob")
    a.post(_url(phase, "create"), {"name": "Lesion Hunters"})

    response = a.post(_url(phase, "invite"), {"username": "nobody"})
    assert response.status_code == 400
    assert "No participant is named 'nobody'" in _text(response)

    invitation = _invite(phase, a, "bob")
    assert "bob" in _text(a.get(_url(phase)))  # pending, on the sender's page
    assert a.post(_url(phase, "invite"), {"username": "bob"}).status_code == 400  # twice
    page = _text(b.get(_url(phase)))
    assert "Team <strong>Lesion Hunters</strong>" in page and "invited by alice" in page

    response = b.post(_url(phase, "accept"), {"invitation": invitation.pk}, follow=True)
    assert "You joined team 'Lesion Hunters'." in _text(response)
    team = Team.objects.get()
    assert set(team.members.values_list("username", flat=True)) == {"alice", "bob"}
    assert not TeamInvitation.objects.exists()


def test_declining_deletes_the_invitation_and_joins_nothing(phase):
    phase, _ = phase
    _, a = _joined(phase, "alice")
    _, b = _joined(phase, "bob")
    a.post(_url(phase, "create"), {"name": "Lesion Hunters"})
    invitation = _invite(phase, a, "bob")
    assert b.post(_url(phase, "decline"), {"invitation": invitation.pk}).status_code == 302
    assert not TeamInvitation.objects.exists()
    assert TeamMembership.objects.filter(user__username="bob").count() == 0


def test_two_members_share_the_team_daily_limit(phase):
    phase, preds = phase  # daily_limit=3
    team, _, _ = _team_of_two(phase)
    _submit(phase, preds, "alice")
    _submit(phase, preds, "bob")
    _submit(phase, preds, "alice")
    for name in ("alice", "bob"):
        limits = limits_for(user=User.objects.get(username=name), phase=phase)
        assert limits.daily_used == 3 and limits.remaining == 0
    with pytest.raises(SubmissionRefused, match="today's 3 submissions"):
        _submit(phase, preds, "bob")
    assert set(team.submissions.values_list("participant__username", flat=True)) == {
        "alice",
        "bob",
    }


def test_the_team_name_is_one_row_on_the_leaderboard(phase):
    phase, preds = phase
    team, _, _ = _team_of_two(phase)
    for name in ("alice", "bob"):
        evaluation_score(evaluation_id=_submit(phase, preds, name).evaluations.get().pk)
    leaderboard_update(phase_id=phase.pk)
    rows = LeaderboardEntry.objects.filter(phase=phase, part="public", is_baseline=False)
    assert [(r.entrant, r.display_name, r.n_submissions) for r in rows] == [
        (f"team:{team.pk}", "Lesion Hunters", 2)
    ]


def test_leaving_deletes_an_empty_team_without_submissions_and_keeps_one_with(phase):
    phase, preds = phase
    _, a = _joined(phase, "alice")
    a.post(_url(phase, "create"), {"name": "Short Lived"})
    response = a.post(_url(phase, "leave"), follow=True)
    assert "as it was empty, it was deleted" in _text(response)
    assert not Team.objects.exists()
    assert "You are not in a team" in _text(response)

    team, a, b = _team_of_two(phase)
    _submit(phase, preds, "bob")
    assert a.post(_url(phase, "leave")).status_code == 302
    assert b.post(_url(phase, "leave")).status_code == 302
    team.refresh_from_db()  # still there: its submission keeps its leaderboard name
    assert team.memberships.count() == 0 and team.submissions.count() == 1
    assert a.post(_url(phase, "leave")).status_code == 400  # in no team now


def test_one_team_per_participant_per_challenge(phase):
    phase, _ = phase
    team, a, b = _team_of_two(phase)
    carol, c = _joined(phase, "carol")
    c.post(_url(phase, "create"), {"name": "Other Team"})
    invitation = _invite(phase, a, "carol")
    response = c.post(_url(phase, "accept"), {"invitation": invitation.pk})
    assert response.status_code == 400
    assert "already in team 'Other Team'" in _text(response)
    assert "leave it first" in _text(response)
    assert b.post(_url(phase, "create"), {"name": "Second"}).status_code == 400
    assert TeamMembership.objects.filter(user=carol).count() == 1

    c.post(_url(phase, "leave"))  # then the invitation can be taken
    assert c.post(_url(phase, "accept"), {"invitation": invitation.pk}).status_code == 302
    assert team.memberships.count() == 3


def test_a_participant_with_submissions_of_their_own_cannot_join_or_create_a_team(phase):
    phase, preds = phase
    _, a = _joined(phase, "alice")
    dave, d = _joined(phase, "dave")
    _submit(phase, preds, "dave")
    a.post(_url(phase, "create"), {"name": "Lesion Hunters"})
    invitation = _invite(phase, a, "dave")
    response = d.post(_url(phase, "accept"), {"invitation": invitation.pk})
    assert response.status_code == 400
    assert "already submitted in this challenge outside this team" in _text(response)
    with pytest.raises(TeamError, match="already submitted"):
        team_create(user=dave, challenge=phase.challenge, name="Solo Team")
    assert not TeamMembership.objects.filter(user=dave).exists()


def test_another_participant_cannot_see_or_use_a_teams_invitations(phase):
    phase, _ = phase
    _, a = _joined(phase, "alice")
    _joined(phase, "bob")
    _, e = _joined(phase, "eve")
    a.post(_url(phase, "create"), {"name": "Lesion Hunters"})
    invitation = _invite(phase, a, "bob")
    page = _text(e.get(_url(phase)))
    assert "Lesion Hunters" not in page and "bob" not in page
    response = e.post(_url(phase, "accept"), {"invitation": invitation.pk})
    assert response.status_code == 404
    assert e.post(_url(phase, "decline"), {"invitation": invitation.pk}).status_code == 404
    assert TeamInvitation.objects.filter(pk=invitation.pk).exists()
    assert not TeamMembership.objects.filter(user__username="eve").exists()


def test_anonymous_visitors_log_in_and_participants_who_have_not_joined_go_to_join(phase):
    phase, _ = phase
    for response in (Client().get(_url(phase)), Client().post(_url(phase, "create"))):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")
    client = Client()
    client.force_login(UserFactory(username="stranger"))
    join = f"/challenges/{phase.challenge.slug}/join/"
    assert client.get(_url(phase))["Location"] == join
    assert client.post(_url(phase, "create"), {"name": "Sneaky"})["Location"] == join
    assert not Team.objects.exists()


def test_actions_are_post_only_and_need_the_csrf_token(phase):
    phase, _ = phase
    user, _ = _joined(phase, "alice")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(_url(phase, "create")).status_code == 405
    assert client.post(_url(phase, "create"), {"name": "No Token"}).status_code == 403
    assert client.post(_url(phase, "nonsense")).status_code in (403, 404)
    assert not Team.objects.exists()


def test_leaving_a_team_does_not_reset_the_leavers_count(phase):
    phase, preds = phase  # daily_limit=3
    _, a, _ = _team_of_two(phase)
    _submit(phase, preds, "alice")
    _submit(phase, preds, "alice")
    assert a.post(_url(phase, "leave")).status_code == 302
    alice = User.objects.get(username="alice")
    assert limits_for(user=alice, phase=phase).daily_used == 2  # her team submissions count
    _submit(phase, preds, "alice")
    with pytest.raises(SubmissionRefused, match="today's 3 submissions"):
        _submit(phase, preds, "alice")
