"""Teams within a challenge: create one, invite by username, accept or decline, leave
(docs/teams.md).

A team is one entrant: its members' submissions count against one set of limits and appear
as one row, under the team's name, on the leaderboard (``submissions.entrant_for``). The
rules, each refused with a :class:`TeamError` whose message names the fix:

* only participants who joined the challenge (a ``ChallengeMembership``) take part in teams;
* one team per participant per challenge (also a database constraint);
* team names are unique within a challenge, ignoring case;
* a participant who has submissions in the challenge that are not the team's own (made alone,
  or for another team they left) may not create or join a team: which entrant those
  submissions and their limits belong to would be ambiguous;
* the last member to leave deletes the team if it has no submissions; a team with
  submissions stays, so its leaderboard rows keep their name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from challenges.models import (
    Challenge,
    ChallengeMembership,
    Submission,
    Team,
    TeamInvitation,
    TeamMembership,
)
from challenges.selectors import challenge_get_public

NAME_MAX_CHARS = 100


class TeamError(ValueError):
    """A team action was refused; the message tells the participant why and what to do."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class NotJoined(PermissionError):
    """The user has not joined the challenge: the join page comes first."""


# --- reads --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamPage:
    challenge: Challenge
    team: Team | None
    members: list[User]
    #: pending invitations the user's team sent (only its members see them)
    sent: list[TeamInvitation]
    #: pending invitations to the user, from any team of this challenge
    received: list[TeamInvitation]


def user_has_joined(*, user: Any, challenge: Challenge) -> bool:
    return bool(
        user.is_authenticated
        and ChallengeMembership.objects.filter(challenge=challenge, user_id=user.pk).exists()
    )


def team_page_for_user(*, user: Any, slug: str) -> TeamPage:
    """What the team page shows this user: their own team and invitations only, never another
    team's. Raises Http404 for an unpublished challenge, NotJoined before joining it."""
    challenge = challenge_get_public(slug=slug)
    if not user_has_joined(user=user, challenge=challenge):
        raise NotJoined(f"Join '{challenge.title}' to form or join a team.")
    team = _team_of(user, challenge)
    members: list[User] = []
    sent: list[TeamInvitation] = []
    if team is not None:
        members = list(team.members.order_by("username"))
        sent = list(
            TeamInvitation.objects.filter(team=team)
            .select_related("invitee", "invited_by")
            .order_by("created_at")
        )
    received = list(
        TeamInvitation.objects.filter(invitee_id=user.pk, team__challenge=challenge)
        .select_related("team", "invited_by")
        .order_by("created_at")
    )
    return TeamPage(challenge=challenge, team=team, members=members, sent=sent, received=received)


def _team_of(user: User, challenge: Challenge) -> Team | None:
    membership = (
        TeamMembership.objects.select_related("team")
        .filter(challenge=challenge, user_id=user.pk)
        .first()
    )
    return membership.team if membership is not None else None


# --- checks shared by the writes ----------------------------------------------------------------


def _require_joined(user: User, challenge: Challenge) -> None:
    if not user_has_joined(user=user, challenge=challenge):
        raise TeamError(f"Join '{challenge.title}' first: teams are for its participants.")


def _require_no_team(user: User, challenge: Challenge) -> None:
    team = _team_of(user, challenge)
    if team is not None:
        raise TeamError(
            f"You are already in team '{team.name}' in this challenge; leave it first "
            "(one team per participant per challenge)."
        )


def _require_no_other_submissions(user: User, challenge: Challenge, team: Team | None) -> None:
    """Submissions that would not be the team's: made alone, or for another team."""
    others = Submission.objects.filter(
        phase__challenge=challenge, participant_id=user.pk, is_baseline=False
    )
    if team is not None:
        others = others.exclude(team=team)
    if others.exists():
        raise TeamError(
            "You have already submitted in this challenge outside this team, so you cannot "
            "join or create a team: those submissions and their limits are yours alone."
        )


