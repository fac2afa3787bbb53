"""Who may take a challenge's public downloads: the one place that decides (docs/data.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.http import Http404

from challenges.models import Challenge, ChallengeMembership, DataFile
from challenges.selectors import challenge_get_public, user_is_organizer
from challenges.services.data import (
    challenge_terms,
    data_files_current,
    data_root,
    terms_digest,
)


class DownloadForbidden(PermissionError):
    """The user is signed in but has not joined the challenge and accepted its current terms."""

    def __init__(self, challenge: Challenge) -> None:
        super().__init__(f"Join '{challenge.title}' and accept its terms to download its data.")
        self.challenge = challenge


@dataclass(frozen=True)
class DataAccess:
    challenge: Challenge
    files: list[DataFile]
    terms: str
    membership: ChallengeMembership | None
    can_download: bool
    #: joined once, but the terms changed since: the join page asks again
    terms_outdated: bool

    @property
    def starting_kits(self) -> list[DataFile]:
        """The organizers' starting kits among the files (one per data set that has one)."""
        return [f for f in self.files if f.name.endswith("starting-kit.zip")]


def _membership(*, user: Any, challenge: Challenge) -> ChallengeMembership | None:
    if not user.is_authenticated:
        return None
    return ChallengeMembership.objects.filter(challenge=challenge, user=user).first()


def _may_download(
    *, user: Any, challenge: Challenge, membership: ChallengeMembership | None
) -> bool:
    """Members who accepted the current terms, and the challenge's organizers."""
    if not user.is_authenticated:
        return False
    if user_is_organizer(user=user, challenge=challenge):
        return True
    return (
        membership is not None
        and membership.terms_accepted_at is not None
        and membership.terms_sha256 == terms_digest(challenge=challenge)
    )


def challenge_data_for_user(*, user: Any, slug: str) -> DataAccess:
    """The Data page: the public files (listed to everyone, generated on first request) and
    whether this user may download them."""
    challenge = challenge_get_public(slug=slug)
    membership = _membership(user=user, challenge=challenge)
    can = _may_download(user=user, challenge=challenge, membership=membership)
    return DataAccess(
        challenge=challenge,
        files=data_files_current(challenge=challenge),
        terms=challenge_terms(challenge=challenge),
        membership=membership,
        can_download=can,
        terms_outdated=membership is not None and not can,
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
        raise DownloadForbidden(challenge)
    root = data_root().resolve()
    path = (root / datafile.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise Http404(f"No public file '{name}' in '{slug}'")
    return datafile, path
