"""Read side of the organizer console (docs/organizers.md): what an organizer of one challenge
sees of it. Every function here takes a challenge already fetched through
:func:`challenge_get_for_organizer`, the console's one permission check, which answers 404 to
everyone else (the site's superuser included) so that the console does not tell what exists."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Case, Count, OuterRef, Prefetch, Q, QuerySet, Subquery, When
from django.http import Http404

from challenges.models import (
    Announcement,
    Challenge,
    ChallengeMembership,
    EntryExclusion,
    Evaluation,
    EvaluationState,
    ExclusionKind,
    OrganizerAction,
    Phase,
    Result,
    Submission,
)
from challenges.selectors import user_is_organizer
from challenges.services.evaluations import LOG_TAIL_CHARS

#: Rows of the audit log on the overview.
AUDIT_ROWS = 100
#: Submissions per page of the console's list.
SUBMISSIONS_PER_PAGE = 50
#: Results read from the database at a time by the CSV exports (each holds its per-case JSON).
EXPORT_CHUNK = 20


def challenge_get_for_organizer(*, user: Any, slug: str) -> Challenge:
    """The challenge ``slug`` (published or not) if ``user`` organizes it; Http404 otherwise."""
    challenge = Challenge.objects.filter(slug=slug).first()
    if challenge is None or not user_is_organizer(user=user, challenge=challenge):
        raise Http404(f"No challenge '{slug}' that you organize")
    return challenge


def challenges_organized_by(*, user: Any) -> QuerySet[Challenge]:
    """The challenges ``user`` organizes, unpublished ones included, with a few counts."""
    if not user.is_authenticated:
        return Challenge.objects.none()
    return (
        Challenge.objects.filter(organizers=user)
        .annotate(
            n_phases=Count("phases", distinct=True),
            n_members=Count("memberships", distinct=True),
            n_pending=Count("memberships", filter=Q(memberships__status="pending"), distinct=True),
        )
        .order_by("title")
    )


def user_may_organize(*, user: Any) -> bool:
    """Whether the header links the console: an organizer of some challenge, or a user who may
    create challenges."""
    if not user.is_authenticated:
        return False
    return bool(user.has_perm("challenges.add_challenge")) or user.organized_challenges.exists()


# --- overview ------------------------------------------------------------------------------------


def phase_state(phase: Phase) -> str:
    if phase.is_closed():
        return "closed"
    return "open" if phase.is_open() else "upcoming"


@dataclass(frozen=True)
class PhaseRow:
    phase: Phase
    state: str
    n_submissions: int
    private_published: bool


def console_overview(*, challenge: Challenge) -> dict[str, Any]:
    phases = Phase.objects.filter(challenge=challenge).annotate(n=Count("submissions"))
    return {
        "phases": [
            PhaseRow(
                phase=p,
                state=phase_state(p),
                n_submissions=p.n,
                private_published=p.private_published_at is not None,
            )
            for p in phases.order_by("opens_at", "pk")
        ],
        "organizers": list(challenge.organizers.order_by("username")),
        "actions": list(
            OrganizerAction.objects.filter(challenge=challenge).select_related("actor")[:AUDIT_ROWS]
        ),
    }


def phase_get_for_console(*, challenge: Challenge, phase_id: Any) -> Phase:
    phase = Phase.objects.filter(challenge=challenge, pk=_int(phase_id)).first()
    if phase is None:
        raise Http404(f"No phase {phase_id} in '{challenge.slug}'")
    return phase


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# --- submissions ---------------------------------------------------------------------------------


def entrant_name(submission: Submission) -> str:
    if submission.is_baseline:
        return submission.baseline_name
    if submission.team_id is not None and submission.team is not None:
        return submission.team.name
    return str(submission.participant)


def console_submissions(
    *,
    challenge: Challenge,
    phase_slug: str = "",
    state: str = "",
    search: str = "",
    failures_only: bool = False,
) -> QuerySet[Submission]:
    """Every submission of the challenge, newest first, filtered, each annotated with its
    latest attempt's id and state (``latest_id``, ``latest_state``)."""
    latest = Evaluation.objects.filter(submission=OuterRef("pk")).order_by("-attempt")
    rows = (
        Submission.objects.filter(phase__challenge=challenge)
        .select_related("phase", "participant", "team")
        .annotate(
            latest_id=Subquery(latest.values("pk")[:1]),
            latest_state=Subquery(latest.values("state")[:1]),
        )
        .order_by("-created_at", "-pk")
    )
    if phase_slug:
        rows = rows.filter(phase__slug=phase_slug)
    if failures_only:
        rows = rows.filter(latest_state=EvaluationState.FAILED)
    elif state:
        rows = rows.filter(latest_state=state)
    search = search.strip()
    if search:
        rows = rows.filter(
            Q(participant__username__icontains=search)
            | Q(team__name__icontains=search)
            | Q(baseline_name__icontains=search)
        )
    return rows