def _unique_slug(challenge: Challenge, name: str) -> str:
    base = slugify(name)[:56] or "team"
    slug, n = base, 1
    while Team.objects.filter(challenge=challenge, slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


# --- writes -------------------------------------------------------------------------------------


@transaction.atomic
def team_create(*, user: User, challenge: Challenge, name: str) -> Team:
    """Create a team in the challenge with ``user`` as its first member."""
    name = " ".join(name.split())
    if not name:
        raise TeamError("Give the team a name.")
    if len(name) > NAME_MAX_CHARS:
        raise TeamError(f"A team name has at most {NAME_MAX_CHARS} characters.")
    _require_joined(user, challenge)
    _require_no_team(user, challenge)
    _require_no_other_submissions(user, challenge, None)
    taken = TeamError(f"A team named '{name}' already exists in this challenge; pick another.")
    if Team.objects.filter(challenge=challenge, name__iexact=name).exists():
        raise taken
    try:
        with transaction.atomic():  # a concurrent create of the same name or membership
            team = Team.objects.create(
                challenge=challenge, name=name, slug=_unique_slug(challenge, name)
            )
            TeamMembership.objects.create(team=team, user=user, challenge=challenge)
    except IntegrityError:
        _require_no_team(user, challenge)
        raise taken from None
    return team


@transaction.atomic
def team_invite(*, user: User, challenge: Challenge, username: str) -> TeamInvitation:
    """Invite the participant named ``username`` to the user's team in the challenge."""
    team = _team_of(user, challenge)
    if team is None:
        raise TeamError("Create a team first, then invite others to it.")
    username = username.strip()
    invitee = User.objects.filter(username=username).first()
    if invitee is None:
        raise TeamError(f"No participant is named '{username}'; check the spelling.")
    if invitee.pk == user.pk:
        raise TeamError("You are already in your team.")
    if TeamMembership.objects.filter(team=team, user=invitee).exists():
        raise TeamError(f"{invitee.username} is already in your team.")
    if TeamInvitation.objects.filter(team=team, invitee=invitee).exists():
        raise TeamError(f"{invitee.username} is already invited; they can accept on this page.")
    try:
        with transaction.atomic():
            return TeamInvitation.objects.create(team=team, invitee=invitee, invited_by=user)
    except IntegrityError:
        raise TeamError(f"{invitee.username} is already invited.") from None


def _invitation_for(user: User, challenge: Challenge, invitation_id: int) -> TeamInvitation:
    """The user's own invitation in this challenge, locked; any other is 'not found'."""
    invitation = (
        TeamInvitation.objects.select_for_update()
        .select_related("team")
        .filter(pk=invitation_id, invitee_id=user.pk, team__challenge=challenge)
        .first()
    )
    if invitation is None:
        raise TeamError("This invitation does not exist or is not yours.", status=404)
    return invitation


@transaction.atomic
def invitation_accept(*, user: User, challenge: Challenge, invitation_id: int) -> TeamMembership:
    """Join the team that invited the user; the invitation is used up."""
    invitation = _invitation_for(user, challenge, invitation_id)
    team = Team.objects.select_for_update().get(pk=invitation.team_id)  # vs. the last leave
    _require_joined(user, challenge)
    _require_no_team(user, challenge)
    _require_no_other_submissions(user, challenge, team)
    try:
        with transaction.atomic():
            membership = TeamMembership.objects.create(team=team, user=user, challenge=challenge)
    except IntegrityError:  # joined another team at the same moment
        _require_no_team(user, challenge)
        raise
    invitation.delete()
    return membership


@transaction.atomic
def invitation_decline(*, user: User, challenge: Challenge, invitation_id: int) -> None:
    """Decline (delete) an invitation to the user."""
    _invitation_for(user, challenge, invitation_id).delete()


@transaction.atomic
def team_leave(*, user: User, challenge: Challenge) -> bool:
    """Leave the user's team in the challenge. Returns True when the team was deleted: it was
    left empty and had no submissions (a team with submissions stays for the leaderboard)."""
    membership = (
        TeamMembership.objects.filter(challenge=challenge, user_id=user.pk)
        .select_related("team")
        .first()
    )
    if membership is None:
        raise TeamError("You are not in a team in this challenge.")
    team = Team.objects.select_for_update().get(pk=membership.team_id)
    membership.delete()
    if team.memberships.exists() or Submission.objects.filter(team=team).exists():
        return False
    team.delete()  # its pending invitations go with it
    return True
