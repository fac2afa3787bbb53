"""The documented API v1, addressed by slugs (docs/api.md). Interfaces only: parse, call the
selectors and services the pages use, render with challenges.serializers_v1. Every 4xx comes
from challenges.api_errors in one shape, so these views raise and never build error bodies."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.db.models import Q
from django.http import HttpResponseBase, HttpResponsePermanentRedirect
from django.urls import Resolver404, resolve, reverse
from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from challenges import views_data, views_exports
from challenges.api_errors import ApiError, QueryParameterInvalid
from challenges.apis import (
    _SessionAuthenticationCsrfLater,
    query_int,
    submission_create_from_request,
    submissions_with_evaluations,
)
from challenges.models import ChallengeMembership, Submission
from challenges.selectors import (
    challenge_get_public,
    challenge_list_public,
    leaderboard_for_phase,
    phase_get_by_slugs,
)
from challenges.selectors_columns import board_hidden_keys
from challenges.selectors_data import (
    DownloadForbidden,
    challenge_data_for_user,
    challenge_download_get_for_user,
)
from challenges.selectors_taskcard import task_card_for_challenge
from challenges.serializers_v1 import (
    ChallengeDetailSerializer,
    ChallengeListSerializer,
    DataListSerializer,
    JoinInSerializer,
    JoinOutSerializer,
    LeaderboardSerializer,
    PhaseDetailSerializer,
    SubmissionInSerializer,
    SubmissionListSerializer,
    SubmissionV1Serializer,
    TokenInSerializer,
    TokenOutSerializer,
    error_responses,
)
from challenges.services.accounts import api_token_for, api_token_rotate
from challenges.services.data import challenge_terms, membership_join, terms_digest
from challenges.services.login_throttle import (
    client_address,
    login_failure_record,
    login_failures_forget,
    login_refused_for,
)
from challenges.services.submissions import limits_for
from challenges.throttles import TokenObtainThrottle, UploadThrottle

LIST_PARAMETERS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 500 (default 50)"),
    OpenApiParameter("offset", OpenApiTypes.INT, description="0 or more (default 0)"),
]


def _page(request: Request) -> tuple[int, int]:
    limit = query_int(request, "limit", default=50, low=1, high=500)
    offset = query_int(request, "offset", default=0, low=0, high=10**9)
    return limit, offset


class _FileView(APIView):
    """A view whose answer is a file (a download, a CSV): whatever the client accepts, its
    refusals are JSON in the API's error shape, and no ``Accept`` makes it a 406."""

    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        return JSONRenderer(), JSONRenderer.media_type


# --- token ------------------------------------------------------------------------------------


class TokenObtainApi(APIView):
    """POST username and password: the user's API token (created on first use).

    Throttled per client address (``SCANBENCH_API_TOKEN_RATE``) and by the log-in page's
    failed-attempt counters (challenges.services.login_throttle), so the token endpoint is no
    way around the log-in throttle."""

    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [TokenObtainThrottle]
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        operation_id="token_obtain",
        request=TokenInSerializer,
        responses={200: TokenOutSerializer, **error_responses(400, 415, 429)},
        auth=[],
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        data = TokenInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username = data.validated_data["username"]
        address = client_address(request.META)
        wait = login_refused_for(username=username, address=address)
        if wait is not None:
            raise Throttled(wait=wait, detail="Too many failed log-in attempts.")
        user = authenticate(
            request._request, username=username, password=data.validated_data["password"]
        )
        if user is None:
            login_failure_record(username=username, address=address)
            raise ApiError(
                "The username or password is wrong.", code="invalid_credentials", field=None
            )
        login_failures_forget(username=username)
        token = api_token_for(user=user) or api_token_rotate(user=user)
        return Response({"token": token.key, "username": user.get_username()})


# --- challenges -------------------------------------------------------------------------------


