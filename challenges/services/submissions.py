"""Creating submissions: cheap validation in the request, atomic limits, enqueue on commit."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import File
from django.db import connection, transaction
from django.utils import timezone

from challenges.models import (
    ChallengeMembership,
    Evaluation,
    EvaluationState,
    Phase,
    Submission,
    SubmissionCounter,
    SubmissionKind,
    TaskType,
    Team,
    TeamMembership,
)

ALLOWED_SUFFIXES: dict[str, dict[str, tuple[str, ...]]] = {
    SubmissionKind.PREDICTIONS: {
        TaskType.CLASSIFICATION: (".csv", ".zip"),
        TaskType.SEGMENTATION: (".zip",),
        # results read by the organizers' scoring program: a zip, or one file of its own format
        TaskType.PROGRAM: (".zip", ".csv", ".json", ".txt", ".predict"),
    },
    SubmissionKind.MODEL: {t: (".pt", ".onnx") for t in TaskType.values},
    SubmissionKind.CONTAINER: {t: (".tar", ".tar.gz", ".tgz") for t in TaskType.values},
    SubmissionKind.CODE: {t: (".zip",) for t in TaskType.values},
}


class SubmissionRefused(ValueError):
    """The upload was refused; the message tells the participant why (HTTP 4xx)."""

    def __init__(self, message: str, *, code: str = "invalid", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Limits:
    daily_limit: int
    daily_used: int
    total_limit: int
    total_used: int
    resets_at: datetime

    @property
    def remaining(self) -> int:
        return max(0, min(self.daily_limit - self.daily_used, self.total_limit - self.total_used))

    def to_json(self) -> dict[str, Any]:
        return {
            "daily_limit": self.daily_limit,
            "daily_used": self.daily_used,
            "total_limit": self.total_limit,
            "total_used": self.total_used,
            "remaining": self.remaining,
            "resets_at": self.resets_at.isoformat(),
        }


def entrant_for(*, user: User, phase: Phase) -> tuple[str, Team | None]:
    """The entrant a user submits as in a phase: their team in the challenge, or themselves."""
    membership = (
        TeamMembership.objects.select_related("team")
        .filter(challenge_id=phase.challenge_id, user_id=user.pk)
        .first()
    )
    if membership is not None:
        return f"team:{membership.team_id}", membership.team
    return f"user:{user.pk}", None


def limits_for(
    *,
    user: User,
    phase: Phase,
    now: datetime | None = None,
    entrant: tuple[str, Team | None] | None = None,
) -> Limits:
    """How many submissions the user (or their team) has used and has left, today and in all
    (one query; ``entrant``, when the caller has it from :func:`entrant_for`, saves another)."""
    now = now or timezone.now()
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    _, team = entrant or entrant_for(user=user, phase=phase)
    total, daily = _used(phase, user, team, day_start)
    return Limits(
        daily_limit=phase.daily_limit,
        daily_used=daily,
        total_limit=phase.total_limit,
        total_used=total,
        resets_at=day_start + timedelta(days=1),
    )


def _used(phase: Phase, user: User, team: Team | None, day_start: datetime) -> tuple[int, int]:
    """How many submissions count against the limits, in all and since ``day_start``: the
    entrant's, except baselines and those whose latest attempt failed through the platform's
    fault. Alone, every submission the user made in the phase counts, those made for a team
    they have left included: leaving a team does not give a fresh set of submissions.

    One hand-written statement: every upload counts twice (before its body is read, and under
    the entrant's lock), and building the same query through the ORM took longer than running
    it (tests/pipeline/test_limits_and_leaderboards.py checks it against the ORM's version)."""
    q = connection.ops.quote_name
    sub, ev = q(Submission._meta.db_table), q(Evaluation._meta.db_table)
    who, whom = ("team_id", team.pk) if team is not None else ("participant_id", user.pk)
    # identifiers are the models' own, quoted; every value is a parameter
    day = f"CASE WHEN s.{q('created_at')} >= %s THEN 1 ELSE 0 END"
    sql = (
        f"SELECT COUNT(*), COALESCE(SUM({day}), 0) FROM {sub} s"  # noqa: S608
        f" WHERE s.{q('phase_id')} = %s AND s.{q(who)} = %s"
        f" AND NOT s.{q('is_baseline')} AND NOT EXISTS ("
        f"SELECT 1 FROM {ev} e WHERE e.{q('submission_id')} = s.{q('id')}"
        f" AND e.{q('state')} = %s AND e.{q('platform_fault')} AND NOT EXISTS ("
        f"SELECT 1 FROM {ev} n WHERE n.{q('submission_id')} = s.{q('id')}"
        f" AND n.{q('attempt')} > e.{q('attempt')}))"
    )
    params = [
        connection.ops.adapt_datetimefield_value(day_start),
        phase.pk,
        whom,
        EvaluationState.FAILED.value,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        total, daily = cursor.fetchone()
    return int(total), int(daily)


# Room for the multipart framing and the form's other fields around the file itself.
MULTIPART_ALLOWANCE_BYTES = 64 * 1024
# The participant's file name is kept for display only, cut to this many characters.
ORIGINAL_NAME_MAX_CHARS = 200


def upload_limit_bytes(*, phase: Phase) -> int:
    """The largest file a phase accepts (the platform-wide ``SCANBENCH_MAX_UPLOAD_BYTES``)."""
    return int(settings.SCANBENCH_MAX_UPLOAD_BYTES)


def display_name(name: str) -> str:
    """The participant's file name for display: no folders, no control characters, at most
    ORIGINAL_NAME_MAX_CHARS characters with the ending (the file type) kept."""
    base = re.split(r"[/\\]", name)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip() or "upload"
    if len(base) > ORIGINAL_NAME_MAX_CHARS:
        head, dot, suffix = base.rpartition(".")
        suffix = f".{suffix[:16]}" if dot and head else ""
        base = base[: ORIGINAL_NAME_MAX_CHARS - len(suffix) - 1] + "…" + suffix
    return base


def _allowed_suffix(phase: Phase, name: str) -> str:
    """The accepted file type ``name`` ends with; refuses any other."""
    allowed = ALLOWED_SUFFIXES[phase.submission_kind][phase.challenge.task_type]
    suffix = next((s for s in allowed if name.lower().endswith(s)), None)
    if suffix is None:
        raise SubmissionRefused(
            f"{display_name(name)}: this phase takes "
            f"{phase.get_submission_kind_display().lower()} as {' or '.join(allowed)}",
            code="file_type",
        )
    return suffix


def _check_size(phase: Phase, name: str, size: int) -> None:
    if size <= 0:
        raise SubmissionRefused(f"{display_name(name)}: the file is empty", code="empty")
    limit = upload_limit_bytes(phase=phase)
    if size > limit:
        raise SubmissionRefused(
            f"{display_name(name)}: {size} bytes is over the upload limit of {limit} bytes",
            code="too_large",
            status=413,
        )


def _check_open(phase: Phase, now: datetime) -> None:
    if not phase.is_open(now):
        state = "has not opened yet" if now < phase.opens_at else "is closed"
        raise SubmissionRefused(f"Phase '{phase.title}' {state}.", code="phase_closed", status=403)


def _check_admitted(phase: Phase, user: User) -> None:
    """Where the challenge requires approval, only members the organizers approved submit
    (and nowhere does a member they did not approve); organizers always may."""
    from challenges.selectors import user_is_organizer
    from challenges.selectors_data import membership_admitted, not_admitted_message

    challenge = phase.challenge
    membership = ChallengeMembership.objects.filter(challenge=challenge, user_id=user.pk).first()
    if membership is None and not challenge.requires_approval:
        return
    if membership_admitted(challenge=challenge, membership=membership):
        return
    if user_is_organizer(user=user, challenge=challenge):
        return
    if membership is None:
        raise SubmissionRefused(
            f"Join '{challenge.title}' first: it needs the organizers' approval before you "
            "can submit.",
            code="not_approved",
            status=403,
        )
    raise SubmissionRefused(
        not_admitted_message(challenge=challenge, membership=membership),
        code="not_approved",
        status=403,
    )


def _check_limits(limits: Limits) -> None:
    if limits.total_used >= limits.total_limit:
        raise SubmissionRefused(
            f"You have used all {limits.total_limit} submissions of this phase.",
            code="total_limit",
            status=429,
        )
    if limits.daily_used >= limits.daily_limit:
        raise SubmissionRefused(
            f"You have used today's {limits.daily_limit} submissions; the next one is "
            f"possible after {limits.resets_at:%Y-%m-%d %H:%M} UTC.",
            code="daily_limit",
            status=429,
        )


def submission_precheck(
    *, user: User, phase: Phase, content_length: int | None, now: datetime | None = None
) -> None:
    """Refuse an upload on what is known before its body is read: the phase is open, the
    declared request size fits the phase's upload limit (plus the multipart framing), and the
    participant's daily and total limits are not spent. Call it before touching the request's
    POST/FILES/data, which would read the whole body; ``submission_create`` checks everything
    again, atomically.

    Raises SubmissionRefused with a message for the participant.
    """
    now = now or timezone.now()
    _check_open(phase, now)
    _check_admitted(phase, user)
    limit = upload_limit_bytes(phase=phase)
    if content_length is not None and content_length > limit + MULTIPART_ALLOWANCE_BYTES:
        raise SubmissionRefused(
            f"The upload is {content_length} bytes, over the upload limit of {limit} bytes.",
            code="too_large",
            status=413,
        )
    _check_limits(limits_for(user=user, phase=phase, now=now))


def _sha256(fh: IO[bytes]) -> str:
    h = hashlib.sha256()
    fh.seek(0)
    while chunk := fh.read(1 << 20):
        h.update(chunk)
    fh.seek(0)
    return h.hexdigest()


def submission_create(
    *,
    user: User,
    phase: Phase,
    file: File[bytes],
    comment: str = "",
    now: datetime | None = None,
) -> Submission:
    """Accept an upload: check the phase is open, the file type and size, and the limits
    (atomically, under a lock on the entrant's counter row), store the file with its sha256,
    create the submission and its first evaluation, and enqueue the evaluation on commit.

    The returned submission carries ``limits_after``: the participant's limits with it counted,
    as read under the lock (callers answer with them without counting again).

    Raises SubmissionRefused with a message for the participant; stores nothing then.
    """
    now = now or timezone.now()
    name = file.name or "upload"
    _check_open(phase, now)
    _check_admitted(phase, user)
    suffix = _allowed_suffix(phase, name)
    _check_size(phase, name, file.size or 0)
    digest = _sha256(file)
    entrant, team = entrant_for(user=user, phase=phase)
    submission: Submission | None = None
    try:
        with transaction.atomic():
            SubmissionCounter.objects.bulk_create(
                [SubmissionCounter(phase=phase, entrant=entrant)], ignore_conflicts=True
            )
            # Serializes concurrent uploads of one entrant: the count below cannot go stale.
            SubmissionCounter.objects.select_for_update().get(phase=phase, entrant=entrant)
            limits = limits_for(user=user, phase=phase, now=now, entrant=(entrant, team))
            _check_limits(limits)
            submission = Submission(
                phase=phase,
                participant=user,
                team=team,
                kind=phase.submission_kind,
                sha256=digest,
                comment=comment[:500],
                original_name=display_name(name),
            )
            # Stored under a short ASCII name of the server's: a participant's name can be too long
            # for the file system (ENAMETOOLONG) or hold anything; it is kept for display only.
            submission.file.save(f"submission{suffix}", file, save=False)
            submission.save()
            from challenges.services.evaluations import evaluation_create

            evaluation_create(submission=submission, first=True)
            # the limits the new submission leaves (counted under the lock, plus itself)
            submission.limits_after = replace(  # type: ignore[attr-defined]
                limits, daily_used=limits.daily_used + 1, total_used=limits.total_used + 1
            )
    except BaseException:
        # Nothing is kept of a refused or failed submission: its row is rolled back, and the
        # file it stored, if it got that far, is deleted.
        if submission is not None and submission.file.name:
            submission.file.storage.delete(submission.file.name)
        raise
    return submission