@dataclass(frozen=True)
class SubmissionRow:
    submission: Submission
    entrant: str
    state: str
    score: Any
    hidden: bool
    disqualified: bool


def submission_rows(*, submissions: list[Submission]) -> list[SubmissionRow]:
    """The rows of one page of :func:`console_submissions`: the primary score of each latest
    attempt's public part, and whether the entry is hidden or its entrant disqualified. A few
    queries for the whole page, none per row."""
    latest_ids = [s.latest_id for s in submissions if s.latest_id]  # type: ignore[attr-defined]
    aggregates = dict(
        Result.objects.filter(evaluation_id__in=latest_ids, part="public").values_list(
            "evaluation_id", "aggregates"
        )
    )
    ids = [s.pk for s in submissions]
    hidden = set(
        EntryExclusion.objects.filter(submission_id__in=ids, lifted_at__isnull=True).values_list(
            "submission_id", flat=True
        )
    )
    phase_ids = {s.phase_id for s in submissions}
    disqualified = set()
    for phase_id, participant_id, team_id in EntryExclusion.objects.filter(
        phase_id__in=phase_ids, kind=ExclusionKind.DISQUALIFIED, lifted_at__isnull=True
    ).values_list("phase_id", "participant_id", "team_id"):
        disqualified.add(
            (phase_id, "team", team_id) if team_id else (phase_id, "user", participant_id)
        )
    rows = []
    for s in submissions:
        key = (
            (s.phase_id, "team", s.team_id) if s.team_id else (s.phase_id, "user", s.participant_id)
        )
        values = aggregates.get(s.latest_id) or {}  # type: ignore[attr-defined]
        rows.append(
            SubmissionRow(
                submission=s,
                entrant=entrant_name(s),
                state=s.latest_state or "",  # type: ignore[attr-defined]
                score=values.get(s.phase.primary_metric),
                hidden=s.pk in hidden,
                disqualified=not s.is_baseline and key in disqualified,
            )
        )
    return rows


#: Per-case rows listed per result on a submission's console page (the CSV has them all).
CASE_ROWS_SHOWN = 1000


@dataclass(frozen=True)
class ResultView:
    result: Result
    cases: list[tuple[str, dict[str, Any]]]
    n_cases: int


@dataclass(frozen=True)
class AttemptView:
    evaluation: Evaluation
    logs: str
    results: list[ResultView]
    #: (metric, public value, private value), the phase's metrics first
    metrics: list[tuple[str, Any, Any]]
    #: (step, seconds)
    timings: list[tuple[str, Any]]


def _metric_rows(results: list[Result], order: list[str]) -> list[tuple[str, Any, Any]]:
    parts = {r.part: r.aggregates or {} for r in results}
    names: list[str] = [m for m in order if any(m in a for a in parts.values())]
    for aggregates in parts.values():
        names += sorted(k for k in aggregates if k not in names)
    public, private = parts.get("public", {}), parts.get("private", {})
    return [(n, public.get(n), private.get(n)) for n in names]


def _result_view(result: Result) -> ResultView:
    cases = result.cases
    ids = sorted(cases)[:CASE_ROWS_SHOWN]
    return ResultView(result=result, cases=[(c, cases[c]) for c in ids], n_cases=len(cases))


@dataclass(frozen=True)
class ConsoleSubmission:
    submission: Submission
    entrant: str
    attempts: list[AttemptView]
    hidden: EntryExclusion | None
    disqualified: EntryExclusion | None
    exclusions: list[EntryExclusion]