class ChallengeListApi(APIView):
    """GET: the published challenges with their phases."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="challenges_list",
        parameters=LIST_PARAMETERS,
        responses={200: ChallengeListSerializer, **error_responses(400, 401, 429)},
        tags=["challenges"],
    )
    def get(self, request: Request) -> Response:
        limit, offset = _page(request)
        challenges = challenge_list_public().prefetch_related("phases")
        page = list(challenges[offset : offset + limit])
        return Response(
            ChallengeListSerializer(
                {"count": challenges.count(), "results": page}, context={"request": request}
            ).data
        )


class ChallengeDetailApi(APIView):
    """GET: a challenge, its task card, its phases and the caller's membership."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="challenges_retrieve",
        responses={200: ChallengeDetailSerializer, **error_responses(401, 404, 429)},
        tags=["challenges"],
    )
    def get(self, request: Request, slug: str) -> Response:
        challenge = challenge_get_public(slug=slug)
        membership = None
        if request.user.is_authenticated:
            membership = ChallengeMembership.objects.filter(
                challenge=challenge, user_id=request.user.pk
            ).first()
        context = {
            "request": request,
            "terms": challenge_terms(challenge=challenge),
            "joined": membership is not None
            and membership.terms_accepted_at is not None
            and membership.terms_sha256 == terms_digest(challenge=challenge),
            "membership_status": membership.status if membership is not None else None,
            "task_card": task_card_for_challenge(challenge=challenge),
        }
        return Response(ChallengeDetailSerializer(challenge, context=context).data)


class JoinApi(APIView):
    """POST ``{"accept_terms": true}``: join the challenge accepting its current terms."""

    permission_classes = [permissions.IsAuthenticated]
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        operation_id="challenges_join",
        request=JoinInSerializer,
        responses={200: JoinOutSerializer, **error_responses(400, 401, 403, 404, 415, 429)},
        tags=["challenges"],
    )
    def post(self, request: Request, slug: str) -> Response:
        challenge = challenge_get_public(slug=slug)
        data = JoinInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = membership_join(
            user=cast(User, request.user),
            challenge=challenge,
            accept_terms=data.validated_data["accept_terms"],
        )
        return Response({"joined": True, "status": membership.status})


# --- data -------------------------------------------------------------------------------------


