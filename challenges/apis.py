"""The REST API (DRF). API classes are interfaces only: parse, call one service or selector,
render; each nests its own serializers (HackSoft style)."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from challenges.api_errors import QueryParameterInvalid
from challenges.models import Evaluation, LeaderboardEntry, Phase, Result, Submission
from challenges.selectors import (
    leaderboard_for_phase,
    phase_get_public,
    submission_get_for_user,
)
from challenges.serializers_v1 import SubmissionV1Serializer, error_responses
from challenges.services.submissions import (
    SubmissionRefused,
    limits_for,
    submission_create,
    submission_precheck,
)
from challenges.throttles import UploadThrottle


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
        raise QueryParameterInvalid(
            f"{name} must be a whole number from {low} to {high}", field=name
        )
    value = int(text)
    if not low <= value <= high:
        raise QueryParameterInvalid(
            f"{name} must be a whole number from {low} to {high}", field=name
        )
    return value


class SubmissionOut(serializers.ModelSerializer[Submission]):
    class Meta:
        model = Submission
        fields = ["id", "phase", "kind", "original_name", "sha256", "comment", "created_at"]


@extend_schema(exclude=True)  # the id-addressed routes: the slug routes are documented
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


@extend_schema(exclude=True)  # the id-addressed routes: the slug routes are documented
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
        submission = submission_create_from_request(request, phase=phase)
        body = dict(SubmissionOut(submission).data)
        body["limits"] = submission.limits_after.to_json()  # type: ignore[attr-defined]
        return Response(body, status=status.HTTP_201_CREATED)


def submission_create_from_request(request: Request, *, phase: Phase) -> Submission:
    """Submit the request's multipart ``file`` (and ``comment``) to ``phase``: the checks that
    need no body first (:func:`submission_precheck`, on the declared ``Content-Length``), then
    the CSRF check of a session caller (it reads the body), then :func:`submission_create`.

    The body is parsed by Django's upload handlers (files over FILE_UPLOAD_MAX_MEMORY_SIZE go
    to a temporary file) only after the prechecks passed. Raises SubmissionRefused or a DRF
    ValidationError; the API's exception handler renders both.
    """
    user = cast(User, request.user)
    try:
        length: int | None = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        length = None
    submission_precheck(user=user, phase=phase, content_length=length)
    if getattr(request._request, "scanbench_csrf_pending", False):
        SessionAuthentication().enforce_csrf(request)
    body = request.data  # parsed here: files over FILE_UPLOAD_MAX_MEMORY_SIZE go to disk
    if not _body_received_whole(request):
        raise SubmissionRefused(
            "The upload ended before the end of the request its Content-Length announced (the "
            "connection broke or the length was wrong); nothing was stored. Send it again.",
            code="incomplete_upload",
        )
    data = SubmissionCreateApi.InputSerializer(data=body)
    data.is_valid(raise_exception=True)
    return submission_create(
        user=user,
        phase=phase,
        file=data.validated_data["file"],
        comment=data.validated_data.get("comment", ""),
    )


def _body_received_whole(request: Request) -> bool:
    """Whether the server read as many bytes as the request's ``Content-Length`` announced.

    Django's multipart parser reads the body to its end and takes a truncated body (a client
    that disconnected mid-upload, a ``Content-Length`` larger than what was sent) as a short
    one: a file part cut before its closing boundary is dropped, a complete one kept. Counting
    the bytes the request's stream (Django's ``LimitedStream``) delivered tells them apart."""
    stream = getattr(request._request, "_stream", None)
    received, declared = getattr(stream, "_pos", None), getattr(stream, "limit", None)
    if not isinstance(received, int) or not isinstance(declared, int):
        return True
    return received >= declared


def submissions_with_evaluations(queryset: QuerySet[Submission]) -> QuerySet[Submission]:
    """``queryset`` with what the API's submission body shows: phase and challenge, every
    attempt (newest first) and its results."""
    results = Prefetch("results", queryset=Result.objects.order_by("part"))
    evaluations = Prefetch(
        "evaluations", queryset=Evaluation.objects.order_by("-attempt").prefetch_related(results)
    )
    return queryset.select_related("phase__challenge").prefetch_related(evaluations)


class SubmissionDetailApi(APIView):
    """GET: one submission with its evaluations (state, message, scores): its participant's,
    their team's, or for the organizers of its challenge; 404 for anyone else (docs/api.md)."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        operation_id="submissions_retrieve",
        responses={200: SubmissionV1Serializer, **error_responses(401, 404, 429)},
        tags=["submissions"],
    )
    def get(self, request: Request, submission_id: int) -> Response:
        submission = submission_get_for_user(user=request.user, submission_id=submission_id)
        submission = submissions_with_evaluations(Submission.objects.filter(pk=submission.pk)).get()
        return Response(SubmissionV1Serializer(submission, context={"request": request}).data)


@extend_schema(exclude=True)  # the id-addressed routes: the slug routes are documented
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
            # LeaderboardHidden (the private part before its reveal): 403 private_hidden.
            rows = leaderboard_for_phase(phase=phase, part=part, user=request.user)
        except ValueError as exc:
            raise QueryParameterInvalid(str(exc), field="part") from exc
        limit = query_int(request, "limit", default=50, low=1, high=500)
        offset = query_int(request, "offset", default=0, low=0, high=10**9)
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
