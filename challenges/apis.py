"""The REST API (DRF). API classes are interfaces only: parse, call one service or selector,
render; each nests its own serializers (HackSoft style)."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import Prefetch
from rest_framework import permissions, serializers, status
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
from challenges.services.submissions import SubmissionRefused, limits_for, submission_create


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
        fields = ["id", "phase", "kind", "sha256", "comment", "created_at"]


class PhaseLimitsApi(APIView):
    """GET: the caller's submission limits in a phase, before they submit."""

    permission_classes = [permissions.IsAuthenticated]

    def get(self, request: Request, phase_id: int) -> Response:
        phase = phase_get_public(phase_id=phase_id)
        return Response(limits_for(user=cast(User, request.user), phase=phase).to_json())


class SubmissionCreateApi(APIView):
    """POST multipart ``file`` (and optional ``comment``): submit to a phase."""

    permission_classes = [permissions.IsAuthenticated]
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer[Any]):
        file = serializers.FileField(allow_empty_file=False)
        comment = serializers.CharField(required=False, allow_blank=True, max_length=500)

    def post(self, request: Request, phase_id: int) -> Response:
        phase = phase_get_public(phase_id=phase_id)
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
            limit = min(max(int(request.query_params.get("limit", 50)), 1), 500)
            offset = max(int(request.query_params.get("offset", 0)), 0)
        except ValueError:
            return Response({"detail": "limit and offset must be integers"}, status=400)
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
