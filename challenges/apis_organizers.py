"""The organizer console in the API (docs/api.md, "Organizer actions"), under
``/api/challenges/<slug>/console/``. Interfaces only: every view fetches its challenge through
:func:`challenges.selectors_console.challenge_get_for_organizer` (404 to anyone who does not
organize it, the site's superuser included, like the console's pages), reads with
challenges.selectors_console and acts through challenges.services.organizers, which checks
again, logs an OrganizerAction and never changes a stored score. Refusals are raised and
rendered by challenges.api_errors (``action_refused``, 409)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Q
from django.http import Http404, HttpResponseBase, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from challenges import views_console
from challenges.api_errors import ApiError, QueryParameterInvalid
from challenges.apis_v1 import LIST_PARAMETERS, _FileView, _page
from challenges.models import (
    Challenge,
    ChallengeMembership,
    EvaluationState,
    OrganizerAction,
    Phase,
    Team,
)
from challenges.selectors_console import (
    announcements_for,
    challenge_get_for_organizer,
    console_members,
    console_submission,
    console_submissions,
    exclusion_get_for_console,
    submission_rows,
)
from challenges.serializers_v1 import (
    AnnouncementInSerializer,
    AnnouncementListSerializer,
    AnnouncementSerializer,
    ApprovalInSerializer,
    ConsolePhaseSerializer,
    ConsoleSerializer,
    ConsoleSubmissionListSerializer,
    ConsoleSubmissionRowSerializer,
    ConsoleSubmissionSerializer,
    DisqualifyInSerializer,
    ExclusionSerializer,
    MemberListSerializer,
    MemberSerializer,
    OrganizerActionListSerializer,
    PhaseUpdateInSerializer,
    PublishInSerializer,
    QueuedOutSerializer,
    ReasonInSerializer,
    UsernameInSerializer,
    error_responses,
)
from challenges.services import organizers

TAGS = ["organizers"]
#: The errors of every console endpoint: no credentials, not an organizer (404), throttled.
READ_ERRORS = (401, 404, 429)
WRITE_ERRORS = (400, 401, 404, 409, 415, 429)


class _ConsoleApi(APIView):
    """Authenticated callers only (401 otherwise); then the challenge, if the caller organizes
    it (404 otherwise), before anything else happens."""

    permission_classes = [permissions.IsAuthenticated]
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    challenge: Challenge

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.challenge = challenge_get_for_organizer(user=request.user, slug=kwargs["slug"])

    def phase(self, slug: str) -> Phase:
        found = Phase.objects.filter(challenge=self.challenge, slug=slug).first()
        if found is None:
            raise Http404("No such phase")
        return found

    def console(self, request: Request) -> Response:
        self.challenge.refresh_from_db()
        return Response(ConsoleSerializer(self.challenge).data)


def _phase_out(phase: Phase) -> dict[str, Any]:
    annotated = Phase.objects.annotate(n=Count("submissions")).get(pk=phase.pk)
    return dict(ConsolePhaseSerializer(annotated).data)


def _body(serializer_class: type, request: Request) -> dict[str, Any]:
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    validated: dict[str, Any] = data.validated_data
    return validated


# --- the challenge ------------------------------------------------------------------------------


class ConsoleApi(_ConsoleApi):
    """GET: the challenge as its organizers see it (published or not)."""

    @extend_schema(
        operation_id="console_retrieve",
        responses={200: ConsoleSerializer, **error_responses(*READ_ERRORS)},
        tags=TAGS,
    )
    def get(self, request: Request, slug: str) -> Response:
        return self.console(request)


class ConsolePublishApi(_ConsoleApi):
    """POST ``{"published": bool}``: publish or unpublish the challenge."""

    @extend_schema(
        operation_id="console_publish",
        request=PublishInSerializer,
        responses={200: ConsoleSerializer, **error_responses(*WRITE_ERRORS)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _body(PublishInSerializer, request)
        organizers.challenge_set_published(
            challenge=self.challenge, user=request.user, published=data["published"]
        )
        return self.console(request)


class ConsoleApprovalApi(_ConsoleApi):
    """POST ``{"requires_approval": bool}``: whether joining needs an organizer's approval."""

    @extend_schema(
        operation_id="console_approval",
        request=ApprovalInSerializer,
        responses={200: ConsoleSerializer, **error_responses(*WRITE_ERRORS)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _body(ApprovalInSerializer, request)
        organizers.challenge_set_requires_approval(
            challenge=self.challenge, user=request.user, required=data["requires_approval"]
        )
        return self.console(request)


class ConsoleOrganizersApi(_ConsoleApi):
    """POST ``{"username"}``: make another user a co-organizer of this challenge."""

    @extend_schema(
        operation_id="console_organizers_add",
        request=UsernameInSerializer,
        responses={201: ConsoleSerializer, **error_responses(*WRITE_ERRORS)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _body(UsernameInSerializer, request)
        organizers.organizer_add(
            challenge=self.challenge, user=request.user, username=data["username"]
        )
        response = self.console(request)
        response.status_code = status.HTTP_201_CREATED
        return response


class ConsoleOrganizerApi(_ConsoleApi):
    """DELETE: remove an organizer (a challenge keeps at least one)."""

    @extend_schema(
        operation_id="console_organizers_remove",
        responses={200: ConsoleSerializer, **error_responses(401, 404, 409, 429)},
        tags=TAGS,
    )
    def delete(self, request: Request, slug: str, username: str) -> Response:
        organizers.organizer_remove(challenge=self.challenge, user=request.user, username=username)
        return self.console(request)


# --- phases ---------------------------------------------------------------------------------------


class ConsolePhaseApi(_ConsoleApi):
    """PATCH ``{opens_at?, closes_at?, daily_limit?, total_limit?}``: only what is given
    changes; ``"closes_at": null`` makes the phase open-ended."""

    @extend_schema(
        operation_id="console_phase_update",
        request=PhaseUpdateInSerializer,
        responses={200: ConsolePhaseSerializer, **error_responses(*WRITE_ERRORS)},
        tags=TAGS,
    )
    def patch(self, request: Request, slug: str, phase: str) -> Response:
        found = self.phase(phase)
        data = _body(PhaseUpdateInSerializer, request)
        clear_close = "closes_at" in data and data["closes_at"] is None
        updated = organizers.phase_update(
            phase=found,
            user=request.user,
            opens_at=data.get("opens_at"),
            closes_at=data.get("closes_at"),
            clear_close=clear_close,
            daily_limit=data.get("daily_limit"),
            total_limit=data.get("total_limit"),
        )
        return Response(_phase_out(updated))


class _PhaseActionApi(_ConsoleApi):
    """POST (no body): one action on a phase, answered with the phase."""

    def act(self, request: Request, phase: Phase) -> Phase:
        raise NotImplementedError

    def respond(self, request: Request, phase: str) -> Response:
        return Response(_phase_out(self.act(request, self.phase(phase))))


_PHASE_ACTION_SCHEMA: dict[str, Any] = {
    "request": None,
    "responses": {200: ConsolePhaseSerializer, **error_responses(401, 404, 409, 429)},
    "tags": TAGS,
}


class ConsolePhaseOpenApi(_PhaseActionApi):
    """POST: open the phase now (a closed phase becomes open-ended)."""

    @extend_schema(operation_id="console_phase_open", **_PHASE_ACTION_SCHEMA)
    def post(self, request: Request, slug: str, phase: str) -> Response:
        return self.respond(request, phase)

    def act(self, request: Request, phase: Phase) -> Phase:
        return organizers.phase_open_now(phase=phase, user=request.user)


class ConsolePhaseCloseApi(_PhaseActionApi):
    """POST: close the phase now: no more submissions."""

    @extend_schema(operation_id="console_phase_close", **_PHASE_ACTION_SCHEMA)
    def post(self, request: Request, slug: str, phase: str) -> Response:
        return self.respond(request, phase)

    def act(self, request: Request, phase: Phase) -> Phase:
        return organizers.phase_close_now(phase=phase, user=request.user)


class ConsolePhasePublishPrivateApi(_PhaseActionApi):
    """POST: publish the private leaderboard (once the phase, and every phase scored on the
    same hidden cases, has closed)."""

    @extend_schema(operation_id="console_phase_publish_private", **_PHASE_ACTION_SCHEMA)
    def post(self, request: Request, slug: str, phase: str) -> Response:
        return self.respond(request, phase)

    def act(self, request: Request, phase: Phase) -> Phase:
        return organizers.private_leaderboard_publish(phase=phase, user=request.user)


class ConsolePhaseReevaluateApi(_ConsoleApi):
    """POST: queue every submission of the phase for re-evaluation (earlier attempts kept)."""

    @extend_schema(
        operation_id="console_phase_reevaluate",
        request=None,
        responses={202: QueuedOutSerializer, **error_responses(401, 404, 409, 429)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str, phase: str) -> Response:
        n = organizers.phase_reevaluate_as_organizer(phase=self.phase(phase), user=request.user)
        return Response({"queued": n}, status=status.HTTP_202_ACCEPTED)


class ConsolePhaseBaselinesApi(_ConsoleApi):
    """POST: train the classical baselines and queue their predictions for scoring (only those
    not there yet)."""

    @extend_schema(
        operation_id="console_phase_baselines",
        request=None,
        responses={202: QueuedOutSerializer, **error_responses(401, 404, 409, 429)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str, phase: str) -> Response:
        done = organizers.phase_baselines_add(phase=self.phase(phase), user=request.user)
        return Response(
            {"queued": done.added, "background": done.background},
            status=status.HTTP_202_ACCEPTED,
        )


class ConsolePhaseDisqualifyApi(_ConsoleApi):
    """POST ``{"username" | "team", "reason"}``: take an entrant off the phase's leaderboard."""

    @extend_schema(
        operation_id="console_phase_disqualify",
        request=DisqualifyInSerializer,
        responses={201: ExclusionSerializer, **error_responses(*WRITE_ERRORS)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str, phase: str) -> Response:
        found = self.phase(phase)
        data = _body(DisqualifyInSerializer, request)
        participant, team = None, None
        if data.get("username"):
            participant = User.objects.filter(username=data["username"].strip()).first()
            if participant is None:
                raise ApiError(
                    f"No user named '{data['username'].strip()}'.",
                    code="does_not_exist",
                    field="username",
                )
        else:
            name = data["team"].strip()
            team = (
                Team.objects.filter(challenge=self.challenge)
                .filter(Q(name__iexact=name) | Q(slug=name))
                .first()
            )
            if team is None:
                raise ApiError(
                    f"No team '{name}' in this challenge.", code="does_not_exist", field="team"
                )
        exclusion = organizers.entrant_disqualify(
            phase=found, user=request.user, reason=data["reason"], participant=participant,
            team=team,
        )  # fmt: skip
        return Response(ExclusionSerializer(exclusion).data, status=status.HTTP_201_CREATED)


# --- submissions and exclusions -------------------------------------------------------------------


class ConsoleSubmissionsApi(_ConsoleApi):
    """GET ``?phase=&state=&q=&failed=1&limit=&offset=``: every submission of the challenge,
    newest first, with its latest state, primary score and exclusions."""

    @extend_schema(
        operation_id="console_submissions_list",
        parameters=[
            OpenApiParameter("phase", OpenApiTypes.STR, description="A phase's slug."),
            OpenApiParameter("state", OpenApiTypes.STR, enum=EvaluationState.values),
            OpenApiParameter("q", OpenApiTypes.STR, description="Part of an entrant's name."),
            OpenApiParameter("failed", OpenApiTypes.STR, enum=["0", "1"]),
            *LIST_PARAMETERS,
        ],
        responses={200: ConsoleSubmissionListSerializer, **error_responses(400, 401, 404, 429)},
        tags=TAGS,
    )
    def get(self, request: Request, slug: str) -> Response:
        limit, offset = _page(request)
        query = request.query_params
        state = query.get("state") or ""
        if state and state not in EvaluationState.values:
            raise QueryParameterInvalid(
                "state must be one of " + ", ".join(EvaluationState.values), field="state"
            )
        rows = console_submissions(
            challenge=self.challenge,
            phase_slug=query.get("phase") or "",
            state=state,
            search=(query.get("q") or "")[:100],
            failures_only=query.get("failed") in ("1", "true", "on"),
        )
        page = submission_rows(submissions=list(rows[offset : offset + limit]))
        results = ConsoleSubmissionRowSerializer(page, many=True).data
        return Response({"count": rows.count(), "results": results})


class ConsoleSubmissionApi(_ConsoleApi):
    """GET: one submission with every attempt (logs tail, public and private results with
    per-case values) and the exclusions that touch it."""

    @extend_schema(
        operation_id="console_submission_retrieve",
        responses={200: ConsoleSubmissionSerializer, **error_responses(*READ_ERRORS)},
        tags=TAGS,
    )
    def get(self, request: Request, slug: str, submission_id: int) -> Response:
        view = console_submission(challenge=self.challenge, submission_id=submission_id)
        return Response(ConsoleSubmissionSerializer(view).data)


class ConsoleSubmissionReevaluateApi(_ConsoleApi):
    """POST: queue a new attempt of the submission (the earlier one is kept)."""

    @extend_schema(
        operation_id="console_submission_reevaluate",
        request=None,
        responses={202: ConsoleSubmissionSerializer, **error_responses(401, 404, 409, 429)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str, submission_id: int) -> Response:
        view = console_submission(challenge=self.challenge, submission_id=submission_id)
        organizers.submission_reevaluate_as_organizer(submission=view.submission, user=request.user)
        view = console_submission(challenge=self.challenge, submission_id=submission_id)
        return Response(ConsoleSubmissionSerializer(view).data, status=status.HTTP_202_ACCEPTED)


class ConsoleSubmissionHideApi(_ConsoleApi):
    """POST ``{"reason"}``: keep the submission off the leaderboard (the entrant's next best
    counts instead)."""

    @extend_schema(
        operation_id="console_submission_hide",
        request=ReasonInSerializer,
        responses={201: ExclusionSerializer, **error_responses(*WRITE_ERRORS)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str, submission_id: int) -> Response:
        view = console_submission(challenge=self.challenge, submission_id=submission_id)
        data = _body(ReasonInSerializer, request)
        exclusion = organizers.submission_hide(
            submission=view.submission, user=request.user, reason=data["reason"]
        )
        return Response(ExclusionSerializer(exclusion).data, status=status.HTTP_201_CREATED)


class ConsoleExclusionLiftApi(_ConsoleApi):
    """POST: lift a hiding or a disqualification: the entry counts again."""

    @extend_schema(
        operation_id="console_exclusion_lift",
        request=None,
        responses={200: ExclusionSerializer, **error_responses(401, 404, 409, 429)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str, exclusion_id: int) -> Response:
        exclusion = exclusion_get_for_console(challenge=self.challenge, exclusion_id=exclusion_id)
        organizers.exclusion_lift(exclusion=exclusion, user=request.user)
        exclusion.refresh_from_db()
        return Response(ExclusionSerializer(exclusion).data)


# --- participants, announcements, the audit log ------------------------------------------------


class ConsoleParticipantsApi(_ConsoleApi):
    """GET ``?limit=&offset=``: the members, those waiting for a decision first."""

    @extend_schema(
        operation_id="console_participants_list",
        parameters=LIST_PARAMETERS,
        responses={200: MemberListSerializer, **error_responses(400, 401, 404, 429)},
        tags=TAGS,
    )
    def get(self, request: Request, slug: str) -> Response:
        limit, offset = _page(request)
        members = console_members(challenge=self.challenge)
        results = MemberSerializer(members[offset : offset + limit], many=True).data
        return Response({"count": members.count(), "results": results})


class _DecideApi(_ConsoleApi):
    approve = True

    def respond(self, request: Request, username: str) -> Response:
        membership = (
            ChallengeMembership.objects.select_related("challenge", "user", "decided_by")
            .filter(challenge=self.challenge, user__username=username)
            .first()
        )
        if membership is None:
            raise Http404("No such member")
        organizers.membership_decide(membership=membership, user=request.user, approve=self.approve)
        membership.refresh_from_db()
        return Response(MemberSerializer(membership).data)


_DECIDE_SCHEMA: dict[str, Any] = {
    "request": None,
    "responses": {200: MemberSerializer, **error_responses(401, 404, 409, 429)},
    "tags": TAGS,
}


class ConsoleParticipantApproveApi(_DecideApi):
    """POST: approve a member's request to join."""

    approve = True

    @extend_schema(operation_id="console_participant_approve", **_DECIDE_SCHEMA)
    def post(self, request: Request, slug: str, username: str) -> Response:
        return self.respond(request, username)


class ConsoleParticipantRejectApi(_DecideApi):
    """POST: reject a member's request to join (their data and submissions stay closed)."""

    approve = False

    @extend_schema(operation_id="console_participant_reject", **_DECIDE_SCHEMA)
    def post(self, request: Request, slug: str, username: str) -> Response:
        return self.respond(request, username)


class ConsoleAnnouncementsApi(_ConsoleApi):
    """GET ``?limit=&offset=``: the announcements, newest first. POST ``{"subject", "body"}``:
    e-mail every approved participant and show it on the challenge page."""

    @extend_schema(
        operation_id="console_announcements_list",
        parameters=LIST_PARAMETERS,
        responses={200: AnnouncementListSerializer, **error_responses(400, 401, 404, 429)},
        tags=TAGS,
    )
    def get(self, request: Request, slug: str) -> Response:
        limit, offset = _page(request)
        rows = announcements_for(challenge=self.challenge)
        results = AnnouncementSerializer(rows[offset : offset + limit], many=True).data
        return Response({"count": rows.count(), "results": results})

    @extend_schema(
        operation_id="console_announcements_create",
        request=AnnouncementInSerializer,
        responses={201: AnnouncementSerializer, **error_responses(*WRITE_ERRORS)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _body(AnnouncementInSerializer, request)
        announcement = organizers.announcement_send(
            challenge=self.challenge, user=request.user, subject=data["subject"], body=data["body"]
        )
        return Response(AnnouncementSerializer(announcement).data, status=status.HTTP_201_CREATED)


class ConsoleActionsApi(_ConsoleApi):
    """GET ``?limit=&offset=``: the audit log, newest first (who, when, what)."""

    @extend_schema(
        operation_id="console_actions_list",
        parameters=LIST_PARAMETERS,
        responses={200: OrganizerActionListSerializer, **error_responses(400, 401, 404, 429)},
        tags=TAGS,
    )
    def get(self, request: Request, slug: str) -> Response:
        limit, offset = _page(request)
        rows = OrganizerAction.objects.filter(challenge=self.challenge).select_related("actor")
        body = {"count": rows.count(), "results": list(rows[offset : offset + limit])}
        return Response(OrganizerActionListSerializer(body).data)


# --- exports -----------------------------------------------------------------------------------


class _ConsoleCsvApi(_FileView, _ConsoleApi):
    """The console's CSV export, streamed (the same file as the console's download)."""

    export: type[views_console._ExportView] = views_console.ResultsCsvView

    def respond(self) -> HttpResponseBase:
        export = self.export()
        export.challenge = self.challenge
        response = StreamingHttpResponse(
            views_console._csv_stream(export.header, export.rows()), content_type="text/csv"
        )
        name = f"{self.challenge.slug}-{export.filename}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


_CSV_RESPONSES: dict[Any, Any] = {(200, "text/csv"): OpenApiTypes.STR}


class ConsoleResultsCsvApi(_ConsoleCsvApi):
    """GET: every result: one row per submission, attempt, part and metric."""

    export = views_console.ResultsCsvView

    @extend_schema(
        operation_id="console_results_csv",
        responses={**_CSV_RESPONSES, **error_responses(*READ_ERRORS)},
        tags=TAGS,
    )
    def get(self, request: Request, slug: str) -> HttpResponseBase:
        return self.respond()


class ConsoleCasesCsvApi(_ConsoleCsvApi):
    """GET: every per-case value: one row per submission, attempt, part, case and metric."""

    export = views_console.CasesCsvView

    @extend_schema(
        operation_id="console_cases_csv",
        responses={**_CSV_RESPONSES, **error_responses(*READ_ERRORS)},
        tags=TAGS,
    )
    def get(self, request: Request, slug: str) -> HttpResponseBase:
        return self.respond()
