"""Who may take a challenge's public downloads: the one place that decides (docs/data.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.http import Http404

from challenges.models import Challenge, ChallengeMembership, DataFile, MembershipStatus
from challenges.selectors import challenge_get_public, user_is_organizer
from challenges.services.data import (
    challenge_terms,
    data_files_current,
    data_root,
    terms_digest,
)


class DownloadForbidden(PermissionError):
    """The user is signed in but has not joined the challenge and accepted its current terms,
    or the organizers have not approved their membership (yet)."""

    def __init__(self, challenge: Challenge, message: str = "") -> None:
        super().__init__(
            message or f"Join '{challenge.title}' and accept its terms to download its data."
        )
        self.challenge = challenge


def membership_admitted(*, challenge: Challenge, membership: ChallengeMembership | None) -> bool:
    """Whether the organizers let this member in: approved where the challenge requires
    approval, anything but rejected elsewhere (turning approval off lets those waiting in)."""
    if membership is None:
        return False
    if challenge.requires_approval:
        return membership.status == MembershipStatus.APPROVED
    return membership.status != MembershipStatus.REJECTED


def not_admitted_message(*, challenge: Challenge, membership: ChallengeMembership) -> str:
    if membership.status == MembershipStatus.REJECTED:
        return f"The organizers of '{challenge.title}' did not approve your membership."
    return (
        f"Your membership of '{challenge.title}' is waiting for the organizers' approval: "
        "the data and submissions open once they approve it."
    )


@dataclass(frozen=True)
class DataAccess:
    challenge: Challenge
    files: list[DataFile]
    terms: str
    membership: ChallengeMembership | None
    can_download: bool
    #: joined once, but the terms changed since: the join page asks again
    terms_outdated: bool
    #: joined, but waiting for the organizers' approval (or not approved): says so
    waiting: str = ""

    @property
    def starting_kits(self) -> list[DataFile]:
        """The organizers' starting kits among the files (one per data set that has one)."""
        return [f for f in self.files if f.name.endswith("starting-kit.zip")]


def _membership(*, user: Any, challenge: Challenge) -> ChallengeMembership | None:
    if not user.is_authenticated:
        return None
    return ChallengeMembership.objects.filter(challenge=challenge, user=user).first()


def membership_waiting_message(*, user: Any, challenge: Challenge) -> str:
    """What the join page tells a member the organizers have not let in; empty otherwise."""
    membership = _membership(user=user, challenge=challenge)
    if membership is None or membership_admitted(challenge=challenge, membership=membership):
        return ""
    return not_admitted_message(challenge=challenge, membership=membership)


def _may_download(
    *, user: Any, challenge: Challenge, membership: ChallengeMembership | None
) -> bool:
    """Members who accepted the current terms and whom the organizers let in
    (:func:`membership_admitted`), and the challenge's organizers."""
    if not user.is_authenticated:
        return False
    if user_is_organizer(user=user, challenge=challenge):
        return True
    return (
        membership is not None
        and membership.terms_accepted_at is not None
        and membership.terms_sha256 == terms_digest(challenge=challenge)
        and membership_admitted(challenge=challenge, membership=membership)
    )


def challenge_data_for_user(*, user: Any, slug: str) -> DataAccess:
    """The Data page: the public files (listed to everyone, generated on first request) and
    whether this user may download them."""
    challenge = challenge_get_public(slug=slug)
    membership = _membership(user=user, challenge=challenge)
    can = _may_download(user=user, challenge=challenge, membership=membership)
    waiting = ""
    if (
        not can
        and membership is not None
        and not membership_admitted(challenge=challenge, membership=membership)
    ):
        waiting = not_admitted_message(challenge=challenge, membership=membership)
    return DataAccess(
        challenge=challenge,
        files=data_files_current(challenge=challenge),
        terms=challenge_terms(challenge=challenge),
        membership=membership,
        can_download=can,
        terms_outdated=membership is not None and not can and not waiting,
        waiting=waiting,
    )


def challenge_download_get_for_user(*, user: Any, slug: str, name: str) -> tuple[DataFile, Path]:
    """The public file ``name`` of a published challenge and its path on disk, for a member who
    accepted the current terms (or an organizer).

    ``name`` is only ever compared with the generated whitelist (DataFile rows), never joined
    into a path: hidden labels, reference masks and private case lists have no row, so no name
    reaches them. Raises Http404 for an unknown challenge or name, DownloadForbidden for a
    user who may not download (anonymous users included).
    """
    challenge = challenge_get_public(slug=slug)
    if not user.is_authenticated:
        raise DownloadForbidden(challenge)
    files = {f.name: f for f in data_files_current(challenge=challenge)}
    datafile = files.get(name)
    if datafile is None:
        raise Http404(f"No public file '{name}' in '{slug}'")
    membership = _membership(user=user, challenge=challenge)
    if not _may_download(user=user, challenge=challenge, membership=membership):
        if membership is not None and not membership_admitted(
            challenge=challenge, membership=membership
        ):
            raise DownloadForbidden(
                challenge, not_admitted_message(challenge=challenge, membership=membership)
            )
        raise DownloadForbidden(challenge)
    root = data_root().resolve()
    path = (root / datafile.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise Http404(f"No public file '{name}' in '{slug}'")
    return datafile, path
