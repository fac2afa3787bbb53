from typing import Any, TypeVar

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from challenges.models import (
    BundleUpload,
    Case,
    Challenge,
    ChallengeMembership,
    Dataset,
    EntryExclusion,
    Evaluation,
    OrganizerAction,
    Phase,
    Result,
    Submission,
    Team,
    TeamInvitation,
    TeamMembership,
    WorkerHeartbeat,
)
from challenges.services.evaluations import phase_reevaluate, submission_reevaluate

_M = TypeVar("_M", bound=Model)


class PhaseInline(admin.TabularInline[Phase, Any]):
    model = Phase
    extra = 0
    fields = ["slug", "title", "submission_kind", "opens_at", "closes_at", "primary_metric"]
    show_change_link = True


@admin.register(Challenge)
class ChallengeAdmin(admin.ModelAdmin[Challenge]):
    list_display = ["slug", "title", "task_type", "data_licence", "is_published", "created_at"]
    list_filter = ["task_type", "is_published"]
    search_fields = ["slug", "title", "summary"]
    filter_horizontal = ["organizers"]
    inlines = [PhaseInline]


@admin.action(description="Re-evaluate every submission of the selected phases")
def reevaluate_phases(
    modeladmin: admin.ModelAdmin[Phase], request: HttpRequest, queryset: QuerySet[Phase]
) -> None:
    n = sum(phase_reevaluate(phase=phase) for phase in queryset)
    modeladmin.message_user(request, f"{n} submission(s) queued again.", messages.SUCCESS)


@admin.action(description="Re-evaluate the selected submissions")
def reevaluate_submissions(
    modeladmin: admin.ModelAdmin[Submission],
    request: HttpRequest,
    queryset: QuerySet[Submission],
) -> None:
    for submission in queryset:
        submission_reevaluate(submission=submission)
    modeladmin.message_user(
        request, f"{queryset.count()} submission(s) queued again.", messages.SUCCESS
    )


@admin.register(Phase)
class PhaseAdmin(admin.ModelAdmin[Phase]):
    actions = [reevaluate_phases]
    list_display = [
        "__str__", "submission_kind", "opens_at", "closes_at", "primary_metric",
        "daily_limit", "total_limit",
    ]  # fmt: skip
    list_filter = ["submission_kind", "challenge"]
    search_fields = ["slug", "title", "challenge__slug"]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        # The help text lives here, not on the model field, so that it can name the page the
        # metric names come from without a migration.
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "metrics" and field is not None:
            field.help_text = (
                "Metric names, a JSON list such as dice and hd95 for segmentation; each "
                "one's definition, unit and direction are in docs/metrics.md."
            )
        if db_field.name == "show_case_results" and field is not None:
            field.widget.choices = [
                ("unknown", "By task: on for segmentation, off for classification"),
                ("true", "Yes"),
                ("false", "No"),
            ]
        return field


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin[Dataset]):
    list_display = ["__str__", "public_fraction", "split_seed"]


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin[Case]):
    list_display = ["case_id", "dataset", "split", "leaderboard_part"]
    list_filter = ["split", "leaderboard_part", "dataset"]
    search_fields = ["case_id"]
    # The part is drawn once by the importer; editing it by hand would leak or bias scores.
    readonly_fields = ["leaderboard_part"]


class TeamMembershipInline(admin.TabularInline[TeamMembership, Any]):
    model = TeamMembership
    extra = 0


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin[Team]):
    list_display = ["name", "challenge", "created_at"]
    inlines = [TeamMembershipInline]


class ReadOnlyAdmin(admin.ModelAdmin[_M]):
    """Rows that participants make on the site's pages: organizers look, they do not edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TeamInvitation)
class TeamInvitationAdmin(ReadOnlyAdmin[TeamInvitation]):
    """Read-only: participants invite, accept and decline on the team page (docs/teams.md)."""

    list_display = ["team", "invitee", "invited_by", "created_at"]
    list_filter = ["team__challenge"]
    search_fields = ["team__name", "invitee__username"]


class EvaluationInline(admin.TabularInline[Evaluation, Any]):
    model = Evaluation
    extra = 0
    fields = ["attempt", "state", "queued_at", "started_at", "finished_at", "message"]
    readonly_fields = ["attempt", "state", "queued_at", "started_at", "finished_at", "message"]
    show_change_link = True


@admin.register(ChallengeMembership)
class ChallengeMembershipAdmin(ReadOnlyAdmin[ChallengeMembership]):
    """Read-only: participants join and accept the terms on the challenge's join page."""

    list_display = ["challenge", "user", "joined_at", "terms_accepted_at"]
    list_filter = ["challenge"]
    search_fields = ["user__username", "challenge__slug"]


@admin.register(Submission)
class SubmissionAdmin(ReadOnlyAdmin[Submission]):
    """Read-only: what a participant handed in is evidence; re-evaluation (the action, or the
    organizer console) makes a new attempt and keeps the earlier one."""

    list_display = ["id", "phase", "participant", "team", "kind", "is_baseline", "created_at"]
    list_filter = ["kind", "is_baseline", "phase"]
    search_fields = ["participant__username", "sha256"]
    inlines = [EvaluationInline]
    actions = [reevaluate_submissions]


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnlyAdmin[Evaluation]):
    """Read-only: states move only through the pipeline (docs/pipeline.md)."""

    list_display = [
        "id", "submission", "attempt", "state", "deliveries", "lease_expires_at", "queued_at",
        "finished_at",
    ]  # fmt: skip
    list_filter = ["state"]


@admin.register(Result)
class ResultAdmin(ReadOnlyAdmin[Result]):
    """Read-only: aggregates and per-case values are what the evaluator computed."""

    list_display = ["id", "evaluation", "part", "created_at"]
    list_filter = ["part"]


@admin.register(OrganizerAction)
class OrganizerActionAdmin(ReadOnlyAdmin[OrganizerAction]):
    """The organizers' audit log: append-only."""

    list_display = ["created_at", "challenge", "actor", "action", "summary"]
    list_filter = ["challenge", "action"]


@admin.register(EntryExclusion)
class EntryExclusionAdmin(ReadOnlyAdmin[EntryExclusion]):
    """Read-only: organizers hide and disqualify entries in the console, where it is logged."""

    list_display = ["phase", "kind", "submission", "participant", "team", "created_at", "lifted_at"]


@admin.register(BundleUpload)
class BundleUploadAdmin(ReadOnlyAdmin[BundleUpload]):
    list_display = ["original_name", "uploaded_by", "challenge", "state", "created_at"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin[WorkerHeartbeat]):
    list_display = ["hostname", "queue", "seen_at", "sandbox_backend"]
