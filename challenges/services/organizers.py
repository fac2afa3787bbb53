"""What the organizers of a challenge may do to it, each action checked and logged.

Every function here takes the acting user, refuses (:class:`NotOrganizer`) anyone who is not an
organizer of *that* challenge (the site's superuser included: docs/organizers.md), does its work
in one transaction and records an :class:`~challenges.models.OrganizerAction` (who, when, what)
that the console shows. None of them changes a stored score: a result changes only by
re-evaluation, which keeps the earlier attempt; hiding or disqualifying an entry only changes
which submissions the leaderboard considers, and the board is recomputed from stored results.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mass_mail
from django.db import transaction
from django.utils import timezone

from challenges.models import (
    Announcement,
    Challenge,
    ChallengeMembership,
    EntryExclusion,
    ExclusionKind,
    MembershipStatus,
    OrganizerAction,
    Phase,
    PrivateRelease,
    Submission,
    Team,
)
from challenges.selectors import user_is_organizer
from challenges.services.evaluations import submission_reevaluate

logger = logging.getLogger(__name__)

MAX_REASON = 2000


class NotOrganizer(PermissionError):
    """The user is not an organizer of this challenge (pages answer 404, the API 403)."""


class OrganizerActionRefused(ValueError):
    """The action cannot be done as asked; the message says why, in the organizer's words."""


def require_organizer(*, user: Any, challenge: Challenge) -> None:
    if not user_is_organizer(user=user, challenge=challenge):
        raise NotOrganizer(f"you are not an organizer of {challenge.slug}")


def _log(
    challenge: Challenge, actor: Any, action: str, summary: str, **detail: Any
) -> OrganizerAction:
    return OrganizerAction.objects.create(
        challenge=challenge, actor=actor, action=action, summary=summary[:500], detail=detail
    )


def _board_changed(phase: Phase, reason: str) -> None:
    """Recompute the phase's leaderboard after the commit, in a worker (stored results only)."""
    from challenges import tasks

    def send() -> None:
        try:
            tasks.leaderboard_update.apply_async(
                kwargs={"phase_id": phase.pk, "requested_at": timezone.now().isoformat()}
            )
        except Exception:  # the broker is down: the next result or the reaper recomputes
            logger.exception("could not send the leaderboard update for phase %s", phase.pk)

    transaction.on_commit(send)


