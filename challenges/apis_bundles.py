"""The API of challenge bundle uploads (docs/bundles.md): upload for a dry run, confirm, follow.

Interfaces only: parse, call one service, render. Errors are ``{"detail", "code"}`` like the
rest of the API; a refused bundle also lists its ``problems``."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions, serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from challenges.models import BundleUpload, BundleUploadState, Challenge
from challenges.services.bundle_uploads import (
    BundleUploadInvalid,
    BundleUploadRefused,
    bundle_upload_check,
    bundle_upload_confirm,
    bundle_upload_get_for_user,
    bundle_upload_precheck,
)
from challenges.throttles import UploadThrottle


class BundleUploadOut(serializers.ModelSerializer[BundleUpload]):
    challenge = serializers.CharField(source="challenge.slug", read_only=True)

    class Meta:
        model = BundleUpload
        fields = [
            "id", "state", "slug", "challenge", "original_name", "size", "sha256", "report",
            "progress", "message", "created_at", "finished_at",
        ]  # fmt: skip


def _error(exc: Exception, code: str, http_status: int, **extra: Any) -> Response:
    return Response({"detail": str(exc), "code": code, **extra}, status=http_status)


def _challenge_or_404(slug: str | None) -> Challenge | None:
    if not slug:
        return None
    from django.shortcuts import get_object_or_404

    return get_object_or_404(Challenge, slug=slug)


class BundleUploadCreateApi(APIView):
    """POST multipart ``file`` (a zip) and optional ``challenge`` (the slug to update, in the
    form or the query string; in the query string, a refusal comes before the upload): a dry
    run. 201 with the report when the bundle can be imported, 400 with its ``problems`` when
    not; 403 when the caller may not create (or update) that challenge."""

    permission_classes = [permissions.IsAuthenticated]
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    throttle_classes = [UploadThrottle]
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer[Any]):
        file = serializers.FileField(allow_empty_file=False)
        challenge = serializers.SlugField(required=False, allow_blank=True, max_length=64)

    def post(self, request: Request) -> Response:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or "")
        except ValueError:
            length = None
        challenge = _challenge_or_404(request.query_params.get("challenge"))
        try:
            if challenge is not None:  # answered before the body is read
                bundle_upload_precheck(user=request.user, challenge=challenge, size=length)
            data = self.InputSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            challenge = challenge or _challenge_or_404(data.validated_data.get("challenge"))
            upload = bundle_upload_check(
                user=request.user, file=data.validated_data["file"], challenge=challenge
            )
        except BundleUploadRefused as exc:
            return _error(exc, exc.code, status.HTTP_403_FORBIDDEN)
        except BundleUploadInvalid as exc:
            code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE if exc.code == "too_large" else 400
            return _error(exc, exc.code, code)
        body = dict(BundleUploadOut(upload).data)
        if upload.state == BundleUploadState.REFUSED:
            problems = upload.report.get("problems", [])
            detail = f"the bundle cannot be imported: {len(problems)} problem(s)"
            return Response(
                {**body, "detail": detail, "code": "bundle_invalid", "problems": problems},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(body, status=status.HTTP_201_CREATED)


class BundleUploadDetailApi(APIView):
    """GET: an upload's state, progress and report (its uploader and the challenge's
    organizers; 404 for anyone else)."""

    permission_classes = [permissions.IsAuthenticated]

    def get(self, request: Request, upload_id: int) -> Response:
        upload = bundle_upload_get_for_user(user=request.user, upload_id=upload_id)
        return Response(BundleUploadOut(upload).data)


class BundleUploadConfirmApi(APIView):
    """POST: import a checked upload in the background; 202, then follow it with GET."""

    permission_classes = [permissions.IsAuthenticated]

    def post(self, request: Request, upload_id: int) -> Response:
        upload = bundle_upload_get_for_user(user=request.user, upload_id=upload_id)
        try:
            upload = bundle_upload_confirm(upload=upload, user=request.user)
        except BundleUploadRefused as exc:
            return _error(exc, exc.code, status.HTTP_403_FORBIDDEN)
        except BundleUploadInvalid as exc:
            return _error(exc, exc.code, status.HTTP_409_CONFLICT)
        return Response(BundleUploadOut(upload).data, status=status.HTTP_202_ACCEPTED)