class DataListApi(APIView):
    """GET: the challenge's public files, for members who accepted the current terms."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        operation_id="challenges_data_list",
        responses={200: DataListSerializer, **error_responses(401, 403, 404, 429)},
        tags=["data"],
    )
    def get(self, request: Request, slug: str) -> Response:
        access = challenge_data_for_user(user=request.user, slug=slug)
        if not access.can_download:
            raise DownloadForbidden(access.challenge, access.waiting)
        files = [
            {
                "name": f.name,
                "description": f.description,
                "size": f.size,
                "sha256": f.sha256,
                "url": request.build_absolute_uri(
                    reverse("challenges:api-v1-data-file", kwargs={"slug": slug, "name": f.name})
                ),
            }
            for f in access.files
        ]
        return Response(DataListSerializer({"files": files}).data)


class DataDownloadApi(_FileView):
    """GET: one public file, streamed with HTTP Range support (the Data tab's download)."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        operation_id="challenges_data_download",
        parameters=[OpenApiParameter("Range", OpenApiTypes.STR, OpenApiParameter.HEADER)],
        responses={
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The file."),
            (206, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The range asked."),
            (416, "*/*"): OpenApiResponse(description="Unsatisfiable range: no body."),
            **error_responses(401, 403, 404, 429),
        },
        tags=["data"],
    )
    def get(self, request: Request, slug: str, name: str) -> HttpResponseBase:
        datafile, path = challenge_download_get_for_user(user=request.user, slug=slug, name=name)
        if settings.SCANBENCH_DATA_SERVING == "x-accel":
            return views_data._accel_response(datafile)
        return views_data._streamed_response(request._request, datafile, path)


# --- phases and submissions ---------------------------------------------------------------------


class PhaseDetailApi(APIView):
    """GET: a phase, its metrics and limits, and the caller's submissions used and left."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="phases_retrieve",
        responses={200: PhaseDetailSerializer, **error_responses(401, 404, 429)},
        tags=["phases"],
    )
    def get(self, request: Request, slug: str, phase: str) -> Response:
        found = phase_get_by_slugs(slug=slug, phase_slug=phase)
        limits = None
        if request.user.is_authenticated:
            limits = limits_for(user=request.user, phase=found)
        context = {"request": request, "limits": limits}
        return Response(PhaseDetailSerializer(found, context=context).data)


class PhaseSubmissionsApi(APIView):
    """GET: the caller's (and their team's) submissions to a phase. POST multipart ``file``
    (and ``comment``): submit; the phase's state, the caller's limits and the declared
    ``Content-Length`` are checked before the body is read."""

    permission_classes = [permissions.IsAuthenticated]
    authentication_classes = [TokenAuthentication, _SessionAuthenticationCsrfLater]
    parser_classes = [MultiPartParser, FormParser]

    def get_throttles(self) -> list[Any]:
        throttles = super().get_throttles()
        if self.request.method == "POST":
            throttles.append(UploadThrottle())
        return throttles

    @extend_schema(
        operation_id="phases_submissions_list",
        parameters=LIST_PARAMETERS,
        responses={200: SubmissionListSerializer, **error_responses(400, 401, 404, 429)},
        tags=["submissions"],
    )
    def get(self, request: Request, slug: str, phase: str) -> Response:
        found = phase_get_by_slugs(slug=slug, phase_slug=phase)
        limit, offset = _page(request)
        user = request.user
        own = (
            Submission.objects.filter(phase=found)
            .filter(Q(participant_id=user.pk) | Q(team__members=user.pk))
            .distinct()
            .order_by("-created_at", "-pk")
        )
        page = list(submissions_with_evaluations(own)[offset : offset + limit])
        body = {"count": own.count(), "results": page}
        return Response(SubmissionListSerializer(body, context={"request": request}).data)

    @extend_schema(
        operation_id="phases_submissions_create",
        request={"multipart/form-data": SubmissionInSerializer},
        responses={
            201: SubmissionV1Serializer,
            **error_responses(400, 401, 403, 404, 413, 415, 429),
        },
        tags=["submissions"],
    )
    def post(self, request: Request, slug: str, phase: str) -> Response:
        found = phase_get_by_slugs(slug=slug, phase_slug=phase)
        submission = submission_create_from_request(request, phase=found)
        submission = submissions_with_evaluations(Submission.objects.filter(pk=submission.pk)).get()
        body = SubmissionV1Serializer(submission, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)


class PhaseLeaderboardApi(APIView):
    """GET ``?part=public|private&limit=&offset=``: the phase's materialized leaderboard."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="phases_leaderboard",
        parameters=[
            OpenApiParameter("part", OpenApiTypes.STR, enum=["public", "private"]),
            *LIST_PARAMETERS,
        ],
        responses={200: LeaderboardSerializer, **error_responses(400, 401, 403, 404, 429)},
        tags=["leaderboards"],
    )
    def get(self, request: Request, slug: str, phase: str) -> Response:
        found = phase_get_by_slugs(slug=slug, phase_slug=phase)
        part = _part(request)
        rows = leaderboard_for_phase(phase=found, part=part, user=request.user)
        limit, offset = _page(request)
        body = {
            "count": rows.count(),
            "part": part,
            "metric": found.primary_metric,
            "direction": found.primary_direction,
            "results": list(rows[offset : offset + limit]),
        }
        hidden = board_hidden_keys(found)
        return Response(LeaderboardSerializer(body, context={"hidden_columns": hidden}).data)