def _reason(reason: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise OrganizerActionRefused("give a reason: the participant sees it")
    if len(text) > MAX_REASON:
        raise OrganizerActionRefused(f"the reason is longer than {MAX_REASON} characters")
    return text


# --- the challenge -------------------------------------------------------------------------------


@transaction.atomic
def challenge_set_published(*, challenge: Challenge, user: Any, published: bool) -> None:
    require_organizer(user=user, challenge=challenge)
    if challenge.is_published == published:
        return
    challenge.is_published = published
    challenge.save(update_fields=["is_published", "updated_at"])
    _log(challenge, user, "publish" if published else "unpublish",
         "Published the challenge" if published else "Unpublished the challenge")  # fmt: skip


@transaction.atomic
def organizer_add(*, challenge: Challenge, user: Any, username: str) -> Any:
    """Make another user a (co-)organizer of this challenge only."""
    require_organizer(user=user, challenge=challenge)
    try:
        other = get_user_model().objects.get(username=username.strip())
    except get_user_model().DoesNotExist as exc:
        raise OrganizerActionRefused(f"no user named '{username.strip()}'") from exc
    if challenge.organizers.filter(pk=other.pk).exists():
        raise OrganizerActionRefused(f"{other} is already an organizer")
    challenge.organizers.add(other)
    _log(challenge, user, "organizer_add", f"Made {other} a co-organizer", user_id=other.pk)
    return other


@transaction.atomic
def organizer_remove(*, challenge: Challenge, user: Any, username: str) -> None:
    require_organizer(user=user, challenge=challenge)
    other = challenge.organizers.filter(username=username).first()
    if other is None:
        raise OrganizerActionRefused(f"{username} is not an organizer")
    if challenge.organizers.count() == 1:
        raise OrganizerActionRefused("a challenge keeps at least one organizer")
    challenge.organizers.remove(other)
    _log(challenge, user, "organizer_remove", f"Removed {other} from the organizers",
         user_id=other.pk)  # fmt: skip


# --- phases --------------------------------------------------------------------------------------


@transaction.atomic
def phase_update(
    *,
    phase: Phase,
    user: Any,
    opens_at: datetime | None = None,
    closes_at: datetime | None = None,
    clear_close: bool = False,
    daily_limit: int | None = None,
    total_limit: int | None = None,
) -> Phase:
    """Change a phase's dates and limits. Only what is given changes; ``clear_close`` makes
    the phase open-ended."""
    require_organizer(user=user, challenge=phase.challenge)
    phase = Phase.objects.select_for_update().get(pk=phase.pk)
    before = _phase_state(phase)
    if opens_at is not None:
        phase.opens_at = opens_at
    if clear_close:
        phase.closes_at = None
    elif closes_at is not None:
        phase.closes_at = closes_at
    if phase.closes_at is not None and phase.closes_at <= phase.opens_at:
        raise OrganizerActionRefused("the phase must close after it opens")
    for name, value in (("daily_limit", daily_limit), ("total_limit", total_limit)):
        if value is not None:
            if value < 0:
                raise OrganizerActionRefused(f"{name.replace('_', ' ')} cannot be negative")
            setattr(phase, name, value)
    if phase.daily_limit > phase.total_limit:
        raise OrganizerActionRefused(
            f"the daily limit ({phase.daily_limit}) cannot be above the total limit "
            f"({phase.total_limit})"
        )
    after = _phase_state(phase)
    if before == after:
        return phase
    phase.save()
    changed = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    _log(phase.challenge, user, "phase_update",
         f"Changed {phase.title}: " + ", ".join(f"{k} {v[0]} → {v[1]}" for k, v in changed.items()),
         phase_id=phase.pk, changed=changed)  # fmt: skip
    return phase


def _phase_state(phase: Phase) -> dict[str, Any]:
    return {
        "opens_at": phase.opens_at.isoformat(timespec="minutes") if phase.opens_at else None,
        "closes_at": phase.closes_at.isoformat(timespec="minutes") if phase.closes_at else None,
        "daily_limit": phase.daily_limit,
        "total_limit": phase.total_limit,
    }


def phase_open_now(*, phase: Phase, user: Any) -> Phase:
    now = timezone.now()
    clear = phase.closes_at is not None and phase.closes_at <= now
    return phase_update(phase=phase, user=user, opens_at=min(phase.opens_at, now),
                        clear_close=clear)  # fmt: skip


def phase_close_now(*, phase: Phase, user: Any) -> Phase:
    now = timezone.now()
    if phase.opens_at > now:
        raise OrganizerActionRefused("the phase has not opened yet: change its dates instead")
    return phase_update(phase=phase, user=user, closes_at=now)


@transaction.atomic
def private_leaderboard_publish(*, phase: Phase, user: Any) -> Phase:
    """Publish the final standings: allowed once the phase and every phase scored on the same
    hidden cases have closed (before that the private scores would guide later submissions)."""
    from challenges.selectors import private_part_revealed

    require_organizer(user=user, challenge=phase.challenge)
    phase = Phase.objects.select_for_update().get(pk=phase.pk)
    now = timezone.now()
    if not phase.is_closed(now):
        raise OrganizerActionRefused("close the phase before publishing its private leaderboard")
    phase.private_release = PrivateRelease.MANUAL
    phase.private_published_at = now
    if not private_part_revealed(phase=phase, now=now):
        raise OrganizerActionRefused(
            "another phase on the same hidden test cases is still open or yet to open: "
            "publishing now would show its participants the scores that decide its standings"
        )
    phase.save(update_fields=["private_release", "private_published_at"])
    _log(phase.challenge, user, "private_publish",
         f"Published the private leaderboard of {phase.title}", phase_id=phase.pk)  # fmt: skip
    return phase


# --- submissions and entries ---------------------------------------------------------------------


def submission_reevaluate_as_organizer(*, submission: Submission, user: Any) -> None:
    require_organizer(user=user, challenge=submission.phase.challenge)
    with transaction.atomic():
        evaluation = submission_reevaluate(submission=submission)
        _log(submission.phase.challenge, user, "reevaluate",
             f"Re-evaluated submission #{submission.pk} (attempt {evaluation.attempt})",
             submission_id=submission.pk)  # fmt: skip


def phase_reevaluate_as_organizer(*, phase: Phase, user: Any) -> int:
    require_organizer(user=user, challenge=phase.challenge)
    n = 0
    with transaction.atomic():
        for submission in Submission.objects.filter(phase=phase).order_by("created_at"):
            submission_reevaluate(submission=submission)
            n += 1
        _log(phase.challenge, user, "reevaluate_all",
             f"Re-evaluated all {n} submission(s) of {phase.title}", phase_id=phase.pk)  # fmt: skip
    return n


@transaction.atomic
def submission_hide(*, submission: Submission, user: Any, reason: str) -> EntryExclusion:
    """Keep one submission off the leaderboard (the entrant's next best counts instead)."""
    phase = submission.phase
    require_organizer(user=user, challenge=phase.challenge)
    text = _reason(reason)
    if submission.exclusions.filter(lifted_at__isnull=True).exists():
        raise OrganizerActionRefused(f"submission #{submission.pk} is already hidden")
    exclusion = EntryExclusion.objects.create(
        phase=phase, kind=ExclusionKind.HIDDEN, submission=submission, reason=text, created_by=user
    )
    _log(phase.challenge, user, "hide", f"Hid submission #{submission.pk}: {text}",
         submission_id=submission.pk, exclusion_id=exclusion.pk)  # fmt: skip
    _board_changed(phase, "hidden")
    return exclusion


@transaction.atomic
def entrant_disqualify(
    *, phase: Phase, user: Any, reason: str, participant: Any = None, team: Team | None = None
) -> EntryExclusion:
    """Take an entrant (a solo participant or a team) off the phase's leaderboard."""
    require_organizer(user=user, challenge=phase.challenge)
    text = _reason(reason)
    if (participant is None) == (team is None):
        raise OrganizerActionRefused("disqualify either a participant or a team")
    if team is not None and team.challenge_id != phase.challenge_id:
        raise OrganizerActionRefused("that team is not in this challenge")
    active = EntryExclusion.objects.filter(
        phase=phase, kind=ExclusionKind.DISQUALIFIED, lifted_at__isnull=True,
        participant=participant, team=team,
    )  # fmt: skip
    if active.exists():
        raise OrganizerActionRefused("this entrant is already disqualified")
    exclusion = EntryExclusion.objects.create(
        phase=phase, kind=ExclusionKind.DISQUALIFIED, participant=participant, team=team,
        reason=text, created_by=user,
    )  # fmt: skip
    who = f"team {team.name}" if team is not None else str(participant)
    _log(phase.challenge, user, "disqualify", f"Disqualified {who} from {phase.title}: {text}",
         phase_id=phase.pk, exclusion_id=exclusion.pk)  # fmt: skip
    _board_changed(phase, "disqualified")
    return exclusion


@transaction.atomic
def exclusion_lift(*, exclusion: EntryExclusion, user: Any) -> None:
    phase = exclusion.phase
    require_organizer(user=user, challenge=phase.challenge)
    if exclusion.lifted_at is not None:
        return
    exclusion.lifted_at, exclusion.lifted_by = timezone.now(), user
    exclusion.save(update_fields=["lifted_at", "lifted_by"])
    _log(phase.challenge, user, "lift", f"Lifted: {exclusion.get_kind_display()} — "
         f"{exclusion.reason[:200]}", exclusion_id=exclusion.pk)  # fmt: skip
    _board_changed(phase, "lifted")


# --- participants --------------------------------------------------------------------------------


@transaction.atomic
def membership_decide(*, membership: ChallengeMembership, user: Any, approve: bool) -> None:
    """Approve or reject a request to join a challenge that requires approval."""
    challenge = membership.challenge
    require_organizer(user=user, challenge=challenge)
    status = MembershipStatus.APPROVED if approve else MembershipStatus.REJECTED
    if membership.status == status:
        return
    membership.status, membership.decided_by = status, user
    membership.decided_at = timezone.now()
    membership.save(update_fields=["status", "decided_by", "decided_at"])
    _log(challenge, user, "approve" if approve else "reject",
         f"{'Approved' if approve else 'Rejected'} {membership.user}",
         user_id=membership.user_id)  # fmt: skip


def announcement_send(*, challenge: Challenge, user: Any, subject: str, body: str) -> Announcement:
    """E-mail a message to every approved participant with an address, and keep it on the
    challenge page. Mail goes through Django's backend (the console in the embedded default)."""
    require_organizer(user=user, challenge=challenge)
    subject, body = subject.strip(), body.strip()
    if not subject or not body:
        raise OrganizerActionRefused("an announcement needs a subject and a text")
    if len(subject) > 200:
        raise OrganizerActionRefused("the subject is longer than 200 characters")
    addresses = sorted(
        set(
            ChallengeMembership.objects.filter(
                challenge=challenge, status=MembershipStatus.APPROVED
            )
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
    )
    prefix = f"[{challenge.title[:60]}] "
    messages = [
        (prefix + subject, body, settings.DEFAULT_FROM_EMAIL, [address]) for address in addresses
    ]
    with transaction.atomic():
        announcement = Announcement.objects.create(
            challenge=challenge, author=user, subject=subject, body=body,
            recipients=len(addresses),
        )  # fmt: skip
        _log(challenge, user, "announce",
             f"Announced '{subject}' to {len(addresses)} participant(s)",
             announcement_id=announcement.pk)  # fmt: skip
    if messages:
        send_mass_mail(messages, fail_silently=False)
    return announcement


@transaction.atomic
def challenge_set_requires_approval(*, challenge: Challenge, user: Any, required: bool) -> None:
    """Whether joining needs an organizer's approval before the data and submissions open.
    Turning it off lets pending members in at once (rejected ones stay out)."""
    require_organizer(user=user, challenge=challenge)
    if challenge.requires_approval == required:
        return
    challenge.requires_approval = required
    challenge.save(update_fields=["requires_approval", "updated_at"])
    _log(challenge, user, "requires_approval" if required else "open_joining",
         "Joining now needs the organizers' approval" if required
         else "Joining no longer needs the organizers' approval")  # fmt: skip


def challenge_set_licence(
    *, challenge: Challenge, user: Any, licence: str, attribution: str
) -> None:
    """The data's licence and attribution, as the challenge's pages show them (a Codabench
    bundle carries neither). Both are required; the licence is at most 200 characters."""
    require_organizer(user=user, challenge=challenge)
    licence, attribution = licence.strip(), attribution.strip()
    if not licence or not attribution:
        raise OrganizerActionRefused("give both the licence and the attribution of the data")
    if len(licence) > 200:
        raise OrganizerActionRefused(
            "the licence is at most 200 characters (name it, e.g. CC BY 4.0)"
        )
    if (challenge.data_licence, challenge.data_attribution) == (licence, attribution):
        return
    challenge.data_licence, challenge.data_attribution = licence, attribution
    challenge.save(update_fields=["data_licence", "data_attribution", "updated_at"])
    _log(challenge, user, "licence", f"Licence set to {licence[:100]}")


@dataclass(frozen=True)
class BaselinesAdded:
    """What "add baselines" did: ``added`` submissions queued for scoring now (tabular
    phases train at once), or ``background`` when the training runs in a worker (image
    phases: the baselines appear on the board as they finish)."""

    added: int
    background: bool


def phase_baselines_add(*, phase: Phase, user: Any) -> BaselinesAdded:
    """Run the baselines that fit the phase (:func:`challenges.services.baselines
    .baselines_add`, idempotent: baselines already there are not added again)."""
    from challenges.services.baselines import baselines_add

    require_organizer(user=user, challenge=phase.challenge)
    try:
        added = baselines_add(phase=phase, user=user)
    except ValueError as exc:
        raise OrganizerActionRefused(f"no baseline can be trained: {exc}") from exc
    background = not phase.dataset.input_table
    summary = (
        f"Started the baselines of {phase.title} in the background"
        if background
        else f"Added {len(added)} baseline(s) to {phase.title}"
    )
    _log(phase.challenge, user, "baselines", summary, phase_id=phase.pk,
         submission_ids=[s.pk for s in added], background=background)  # fmt: skip
    return BaselinesAdded(added=len(added), background=background)
