"""Read side of a submission's own page: what its participant, their team and the organizers see
of one submission and its latest attempt. Access goes through
:func:`challenges.selectors.submission_get_for_user`, the one permission check for submissions
(the API asks there too)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from challenges.models import (
    EntryExclusion,
    Evaluation,
    EvaluationState,
    ExclusionKind,
    Phase,
    Result,
    Submission,
    SubmissionKind,
    TeamMembership,
)
from challenges.selectors import (
    private_leaderboard_visible,
    submission_get_for_user,
    user_is_organizer,
)
from challenges.services.evaluations import LOG_TAIL_CHARS
from evaluator.metrics.registry import metric_info

__all__ = [
    "CASE_ROWS_SHOWN",
    "CaseResults",
    "MetricRow",
    "PartView",
    "SubmissionPage",
    "disqualifications_for_user",
    "hidden_reasons_for_user",
    "submission_get_for_user",
    "submission_page_for_user",
]

#: Per-case rows listed on the page; the histograms are drawn from every case.
CASE_ROWS_SHOWN = 1000


@dataclass(frozen=True)
class MetricRow:
    """One aggregate of a result, with its interval and unit."""

    name: str
    unit: str
    value: float | None
    low: float | None = None
    high: float | None = None
    interval_method: str = ""
    interval_level: float | None = None


@dataclass(frozen=True)
class PartView:
    """One leaderboard part (public or private) of the latest attempt's results."""

    part: str
    n_cases: int
    metrics: list[MetricRow]


@dataclass(frozen=True)
class CaseResults:
    """The public part's per-case values: at most :data:`CASE_ROWS_SHOWN` rows, in case-id
    order, and every case's values per metric for the histograms."""

    metrics: list[str]
    rows: list[tuple[str, list[float | None], bool]]
    n_cases: int
    values: dict[str, list[float | None]]
    units: dict[str, str]


@dataclass(frozen=True)
class SubmissionPage:
    submission: Submission
    evaluation: Evaluation | None
    n_attempts: int
    organizer: bool
    timings: list[tuple[str, float]]
    logs: str
    public: PartView | None
    private: PartView | None
    private_hidden: bool
    n_missing: int
    n_cases: int
    public_missing: list[str]
    name_missing: bool
    cases: CaseResults | None
    pending: bool = False
    #: the organizers' reason for hiding this submission from the leaderboard, if hidden
    hidden_reason: str = ""
    #: the organizers' reason for disqualifying its entrant from the phase, if disqualified
    disqualified_reason: str = ""

    @property
    def timing_rows(self) -> list[tuple[str, float]]:
        """The recorded steps in the order they happen, named in words (unknown steps last)."""
        known = {k: (i, label) for i, (k, label) in enumerate(STEP_LABELS)}
        rows = sorted(self.timings, key=lambda kv: (known.get(kv[0], (len(known), ""))[0], kv[0]))
        return [(known[k][1] if k in known else k, v) for k, v in rows]


#: How the page names the steps a worker records (``Evaluation.timings``), in their order.
STEP_LABELS = (
    ("queued", "waiting for a worker"),
    ("program", "the scoring program"),
    ("reference", "reading the reference"),
    ("score_public", "reading your file, scoring the public part"),
    ("score_private", "scoring the hidden part"),
    ("store", "storing the results"),
    ("scoring", "scoring in all"),
)


def _unit(task: str, name: str) -> str:
    try:
        return metric_info(task, name).unit  # type: ignore[arg-type]
    except KeyError:
        return ""


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _part_view(result: Result, *, task: str, order: list[str]) -> PartView:
    """The aggregates of ``result``: the phase's metrics first, in the phase's order, then any
    other key the evaluator reported (per-label and per-class values such as ``dice/2``)."""
    aggregates: dict[str, Any] = result.aggregates or {}
    intervals: dict[str, Any] = (result.meta or {}).get("intervals") or {}
    names = [m for m in order if m in aggregates]
    names += sorted(k for k in aggregates if k not in names)
    rows = []
    for name in names:
        interval = intervals.get(name) or {}
        rows.append(
            MetricRow(
                name=name,
                unit=_unit(task, name),
                value=_finite(aggregates.get(name)),
                low=_finite(interval.get("low")),
                high=_finite(interval.get("high")),
                interval_method=str(interval.get("method") or ""),
                interval_level=_finite(interval.get("level")),
            )
        )
    meta = result.meta or {}
    n_cases = int(meta.get("n_cases") or len(result.cases or {}))
    return PartView(part=result.part, n_cases=n_cases, metrics=rows)


def _case_results(result: Result, *, task: str, order: list[str]) -> CaseResults:
    cases = result.cases
    keys = set(cases.metrics)
    metrics = [m for m in order if m in keys] + sorted(
        k for k in keys if k not in order and "/" not in k
    )
    missing = {str(c) for c in (result.meta or {}).get("missing_cases") or []}
    ids = sorted(cases)
    columns = {m: cases.column(m) for m in metrics}
    values = {m: [_finite(columns[m][c]) for c in ids] for m in metrics}
    rows = [
        (case_id, [values[m][i] for m in metrics], case_id in missing)
        for i, case_id in enumerate(ids[:CASE_ROWS_SHOWN])
    ]
    return CaseResults(
        metrics=metrics,
        rows=rows,
        n_cases=len(ids),
        values=values,
        units={m: _unit(task, m) for m in metrics},
    )


