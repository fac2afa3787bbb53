"""Organizer powers are per challenge, every action is logged, and no role can change a score."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from challenges.models import (
    ChallengeMembership,
    LeaderboardEntry,
    OrganizerAction,
    Result,
    Team,
    TeamMembership,
)
from challenges.selectors import leaderboard_for_phase, private_leaderboard_visible
from challenges.services import organizers
from challenges.services.leaderboards import leaderboard_update
from challenges.services.scoring import evaluation_score
from challenges.services.submissions import submission_create
from tests.factories import PhaseFactory, UserFactory, classification_phase


def _scored(phase, preds, user):
    submission = submission_create(
        user=user, phase=phase, file=SimpleUploadedFile("p.csv", preds.read_bytes())
    )
    evaluation_score(evaluation_id=submission.evaluations.get().pk)
    return submission


def _board(phase) -> list[str]:
    leaderboard_update(phase_id=phase.pk)
    return sorted(
        LeaderboardEntry.objects.filter(phase=phase, part="public").values_list(
            "display_name", flat=True
        )
    )


@pytest.mark.django_db
def test_organizer_of_one_challenge_and_the_superuser_have_no_power_over_another(tmp_path):
    phase, _ = classification_phase(tmp_path, n_cases=20)
    other_phase = PhaseFactory()
    other_org = UserFactory(username="other_org")
    other_phase.challenge.organizers.add(other_org)
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    for intruder in (other_org, root, UserFactory(username="participant")):
        with pytest.raises(organizers.NotOrganizer):
            organizers.phase_close_now(phase=phase, user=intruder)
        with pytest.raises(organizers.NotOrganizer):
            organizers.challenge_set_published(
                challenge=phase.challenge, user=intruder, published=False
            )
        assert not private_leaderboard_visible(user=intruder, phase=phase)
    assert not OrganizerAction.objects.exists()
    phase.refresh_from_db()
    assert phase.is_open()


@pytest.mark.django_db
def test_hide_and_disqualify_take_entries_off_the_board_and_lifting_puts_them_back(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=60)
    org = UserFactory(username="org")
    phase.challenge.organizers.add(org)
    alice, bob, carol = (UserFactory(username=n) for n in ("alice", "bob", "carol"))
    team = Team.objects.create(challenge=phase.challenge, name="The Carols")
    TeamMembership.objects.create(team=team, user=carol, challenge=phase.challenge)
    hidden = _scored(phase, preds, alice)
    _scored(phase, preds, bob)
    _scored(phase, preds, carol)
    assert _board(phase) == ["The Carols", "alice", "bob"]

    with pytest.raises(organizers.OrganizerActionRefused, match="reason"):
        organizers.submission_hide(submission=hidden, user=org, reason="  ")
    exclusion = organizers.submission_hide(submission=hidden, user=org, reason="Used test labels")
    organizers.entrant_disqualify(phase=phase, user=org, team=team, reason="Two accounts")
    assert _board(phase) == ["bob"]
    # Nothing stored was changed: the results are all still there.
    assert Result.objects.filter(evaluation__submission__phase=phase).count() == 6
    organizers.exclusion_lift(exclusion=exclusion, user=org)
    assert _board(phase) == ["alice", "bob"]
    actions = list(OrganizerAction.objects.values_list("action", "actor__username"))
    assert actions == [("lift", "org"), ("disqualify", "org"), ("hide", "org")]


@pytest.mark.django_db
def test_private_board_is_published_explicitly_after_the_close(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=40, private_release="manual")
    org = UserFactory(username="org")
    phase.challenge.organizers.add(org)
    participant = UserFactory()
    _scored(phase, preds, participant)
    leaderboard_update(phase_id=phase.pk)
    with pytest.raises(organizers.OrganizerActionRefused, match="close the phase"):
        organizers.private_leaderboard_publish(phase=phase, user=org)
    organizers.phase_close_now(phase=phase, user=org)
    phase.refresh_from_db()
    assert phase.is_closed()
    # closed, yet the final standings wait for the organizers
    assert not private_leaderboard_visible(user=participant, phase=phase)
    assert private_leaderboard_visible(user=org, phase=phase)
    organizers.private_leaderboard_publish(phase=phase, user=org)
    phase.refresh_from_db()
    assert private_leaderboard_visible(user=participant, phase=phase)
    assert leaderboard_for_phase(phase=phase, part="private", user=participant).count() == 1


@pytest.mark.django_db
def test_publishing_waits_for_every_phase_on_the_same_hidden_cases(tmp_path):
    phase, _ = classification_phase(tmp_path, n_cases=20)
    PhaseFactory(challenge=phase.challenge, dataset=phase.dataset, slug="later")
    org = UserFactory()
    phase.challenge.organizers.add(org)
    organizers.phase_update(phase=phase, user=org, closes_at=timezone.now() - timedelta(minutes=1),
                            opens_at=timezone.now() - timedelta(days=2))  # fmt: skip
    with pytest.raises(organizers.OrganizerActionRefused, match="still open"):
        organizers.private_leaderboard_publish(phase=phase, user=org)
    phase.refresh_from_db()
    assert phase.private_published_at is None


@pytest.mark.django_db
def test_phase_dates_and_limits_change_with_a_logged_before_and_after(tmp_path):
    phase, _ = classification_phase(tmp_path, n_cases=20)
    org = UserFactory(username="org")
    phase.challenge.organizers.add(org)
    with pytest.raises(organizers.OrganizerActionRefused, match="close after it opens"):
        organizers.phase_update(phase=phase, user=org, closes_at=phase.opens_at)
    organizers.phase_update(phase=phase, user=org, daily_limit=3)
    phase.refresh_from_db()
    assert phase.daily_limit == 3
    action = OrganizerAction.objects.get()
    assert action.detail["changed"] == {"daily_limit": [100, 3]}
    assert "daily_limit 100 → 3" in action.summary


@pytest.mark.django_db
def test_announcements_reach_approved_participants_by_email(tmp_path):
    phase, _ = classification_phase(tmp_path, n_cases=20)
    challenge = phase.challenge
    org = UserFactory(username="org")
    challenge.organizers.add(org)
    for name, status in (("ann", "approved"), ("pat", "pending"), ("rob", "approved")):
        user = UserFactory(username=name, email=f"{name}@example.org")
        ChallengeMembership.objects.create(challenge=challenge, user=user, status=status)
    announcement = organizers.announcement_send(
        challenge=challenge, user=org, subject="Deadline moved", body="One more week."
    )
    assert announcement.recipients == 2
    assert sorted(m.to[0] for m in mail.outbox) == ["ann@example.org", "rob@example.org"]
    assert mail.outbox[0].subject.endswith("Deadline moved")


@pytest.mark.django_db
def test_no_role_can_change_a_stored_score_in_the_admin(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=20)
    _scored(phase, preds, UserFactory())
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    result = Result.objects.first()
    evaluation = result.evaluation
    before = dict(result.aggregates)
    page = client.get(f"/admin/challenges/result/{result.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    for url, data in (
        (f"/admin/challenges/result/{result.pk}/change/", {"aggregates": '{"auc_roc": 1.0}'}),
        (f"/admin/challenges/evaluation/{evaluation.pk}/change/", {"state": "failed"}),
        (f"/admin/challenges/submission/{evaluation.submission_id}/change/", {"comment": "x"}),
    ):
        assert client.post(url, data).status_code == 403
    result.refresh_from_db()
    evaluation.refresh_from_db()
    assert result.aggregates == before and evaluation.state == "succeeded"
