"""Read-side queries (HackSoft style). Views call these, never the ORM directly."""

from datetime import datetime
from typing import Any

from django.db.models import Case as DbCase
from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, When
from django.http import Http404
from django.utils import timezone

from challenges.models import (
    Challenge,
    Evaluation,
    LeaderboardEntry,
    Phase,
    PrivateRelease,
    Result,
    Submission,
)


def challenge_list_public() -> QuerySet[Challenge]:
    return (
        Challenge.objects.filter(is_published=True)
        .annotate(
            n_phases=Count("phases", distinct=True),
            n_train=Count(
                "datasets__cases", filter=Q(datasets__cases__split="train"), distinct=True
            ),
            n_test=Count("datasets__cases", filter=Q(datasets__cases__split="test"), distinct=True),
        )
        .order_by("title")
    )


def challenge_get_public(*, slug: str) -> Challenge:
    try:
        return Challenge.objects.prefetch_related("phases", "datasets").get(
            slug=slug, is_published=True
        )
    except Challenge.DoesNotExist as exc:
        raise Http404(f"No challenge '{slug}'") from exc


def challenge_class_balance(*, challenge: Challenge) -> list[dict[str, object]]:
    """Per split, the number of cases of each class (classification) — the class balance that
    the task card states, because accuracy alone misleads on imbalanced data. Test counts are
    aggregate only and reveal no individual label."""
    rows: list[dict[str, object]] = []
    classes = challenge.classes or []
    for split in ("train", "test"):
        counts = dict(
            Challenge.objects.filter(pk=challenge.pk, datasets__cases__split=split)
            .values_list("datasets__cases__label")
            .annotate(n=Count("datasets__cases"))
            .values_list("datasets__cases__label", "n")
        )
        total = sum(counts.values())
        if not total:
            continue
        per_class = []
        for i, name in enumerate(classes):
            n = counts.get(str(i), 0)
            per_class.append({"name": name, "n": n, "percent": 100.0 * n / total})
        rows.append({"split": split, "total": total, "classes": per_class})
    return rows


# --- phases, submissions, leaderboards ------------------------------------------------------


def phase_get_public(*, phase_id: int) -> Phase:
    try:
        return Phase.objects.select_related("challenge", "dataset").get(
            pk=phase_id, challenge__is_published=True
        )
    except Phase.DoesNotExist as exc:
        raise Http404(f"No phase {phase_id}") from exc


def user_is_organizer(*, user: Any, challenge: Challenge) -> bool:
    """Organizer powers are per challenge: its organizers and co-organizers, nobody else (the
    site's superuser administers the site through the admin, not challenges)."""
    if not user.is_authenticated:
        return False
    return challenge.organizers.filter(pk=user.pk).exists()


def private_part_revealed(*, phase: Phase, now: datetime | None = None) -> bool:
    """Whether the private part of a phase may be shown to everyone: the phase has closed and
    so has every other phase scored on the same hidden test cases (the same data set). While
    one of them is open or yet to open, a closed phase's private scores would tell its
    participants how their submissions do on the cases that decide the final standings."""
    now = now or timezone.now()
    if not phase.is_closed(now):
        return False
    if phase.private_release == PrivateRelease.MANUAL and phase.private_published_at is None:
        return False  # closed, but the organizers have not published the final standings yet
    return (
        not Phase.objects.filter(dataset_id=phase.dataset_id)
        .filter(Q(closes_at__isnull=True) | Q(closes_at__gt=now))
        .exists()
    )


def private_leaderboard_visible(*, user: Any, phase: Phase, now: datetime | None = None) -> bool:
    """The private part decides the final standings: organizers always see it, everyone else
    once it is revealed (:func:`private_part_revealed`). Pages and the API both ask here."""
    if user_is_organizer(user=user, challenge=phase.challenge):
        return True
    return private_part_revealed(phase=phase, now=now)


class LeaderboardHidden(PermissionError):
    pass


def leaderboard_for_phase(
    *, phase: Phase, part: str, user: Any, now: datetime | None = None
) -> QuerySet[LeaderboardEntry]:
    """The materialized rows of one part, in rank order. Never computes a metric.

    Raises LeaderboardHidden for the private part until it is revealed: the phase and every
    other phase on the same hidden test cases have closed (organizers excepted).
    """
    if part not in ("public", "private"):
        raise ValueError(f"unknown leaderboard part {part!r}: use public or private")
    if part == "private" and not private_leaderboard_visible(user=user, phase=phase, now=now):
        raise LeaderboardHidden(
            "The private leaderboard is revealed when this phase and every other phase scored "
            "on the same hidden test cases have closed."
        )
    # A baseline's one-line description (its submission's comment) rides along in the same
    # query: the page shows it under the name. A subquery, looked up for baseline rows only:
    # joining every row to its submission made each page, and its count, read the phase's
    # whole submission table once PostgreSQL's statistics knew how large it was.
    comment = (
        Submission.objects.filter(pk=OuterRef("submission_id")).order_by().values("comment")[:1]
    )
    return (
        LeaderboardEntry.objects.filter(phase=phase, part=part)
        .annotate(
            baseline_description=DbCase(
                When(is_baseline=True, then=Subquery(comment)), default=Value("")
            )
        )
        .order_by("rank", "display_name", "pk")
    )


def submission_rows_for_user(*, user: Any, phase: Phase, limit: int = 50) -> list[dict[str, Any]]:
    """The user's latest submissions to a phase, each with its newest attempt and that
    attempt's public result (aggregates only: per-case values are never loaded here)."""
    results = Prefetch(
        "results", queryset=Result.objects.filter(part="public").defer("case_values")
    )
    evaluations = Prefetch(
        "evaluations", queryset=Evaluation.objects.order_by("-attempt").prefetch_related(results)
    )
    submissions = (
        Submission.objects.filter(phase=phase, participant=user)
        .prefetch_related(evaluations)
        .order_by("-created_at")[:limit]
    )
    rows: list[dict[str, Any]] = []
    for submission in submissions:
        latest = next(iter(submission.evaluations.all()), None)
        public = None
        if latest is not None and latest.state == "succeeded":
            public = next(iter(latest.results.all()), None)
        rows.append({"submission": submission, "evaluation": latest, "public": public})
    return rows


def submission_get_for_user(*, user: Any, submission_id: int) -> Submission:
    """A submission its participant, a member of its team, or an organizer may see."""
    try:
        submission = Submission.objects.select_related("phase__challenge").get(pk=submission_id)
    except Submission.DoesNotExist as exc:
        raise Http404(f"No submission {submission_id}") from exc
    if not user.is_authenticated:
        raise Http404(f"No submission {submission_id}")
    own = submission.participant_id == user.pk
    team = submission.team is not None and submission.team.members.filter(pk=user.pk).exists()
    if own or team or user_is_organizer(user=user, challenge=submission.phase.challenge):
        return submission
    raise Http404(f"No submission {submission_id}")


def phase_get_by_slugs(*, slug: str, phase_slug: str) -> Phase:
    try:
        return Phase.objects.select_related("challenge").get(
            challenge__slug=slug, slug=phase_slug, challenge__is_published=True
        )
    except Phase.DoesNotExist as exc:
        raise Http404(f"No phase '{phase_slug}' in '{slug}'") from exc