def submission_page_for_user(*, user: Any, submission_id: int) -> SubmissionPage:
    """Everything a submission's page shows, for ``user``; Http404 unless the user is its
    participant, a member of its team or an organizer of its challenge.

    What each of them sees: the latest attempt's state, message and timings; the public part's
    metrics with intervals; the private part only where the private leaderboard is visible to
    the user; the public part's per-case values only where the phase shows them
    (:meth:`Phase.case_results_visible`; organizers always); the log tail to organizers only,
    as in the API. Ids of private cases are never shown, only counted."""
    submission = submission_get_for_user(user=user, submission_id=submission_id)
    phase = submission.phase
    task = phase.challenge.task_type
    organizer = user_is_organizer(user=user, challenge=phase.challenge)
    attempts = list(submission.evaluations.order_by("-attempt"))
    latest = attempts[0] if attempts else None
    results: dict[str, Result] = {}
    if latest is not None and latest.state == EvaluationState.SUCCEEDED:
        results = {r.part: r for r in latest.results.all()}
    order = list(phase.metrics or [])
    public = results.get("public")
    private = results.get("private")
    private_visible = private is not None and private_leaderboard_visible(user=user, phase=phase)
    n_missing = 0
    n_cases = 0
    for result in results.values():
        meta = result.meta or {}
        n_missing += len(meta.get("missing_cases") or [])
        n_cases += int(meta.get("n_cases") or len(result.cases or {}))
    public_meta: dict[str, Any] = (public.meta or {}) if public is not None else {}
    public_missing = sorted(str(c) for c in public_meta.get("missing_cases") or [])
    show_cases = public is not None and (organizer or phase.case_results_visible())
    # Stored as ``<step>_s`` (seconds): shown as the step's name, in seconds.
    timings = [
        (str(k).removesuffix("_s"), float(v))
        for k, v in sorted((latest.timings or {}).items() if latest else [])
        if _finite(v) is not None
    ]
    return SubmissionPage(
        submission=submission,
        evaluation=latest,
        n_attempts=len(attempts),
        organizer=organizer,
        timings=timings,
        logs=(latest.logs[-LOG_TAIL_CHARS:] if organizer and latest is not None else ""),
        public=_part_view(public, task=task, order=order) if public else None,
        private=_part_view(private, task=task, order=order)
        if private is not None and private_visible
        else None,
        private_hidden=private is not None and not private_visible,
        n_missing=n_missing,
        n_cases=n_cases,
        public_missing=public_missing,
        # Participants of model and container phases never see the test inputs, so their ids
        # are not named there (the evaluation message follows the same rule).
        name_missing=organizer or phase.submission_kind == SubmissionKind.PREDICTIONS,
        cases=_case_results(public, task=task, order=order) if show_cases and public else None,
        pending=latest is not None
        and latest.state
        in (EvaluationState.QUEUED, EvaluationState.RUNNING, EvaluationState.SCORING),
        hidden_reason=hidden_reasons_for_user(user=user, phase=phase, ids=[submission.pk]).get(
            submission.pk, ""
        ),
        disqualified_reason=_entrant_disqualification(submission),
    )


def _entrant_disqualification(submission: Submission) -> str:
    if submission.is_baseline:
        return ""
    who = (
        {"team_id": submission.team_id}
        if submission.team_id
        else {"participant_id": submission.participant_id}
    )
    exclusion = EntryExclusion.objects.filter(
        phase_id=submission.phase_id,
        kind=ExclusionKind.DISQUALIFIED,
        lifted_at__isnull=True,
        **who,
    ).first()
    return exclusion.reason if exclusion is not None else ""


def hidden_reasons_for_user(
    *, user: Any, phase: Phase, ids: list[int] | None = None
) -> dict[int, str]:
    """``{submission id: reason}`` of the user's submissions to ``phase`` (theirs or their
    team's) that the organizers hid from the leaderboard and have not put back."""
    if not user.is_authenticated:
        return {}
    rows = EntryExclusion.objects.filter(
        phase=phase, kind=ExclusionKind.HIDDEN, lifted_at__isnull=True
    )
    if ids is not None:
        rows = rows.filter(submission_id__in=ids)
    else:
        teams = TeamMembership.objects.filter(user=user).values("team_id")
        rows = rows.filter(Q(submission__participant=user) | Q(submission__team_id__in=teams))
    return dict(rows.values_list("submission_id", "reason"))


def disqualifications_for_user(*, user: Any, phase: Phase) -> list[EntryExclusion]:
    """The organizers' active disqualifications of the user, or of their team, from ``phase``."""
    if not user.is_authenticated:
        return []
    teams = TeamMembership.objects.filter(user=user, challenge_id=phase.challenge_id).values(
        "team_id"
    )
    return list(
        EntryExclusion.objects.filter(
            phase=phase, kind=ExclusionKind.DISQUALIFIED, lifted_at__isnull=True
        ).filter(Q(participant=user) | Q(team_id__in=teams))
    )