def console_submission(*, challenge: Challenge, submission_id: Any) -> ConsoleSubmission:
    """One submission with every attempt (newest first: state, message, timings, a bounded log
    tail, its public and private results with per-case values) and the exclusions that touch
    it: its own hiding and its entrant's disqualification, active or lifted."""
    submission = (
        Submission.objects.select_related("phase", "participant", "team")
        .filter(phase__challenge=challenge, pk=_int(submission_id))
        .first()
    )
    if submission is None:
        raise Http404(f"No submission {submission_id} in '{challenge.slug}'")
    evaluations = submission.evaluations.order_by("-attempt").prefetch_related(
        Prefetch("results", queryset=Result.objects.order_by("-part"))
    )
    attempts = [
        AttemptView(
            evaluation=e,
            logs=e.logs[-LOG_TAIL_CHARS:],
            results=[_result_view(r) for r in e.results.all()],
            metrics=_metric_rows(list(e.results.all()), list(submission.phase.metrics or [])),
            timings=[(str(k).removesuffix("_s"), v) for k, v in sorted((e.timings or {}).items())],
        )
        for e in evaluations
    ]
    entrant = (
        Q(team=submission.team) if submission.team_id else Q(participant=submission.participant)
    )
    exclusions = list(
        EntryExclusion.objects.filter(phase=submission.phase)
        .filter(Q(submission=submission) | (Q(kind=ExclusionKind.DISQUALIFIED) & entrant))
        .select_related("created_by", "lifted_by")
    )
    active = [e for e in exclusions if e.lifted_at is None]
    return ConsoleSubmission(
        submission=submission,
        entrant=entrant_name(submission),
        attempts=attempts,
        hidden=next((e for e in active if e.kind == ExclusionKind.HIDDEN), None),
        disqualified=next((e for e in active if e.kind == ExclusionKind.DISQUALIFIED), None),
        exclusions=exclusions,
    )


def exclusion_get_for_console(*, challenge: Challenge, exclusion_id: Any) -> EntryExclusion:
    exclusion = (
        EntryExclusion.objects.select_related("phase__challenge")
        .filter(phase__challenge=challenge, pk=_int(exclusion_id))
        .first()
    )
    if exclusion is None:
        raise Http404(f"No exclusion {exclusion_id} in '{challenge.slug}'")
    return exclusion


# --- participants and announcements --------------------------------------------------------------


def console_members(*, challenge: Challenge) -> QuerySet[ChallengeMembership]:
    """Members, those waiting for a decision first."""
    pending_first = Case(When(status="pending", then=0), default=1)
    return (
        ChallengeMembership.objects.filter(challenge=challenge)
        .select_related("user", "decided_by")
        .order_by(pending_first, "-joined_at")
    )


def membership_get_for_console(*, challenge: Challenge, membership_id: Any) -> ChallengeMembership:
    membership = (
        ChallengeMembership.objects.select_related("challenge", "user")
        .filter(challenge=challenge, pk=_int(membership_id))
        .first()
    )
    if membership is None:
        raise Http404(f"No member {membership_id} in '{challenge.slug}'")
    return membership


def announcements_for(*, challenge: Challenge) -> QuerySet[Announcement]:
    return Announcement.objects.filter(challenge=challenge).select_related("author")


# --- exports -------------------------------------------------------------------------------------


def _export_results(challenge: Challenge) -> QuerySet[Result]:
    return (
        Result.objects.filter(evaluation__submission__phase__challenge=challenge)
        .select_related(
            "evaluation__submission__phase",
            "evaluation__submission__participant",
            "evaluation__submission__team",
        )
        .order_by("evaluation__submission_id", "evaluation__attempt", "part")
    )


def results_export_rows(*, challenge: Challenge) -> Iterator[list[Any]]:
    """One row per (submission, attempt, part, metric) with the aggregate value, read in
    chunks without the per-case values."""
    for result in _export_results(challenge).defer("case_values").iterator(chunk_size=500):
        evaluation = result.evaluation
        submission = evaluation.submission
        head = [
            submission.pk,
            submission.phase.slug,
            entrant_name(submission),
            "yes" if submission.is_baseline else "",
            evaluation.attempt,
            evaluation.state,
            result.part,
        ]
        for metric, value in sorted((result.aggregates or {}).items()):
            yield [*head, metric, value]


def cases_export_rows(*, challenge: Challenge) -> Iterator[list[Any]]:
    """One row per (submission, attempt, part, case, metric): a few results in memory at a
    time (each holds every case of its part)."""
    for result in _export_results(challenge).iterator(chunk_size=EXPORT_CHUNK):
        evaluation = result.evaluation
        head = [result.evaluation.submission_id, evaluation.attempt, result.part]
        for case_id, values in sorted((result.cases or {}).items()):
            for metric, value in sorted((values or {}).items()):
                yield [*head, case_id, metric, value]
