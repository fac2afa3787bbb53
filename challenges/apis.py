"""The REST API (DRF). API classes are interfaces only: parse, call one service or selector,
render; each nests its own serializers (HackSoft style)."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import Prefetch
from rest_framework import permissions, serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from challenges.models import Evaluation, LeaderboardEntry, Result, Submission
from challenges.selectors import (
    LeaderboardHidden,
    leaderboard_for_phase,
    phase_get_public,
    submission_get_for_user,
    user_is_organizer,
)
from challenges.services.submissions import (
    SubmissionRefused,
    limits_for,
    submission_create,
    submission_precheck,
)
from challenges.throttles import UploadThrottle


class QueryParameterInvalid(ValueError):
    """A query parameter is malformed or out of bounds (HTTP 400 with ``detail`` and ``code``)."""

    code = "invalid_parameter"


def query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    """Integer query parameter ``name`` within ``[low, high]``, ``default`` when absent.

    Every integer the API takes from a query string goes through here, so a huge, negative or
    non-numeric value is a 400 naming the parameter, never a database error.
    """
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (0 < len(digits) <= 18 and digits.isascii() and digits.isdigit()):
        raise QueryParameterInvalid(f"{name} must be a whole number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise QueryParameterInvalid(f"{name} must be a whole number from {low} to {high}")
    return value


class EvaluationOut(serializers.ModelSerializer[Evaluation]):
    class Meta:
        model = Evaluation
        fields = ["attempt", "state", "message", "queued_at", "started_at", "finished_at"]


def _evaluation_json(evaluation: Evaluation, *, organizer: bool) -> dict[str, Any]:
    data = dict(EvaluationOut(evaluation).data)
    if organizer:
        data["logs"] = evaluation.logs
    results = {r.part: r.aggregates for r in evaluation.results.all()}
    if "public" in results:
        data["public"] = results["public"]
    if organizer and "private" in results:
        data["private"] = results["private"]
    return data


class SubmissionOut(serializers.ModelSerializer[Submission]):
    class Meta:
        model = Submission
        fields = ["id", "phase", "kind", "original_name", "sha256", "comment", "created_at"]


class PhaseLimitsApi(APIView):
    """GET: the caller's submission limits in a phase, before they submit."""

    permission_classes = [permissions.IsAuthenticated]

    def get(self, request: Request, phase_id: int) -> Response:
        phase = phase_get_public(phase_id=phase_id)
        return Response(limits_for(user=cast(User, request.user), phase=phase).to_json())


class _SessionAuthenticationCsrfLater(SessionAuthentication):
    """Session authentication whose CSRF check (which reads the whole body) the view runs
    itself once the checks that need no body have passed."""

    def enforce_csrf(self, request: Request) -> None:
        request._request.scanbench_csrf_pending = True  # type: ignore[attr-defined]


class SubmissionCreateApi(APIView):
    """POST multipart ``file`` (and optional ``comment``): submit to a phase.

    The phase's state, the caller's limits and the declared ``Content-Length`` are checked
    before the body is read, so a refused upload is answered without receiving it.
    """

    permission_classes = [permissions.IsAuthenticated]
    authentication_classes = [TokenAuthentication, _SessionAuthenticationCsrfLater]
    throttle_classes = [UploadThrottle]
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer[Any]):
        file = serializers.FileField(allow_empty_file=False)
        comment = serializers.CharField(required=False, allow_blank=True, max_length=500)

    def post(self, request: Request, phase_id: int) -> Response:
        phase = phase_get_public(phase_id=phase_id)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or "")
        except ValueError:
            length = None
        try:
            submission_precheck(user=cast(User, request.user), phase=phase, content_length=length)
        except SubmissionRefused as exc:
            return Response({"detail": str(exc), "code": exc.code}, status=exc.status)
        if getattr(request._request, "scanbench_csrf_pending", False):
            SessionAuthentication().enforce_csrf(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            submission = submission_create(
                user=cast(User, request.user),
                phase=phase,
                file=data.validated_data["file"],
                comment=data.validated_data.get("comment", ""),
            )
        except SubmissionRefused as exc:
            return Response({"detail": str(exc), "code": exc.code}, status=exc.status)
        body = dict(SubmissionOut(submission).data)
        body["limits"] = limits_for(user=cast(User, request.user), phase=phase).to_json()
        return Response(body, status=status.HTTP_201_CREATED)


class SubmissionDetailApi(APIView):
    """GET: a submission's evaluations (state, message, public scores)."""

    permission_classes = [permissions.IsAuthenticated]

    def get(self, request: Request, submission_id: int) -> Response:
        submission = submission_get_for_user(user=request.user, submission_id=submission_id)
        organizer = user_is_organizer(user=request.user, challenge=submission.phase.challenge)
        body = dict(SubmissionOut(submission).data)
        body["evaluations"] = [
            _evaluation_json(e, organizer=organizer)
            for e in submission.evaluations.prefetch_related(
                Prefetch("results", queryset=Result.objects.defer("cases"))
            ).order_by("-attempt")
        ]
        return Response(body)


class LeaderboardApi(APIView):
    """GET ?part=public|private&limit=&offset=: the materialized leaderboard of a phase."""

    permission_classes = [permissions.AllowAny]

    class OutputSerializer(serializers.ModelSerializer[LeaderboardEntry]):
        class Meta:
            model = LeaderboardEntry
            fields = [
                "rank", "display_name", "is_baseline", "score", "score_ci_low", "score_ci_high",
                "rank_low", "rank_high", "tier", "aggregates", "n_submissions",
                "n_worst_filled", "submitted_at", "submission_id",
            ]  # fmt: skip

    def get(self, request: Request, phase_id: int) -> Response:
        phase = phase_get_public(phase_id=phase_id)
        part = request.query_params.get("part", "public")
        try:
            rows = leaderboard_for_phase(phase=phase, part=part, user=request.user)
        except LeaderboardHidden as exc:
            raise PermissionDenied(str(exc)) from exc
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        try:
            limit = query_int(request, "limit", default=50, low=1, high=500)
            offset = query_int(request, "offset", default=0, low=0, high=10**9)
        except QueryParameterInvalid as exc:
            return Response({"detail": str(exc), "code": exc.code}, status=400)
        page = list(rows[offset : offset + limit])
        return Response(
            {
                "phase": phase.pk,
                "part": part,
                "metric": phase.primary_metric,
                "direction": phase.primary_direction,
                "count": rows.count(),
                "results": self.OutputSerializer(page, many=True).data,
            }
        )
