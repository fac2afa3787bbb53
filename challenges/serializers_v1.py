"""Output (and error) serializers of the API v1 (docs/api.md). They render what selectors
return and describe it to drf-spectacular; they decide nothing about permissions."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from challenges.models import (
    Announcement,
    Challenge,
    ChallengeMembership,
    EntryExclusion,
    Evaluation,
    EvaluationState,
    LeaderboardEntry,
    MembershipStatus,
    OrganizerAction,
    Phase,
    Submission,
    SubmissionKind,
    TeamInvitation,
)
from challenges.selectors import private_leaderboard_visible, user_is_organizer
from challenges.selectors_taskcard import TaskCard

PHASE_STATUSES = ["upcoming", "open", "closed"]


class ErrorSerializer(serializers.Serializer[Any]):
    """Every 4xx body of the API."""

    detail = serializers.CharField(help_text="One sentence for a person.")
    code = serializers.CharField(help_text="snake_case, for programs.")
    field = serializers.CharField(
        allow_null=True, help_text="The request field the error is about, or null."
    )
    retry_after = serializers.IntegerField(
        required=False, help_text="Throttled (429): seconds to wait, as the Retry-After header."
    )


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """The error responses of an operation for its schema, all in the one error shape."""
    return {c: OpenApiResponse(ErrorSerializer, description="See docs/api.md.") for c in codes}


def phase_status(phase: Phase) -> str:
    now = timezone.now()
    if phase.is_open(now):
        return "open"
    return "closed" if phase.is_closed(now) else "upcoming"


class PhaseBriefSerializer(serializers.ModelSerializer[Phase]):
    status = serializers.SerializerMethodField()

    class Meta:
        model = Phase
        fields = [
            "slug", "title", "status", "opens_at", "closes_at", "submission_kind",
            "primary_metric",
        ]  # fmt: skip

    @extend_schema_field(serializers.ChoiceField(choices=PHASE_STATUSES))
    def get_status(self, phase: Phase) -> str:
        return phase_status(phase)


class ChallengeBriefSerializer(serializers.ModelSerializer[Challenge]):
    url = serializers.SerializerMethodField(help_text="The challenge's page.")
    phases = PhaseBriefSerializer(many=True, read_only=True)

    class Meta:
        model = Challenge
        fields = ["slug", "title", "task_type", "summary", "url", "phases"]

    def get_url(self, challenge: Challenge) -> str:
        return _absolute(self.context, challenge.get_absolute_url())


class ChallengeListSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField()
    results = ChallengeBriefSerializer(many=True)


class ChallengeDetailSerializer(serializers.ModelSerializer[Challenge]):
    licence = serializers.CharField(source="data_licence")
    attribution = serializers.CharField(source="data_attribution")
    classes = serializers.ListField(child=serializers.CharField())
    terms = serializers.SerializerMethodField(help_text="What a participant accepts on joining.")
    joined = serializers.SerializerMethodField(
        help_text="The caller joined and accepted the terms."
    )
    membership_status = serializers.SerializerMethodField()
    task_card = serializers.SerializerMethodField(help_text="The task card of the page.")
    phases = PhaseBriefSerializer(many=True, read_only=True)

    class Meta:
        model = Challenge
        fields = [
            "slug", "title", "task_type", "summary", "input_description", "output_description",
            "classes", "licence", "attribution", "terms", "joined", "membership_status",
            "task_card", "phases",
        ]  # fmt: skip

    def get_terms(self, challenge: Challenge) -> str:
        return str(self.context["terms"])

    def get_joined(self, challenge: Challenge) -> bool:
        return bool(self.context["joined"])

    @extend_schema_field(serializers.ChoiceField(choices=MembershipStatus.choices, allow_null=True))
    def get_membership_status(self, challenge: Challenge) -> str | None:
        status: str | None = self.context["membership_status"]
        return status

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_task_card(self, challenge: Challenge) -> dict[str, Any]:
        return task_card_json(self.context["task_card"])


class JoinInSerializer(serializers.Serializer[Any]):
    accept_terms = serializers.BooleanField(
        required=False, default=False, help_text="Must be true: the caller accepts the terms."
    )


class JoinOutSerializer(serializers.Serializer[Any]):
    joined = serializers.BooleanField()
    status = serializers.ChoiceField(choices=MembershipStatus.choices)


class DataFileSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    description = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    url = serializers.CharField(help_text="The download (Range supported).")


class DataListSerializer(serializers.Serializer[Any]):
    files = DataFileSerializer(many=True)


class LimitsSerializer(serializers.Serializer[Any]):
    daily_used = serializers.IntegerField()
    daily_left = serializers.IntegerField()
    total_used = serializers.IntegerField()
    total_left = serializers.IntegerField()
    resets_at = serializers.DateTimeField()


class PhaseDetailSerializer(PhaseBriefSerializer):
    metrics = serializers.ListField(child=serializers.CharField())
    limits = serializers.SerializerMethodField(
        help_text="The caller's submissions used and left; null for an anonymous caller."
    )

    class Meta(PhaseBriefSerializer.Meta):
        fields = [
            *PhaseBriefSerializer.Meta.fields,
            "description", "metrics", "daily_limit", "total_limit", "limits",
        ]  # fmt: skip

    @extend_schema_field(LimitsSerializer(allow_null=True))
    def get_limits(self, phase: Phase) -> dict[str, Any] | None:
        limits = self.context.get("limits")
        if limits is None:
            return None
        return {
            "daily_used": limits.daily_used,
            "daily_left": max(0, limits.daily_limit - limits.daily_used),
            "total_used": limits.total_used,
            "total_left": max(0, limits.total_limit - limits.total_used),
            "resets_at": limits.resets_at,
        }


class SubmissionInSerializer(serializers.Serializer[Any]):
    file = serializers.FileField(allow_empty_file=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=500)


class PartResultSerializer(serializers.Serializer[Any]):
    aggregates = serializers.DictField(child=serializers.FloatField(allow_null=True))
    intervals = serializers.DictField(child=serializers.DictField())
    missing_cases = serializers.ListField(
        child=serializers.CharField(),
        help_text="Ids of cases the submission left out (empty for model and container "
        "phases, whose test inputs participants never see; see n_missing).",
    )
    n_missing = serializers.IntegerField()
    n_cases = serializers.IntegerField()
    cases = serializers.DictField(
        child=serializers.DictField(),
        required=False,
        help_text="Per-case values, only where the phase shows per-case results.",
    )


class ResultsSerializer(serializers.Serializer[Any]):
    public = PartResultSerializer(required=False)
    private = PartResultSerializer(
        required=False, help_text="Only once the private leaderboard is visible to the caller."
    )


class EvaluationV1Serializer(serializers.ModelSerializer[Evaluation]):
    results = serializers.SerializerMethodField()
    logs = serializers.CharField(required=False, help_text="Organizers only: the log tail.")

    class Meta:
        model = Evaluation
        fields = [
            "attempt", "state", "message", "queued_at", "started_at", "finished_at", "results",
            "logs",
        ]  # fmt: skip

    @extend_schema_field(ResultsSerializer)
    def get_results(self, evaluation: Evaluation) -> dict[str, Any]:
        ctx = self.context
        phase: Phase = ctx["phase"]
        out: dict[str, Any] = {}
        for result in evaluation.results.all():
            if result.part == "private" and not ctx["private_visible"]:
                continue
            meta = result.meta or {}
            missing = [str(c) for c in meta.get("missing_cases") or []]
            part: dict[str, Any] = {
                "aggregates": json_safe(result.aggregates or {}),
                "intervals": json_safe(meta.get("intervals") or {}),
                "missing_cases": missing if ctx["name_missing"] else [],
                "n_missing": len(missing),
                "n_cases": int(meta.get("n_cases") or len(result.cases or {})),
            }
            if result.part == "public" and (ctx["organizer"] or phase.case_results_visible()):
                part["cases"] = json_safe(result.cases.to_dict())
            out[result.part] = part
        return out

    def to_representation(self, instance: Evaluation) -> dict[str, Any]:
        data = dict(super().to_representation(instance))
        if self.context["organizer"]:
            data["logs"] = instance.logs
        else:
            data.pop("logs", None)
        return data


class SubmissionV1Serializer(serializers.ModelSerializer[Submission]):
    url = serializers.SerializerMethodField(help_text="This submission in the API.")
    challenge = serializers.CharField(source="phase.challenge.slug", help_text="Its slug.")
    phase = serializers.CharField(source="phase.slug", help_text="Its slug.")
    file_name = serializers.CharField(source="original_name", help_text="As uploaded.")
    state = serializers.SerializerMethodField()
    message = serializers.SerializerMethodField()
    evaluations = serializers.SerializerMethodField()

    class Meta:
        model = Submission
        fields = [
            "id", "url", "challenge", "phase", "file_name", "comment", "created_at", "state",
            "message", "sha256", "evaluations",
        ]  # fmt: skip

    def get_url(self, submission: Submission) -> str:
        path = reverse("challenges:api-submission", kwargs={"submission_id": submission.pk})
        return _absolute(self.context, path)

    def _attempts(self, submission: Submission) -> list[Evaluation]:
        return sorted(submission.evaluations.all(), key=lambda e: -e.attempt)

    @extend_schema_field(serializers.ChoiceField(choices=EvaluationState.values))
    def get_state(self, submission: Submission) -> str:
        attempts = self._attempts(submission)
        return attempts[0].state if attempts else EvaluationState.QUEUED

    def get_message(self, submission: Submission) -> str:
        attempts = self._attempts(submission)
        return attempts[0].message if attempts else ""

    @extend_schema_field(EvaluationV1Serializer(many=True))
    def get_evaluations(self, submission: Submission) -> list[dict[str, Any]]:
        user = self.context["request"].user
        phase = submission.phase
        organizer = user_is_organizer(user=user, challenge=phase.challenge)
        context = {
            "phase": phase,
            "organizer": organizer,
            "private_visible": private_leaderboard_visible(user=user, phase=phase),
            "name_missing": organizer or phase.submission_kind == SubmissionKind.PREDICTIONS,
        }
        return list(
            EvaluationV1Serializer(self._attempts(submission), many=True, context=context).data
        )


class SubmissionListSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField()
    results = SubmissionV1Serializer(many=True)


class LeaderboardRowSerializer(serializers.ModelSerializer[LeaderboardEntry]):
    entrant = serializers.CharField(source="display_name", help_text="Participant or team.")

    class Meta:
        model = LeaderboardEntry
        fields = [
            "rank", "entrant", "score", "score_ci_low", "score_ci_high", "rank_low", "rank_high",
            "tier", "is_baseline", "aggregates", "n_submissions", "submitted_at",
        ]  # fmt: skip

    def to_representation(self, instance: LeaderboardEntry) -> dict[str, Any]:
        """Without the phase's hidden columns (``hidden_columns`` of the context, computed
        once per board by the view)."""
        data: dict[str, Any] = super().to_representation(instance)
        hidden = self.context.get("hidden_columns") or ()
        if hidden and isinstance(data.get("aggregates"), dict):
            data["aggregates"] = {k: v for k, v in data["aggregates"].items() if k not in hidden}
        return data


class LeaderboardSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField()
    part = serializers.ChoiceField(choices=["public", "private"])
    metric = serializers.CharField()
    direction = serializers.ChoiceField(choices=["higher", "lower"])
    results = LeaderboardRowSerializer(many=True)


class TokenInSerializer(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class TokenOutSerializer(serializers.Serializer[Any]):
    token = serializers.CharField()
    username = serializers.CharField()


def _absolute(context: Mapping[str, Any], path: str) -> str:
    request = context.get("request")
    return request.build_absolute_uri(path) if request is not None else path


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no NaN or infinity) and tuples as
    lists, dataclasses as dicts and model instances as their slug."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Phase):
        return value.slug
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_safe(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def task_card_json(card: TaskCard) -> dict[str, Any]:
    """The task card as JSON: each phase card names its phase by slug."""
    data: dict[str, Any] = json_safe(card)
    return data


# --- the organizer console (challenges.apis_organizers) ---------------------------------------


class ConsolePhaseSerializer(serializers.ModelSerializer[Phase]):
    status = serializers.SerializerMethodField()
    n_submissions = serializers.SerializerMethodField()

    class Meta:
        model = Phase
        fields = [
            "slug", "title", "status", "opens_at", "closes_at", "daily_limit", "total_limit",
            "private_release", "private_published_at", "n_submissions",
        ]  # fmt: skip

    @extend_schema_field(serializers.ChoiceField(choices=PHASE_STATUSES))
    def get_status(self, phase: Phase) -> str:
        return phase_status(phase)

    def get_n_submissions(self, phase: Phase) -> int:
        n = getattr(phase, "n", None)
        return int(n) if n is not None else phase.submissions.count()


class ConsoleSerializer(serializers.ModelSerializer[Challenge]):
    published = serializers.BooleanField(source="is_published")
    organizers = serializers.SerializerMethodField(help_text="Usernames.")
    phases = serializers.SerializerMethodField()

    class Meta:
        model = Challenge
        fields = ["slug", "title", "published", "requires_approval", "organizers", "phases"]

    def get_organizers(self, challenge: Challenge) -> list[str]:
        return list(challenge.organizers.order_by("username").values_list("username", flat=True))

    @extend_schema_field(ConsolePhaseSerializer(many=True))
    def get_phases(self, challenge: Challenge) -> list[dict[str, Any]]:
        from django.db.models import Count

        phases = (
            Phase.objects.filter(challenge=challenge)
            .annotate(n=Count("submissions"))
            .order_by("opens_at", "pk")
        )
        return list(ConsolePhaseSerializer(phases, many=True).data)


class PublishInSerializer(serializers.Serializer[Any]):
    published = serializers.BooleanField(help_text="True publishes, false unpublishes.")


class ApprovalInSerializer(serializers.Serializer[Any]):
    requires_approval = serializers.BooleanField()


class UsernameInSerializer(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=150)


class PhaseUpdateInSerializer(serializers.Serializer[Any]):
    opens_at = serializers.DateTimeField(required=False)
    closes_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="null: the phase never closes."
    )
    daily_limit = serializers.IntegerField(required=False, min_value=0, max_value=10**9)
    total_limit = serializers.IntegerField(required=False, min_value=0, max_value=10**9)


class QueuedOutSerializer(serializers.Serializer[Any]):
    queued = serializers.IntegerField(help_text="How many submissions were queued.")
    background = serializers.BooleanField(
        required=False,
        help_text="Baselines only: true when they train in a worker and appear as they finish.",
    )


class ReasonInSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=2000, help_text="The participant sees it.")


class DisqualifyInSerializer(ReasonInSerializer):
    username = serializers.CharField(
        required=False, max_length=150, help_text="A participant (or give team)."
    )
    team = serializers.CharField(
        required=False, max_length=100, help_text="A team's name or slug (or give username)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("username")) == bool(attrs.get("team")):
            raise serializers.ValidationError("Give either username or team.", code="invalid")
        return attrs


class ExclusionSerializer(serializers.ModelSerializer[EntryExclusion]):
    submission = serializers.IntegerField(source="submission_id", allow_null=True)
    participant = serializers.CharField(source="participant.username", allow_null=True)
    team = serializers.CharField(source="team.name", allow_null=True)
    phase = serializers.CharField(source="phase.slug")
    created_by = serializers.CharField(source="created_by.username")
    lifted_by = serializers.CharField(source="lifted_by.username", allow_null=True)

    class Meta:
        model = EntryExclusion
        fields = [
            "id", "phase", "kind", "submission", "participant", "team", "reason", "created_by",
            "created_at", "lifted_at", "lifted_by",
        ]  # fmt: skip


class ConsoleSubmissionRowSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(source="submission.pk")
    phase = serializers.CharField(source="submission.phase.slug")
    entrant = serializers.CharField()
    is_baseline = serializers.BooleanField(source="submission.is_baseline")
    file_name = serializers.CharField(source="submission.original_name")
    created_at = serializers.DateTimeField(source="submission.created_at")
    state = serializers.CharField(help_text="The latest attempt's state (empty: none yet).")
    score = serializers.FloatField(
        allow_null=True, help_text="The primary metric of the latest attempt's public part."
    )
    hidden = serializers.BooleanField()
    disqualified = serializers.BooleanField()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data: dict[str, Any] = json_safe(dict(super().to_representation(instance)))
        return data


class ConsoleSubmissionListSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField()
    results = ConsoleSubmissionRowSerializer(many=True)


class ConsoleResultSerializer(serializers.Serializer[Any]):
    part = serializers.CharField(source="result.part")
    aggregates = serializers.SerializerMethodField()
    n_cases = serializers.IntegerField()
    cases = serializers.SerializerMethodField(
        help_text="Per-case values, the first 1000 case ids (results.csv and cases.csv have all)."
    )

    @extend_schema_field(serializers.DictField(child=serializers.FloatField(allow_null=True)))
    def get_aggregates(self, view: Any) -> dict[str, Any]:
        data: dict[str, Any] = json_safe(view.result.aggregates or {})
        return data

    @extend_schema_field(serializers.DictField(child=serializers.DictField()))
    def get_cases(self, view: Any) -> dict[str, Any]:
        data: dict[str, Any] = json_safe(dict(view.cases))
        return data


class ConsoleAttemptSerializer(serializers.Serializer[Any]):
    attempt = serializers.IntegerField(source="evaluation.attempt")
    state = serializers.CharField(source="evaluation.state")
    message = serializers.CharField(source="evaluation.message")
    queued_at = serializers.DateTimeField(source="evaluation.queued_at", allow_null=True)
    started_at = serializers.DateTimeField(source="evaluation.started_at", allow_null=True)
    finished_at = serializers.DateTimeField(source="evaluation.finished_at", allow_null=True)
    logs = serializers.CharField(help_text="The tail of the attempt's log.")
    timings = serializers.SerializerMethodField(help_text="Seconds per step.")
    results = ConsoleResultSerializer(many=True, help_text="Public and private parts.")

    @extend_schema_field(serializers.DictField(child=serializers.FloatField(allow_null=True)))
    def get_timings(self, view: Any) -> dict[str, Any]:
        data: dict[str, Any] = json_safe({str(k): v for k, v in view.timings})
        return data


class ConsoleSubmissionSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(source="submission.pk")
    phase = serializers.CharField(source="submission.phase.slug")
    entrant = serializers.CharField()
    participant = serializers.CharField(source="submission.participant.username", allow_null=True)
    team = serializers.CharField(source="submission.team.name", allow_null=True)
    is_baseline = serializers.BooleanField(source="submission.is_baseline")
    file_name = serializers.CharField(source="submission.original_name")
    comment = serializers.CharField(source="submission.comment")
    created_at = serializers.DateTimeField(source="submission.created_at")
    sha256 = serializers.CharField(source="submission.sha256")
    hidden = ExclusionSerializer(allow_null=True, help_text="The active hiding, if any.")
    disqualified = ExclusionSerializer(
        allow_null=True, help_text="The entrant's active disqualification, if any."
    )
    exclusions = ExclusionSerializer(many=True, help_text="Active and lifted.")
    attempts = ConsoleAttemptSerializer(many=True, help_text="Newest first.")


class MemberSerializer(serializers.ModelSerializer[ChallengeMembership]):
    username = serializers.CharField(source="user.username")
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True)

    class Meta:
        model = ChallengeMembership
        fields = [
            "id", "username", "status", "joined_at", "terms_accepted_at", "decided_at",
            "decided_by",
        ]  # fmt: skip


class MemberListSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField()
    results = MemberSerializer(many=True)


class AnnouncementInSerializer(serializers.Serializer[Any]):
    subject = serializers.CharField(max_length=200)
    body = serializers.CharField(max_length=20000)


class AnnouncementSerializer(serializers.ModelSerializer[Announcement]):
    author = serializers.CharField(source="author.username")

    class Meta:
        model = Announcement
        fields = ["id", "subject", "body", "recipients", "author", "created_at"]


class AnnouncementListSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField()
    results = AnnouncementSerializer(many=True)


class OrganizerActionSerializer(serializers.ModelSerializer[OrganizerAction]):
    actor = serializers.CharField(source="actor.username")

    class Meta:
        model = OrganizerAction
        fields = ["id", "actor", "action", "summary", "detail", "created_at"]


class OrganizerActionListSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField()
    results = OrganizerActionSerializer(many=True)


# --- teams (challenges.apis_teams) -------------------------------------------------------------


class TeamInSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100)


class InvitationSerializer(serializers.ModelSerializer[TeamInvitation]):
    team = serializers.CharField(source="team.name")
    invitee = serializers.CharField(source="invitee.username")
    invited_by = serializers.CharField(source="invited_by.username", allow_null=True)

    class Meta:
        model = TeamInvitation
        fields = ["id", "team", "invitee", "invited_by", "created_at"]


class TeamSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    slug = serializers.CharField()
    members = serializers.ListField(child=serializers.CharField(), help_text="Usernames.")
    invitations_sent = InvitationSerializer(many=True, help_text="Pending, sent by the team.")


class TeamPageSerializer(serializers.Serializer[Any]):
    team = TeamSerializer(allow_null=True, help_text="The caller's team; null if none.")
    invitations = InvitationSerializer(many=True, help_text="Pending invitations to the caller.")


class TeamLeaveOutSerializer(serializers.Serializer[Any]):
    left = serializers.BooleanField()
    team_deleted = serializers.BooleanField(
        help_text="The team was left empty without submissions, so it is gone."
    )