class PhaseLeaderboardCsvApi(_FileView):
    """GET ``?part=``: the leaderboard as CSV, the same file as the page's download."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="phases_leaderboard_csv",
        parameters=[OpenApiParameter("part", OpenApiTypes.STR, enum=["public", "private"])],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            **error_responses(400, 401, 403, 404, 429),
        },
        tags=["leaderboards"],
    )
    def get(self, request: Request, slug: str, phase: str) -> HttpResponseBase:
        found = phase_get_by_slugs(slug=slug, phase_slug=phase)
        # Refusals first, in the API's error shape; the CSV itself is the page's.
        leaderboard_for_phase(phase=found, part=_part(request), user=request.user)
        return views_exports.leaderboard_csv(request._request, slug, phase)


def _part(request: Request) -> str:
    part = request.query_params.get("part") or "public"
    if part not in ("public", "private"):
        raise QueryParameterInvalid("part must be public or private", field="part")
    return part


def _resolves_to_an_endpoint(path: str) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.url_name != "api-not-found"


@extend_schema(exclude=True)
class ApiNotFound(APIView):
    """Any other path under /api/: 404 in the API's error shape, not the site's HTML page."""

    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]

    def _not_found(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # What Django's APPEND_SLASH did before this route caught every /api/ path: a GET of
        # an endpoint without its final slash is redirected; other methods are told.
        slashed = f"{request.path}/"
        if not request.path.endswith("/") and _resolves_to_an_endpoint(slashed):
            if request.method in ("GET", "HEAD"):
                query = request.META.get("QUERY_STRING", "")
                return HttpResponsePermanentRedirect(f"{slashed}?{query}" if query else slashed)
            raise NotFound(f"Not found. The path ends with a slash: {slashed}")
        raise NotFound("Not found.")

    http_method_names = ["get", "post", "put", "patch", "delete", "head"]
    get = post = put = patch = delete = head = _not_found


# --- the schema of views outside this module ---------------------------------------------------


class _SessionCsrfLaterScheme(SessionScheme):  # type: ignore[no-untyped-call]
    """The upload views' session authentication (CSRF checked after the prechecks): the
    site's session cookie, like ``cookieAuth``."""

    target_class = "challenges.apis._SessionAuthenticationCsrfLater"
    name = "cookieAuthUploads"


class _BundleUploadCreateSchema(OpenApiViewExtension):  # type: ignore[no-untyped-call]
    target_class = "challenges.apis_bundles.BundleUploadCreateApi"

    def view_replacement(self) -> type[APIView]:
        from challenges.apis_bundles import BundleUploadCreateApi, BundleUploadOut

        class Fixed(self.target_class):  # type: ignore[name-defined,misc]
            @extend_schema(
                operation_id="bundles_create",
                parameters=[OpenApiParameter("challenge", OpenApiTypes.STR)],
                request={"multipart/form-data": BundleUploadCreateApi.InputSerializer},
                responses={
                    201: BundleUploadOut,
                    **error_responses(400, 401, 403, 404, 413, 415, 429),
                },
                tags=["bundles"],
            )
            def post(self, request: Request) -> Response:
                return super().post(request)  # type: ignore[no-any-return]

        return Fixed


class _BundleUploadDetailSchema(OpenApiViewExtension):  # type: ignore[no-untyped-call]
    target_class = "challenges.apis_bundles.BundleUploadDetailApi"

    def view_replacement(self) -> type[APIView]:
        from challenges.apis_bundles import BundleUploadOut

        class Fixed(self.target_class):  # type: ignore[name-defined,misc]
            @extend_schema(
                operation_id="bundles_retrieve",
                responses={200: BundleUploadOut, **error_responses(401, 404, 429)},
                tags=["bundles"],
            )
            def get(self, request: Request, upload_id: int) -> Response:
                return super().get(request, upload_id)  # type: ignore[no-any-return]

        return Fixed


class _BundleUploadConfirmSchema(OpenApiViewExtension):  # type: ignore[no-untyped-call]
    target_class = "challenges.apis_bundles.BundleUploadConfirmApi"

    def view_replacement(self) -> type[APIView]:
        from challenges.apis_bundles import BundleUploadOut

        class Fixed(self.target_class):  # type: ignore[name-defined,misc]
            @extend_schema(
                operation_id="bundles_confirm",
                request=None,
                responses={202: BundleUploadOut, **error_responses(401, 403, 404, 409, 429)},
                tags=["bundles"],
            )
            def post(self, request: Request, upload_id: int) -> Response:
                return super().post(request, upload_id)  # type: ignore[no-any-return]

        return Fixed
