"""The Data page, joining a challenge, and its downloads (docs/data.md). Interfaces only: the
decisions are in challenges.selectors_data and challenges.services.data."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from challenges.models import DataFile
from challenges.selectors import challenge_get_public
from challenges.selectors_data import (
    DownloadForbidden,
    challenge_data_for_user,
    challenge_download_get_for_user,
    membership_waiting_message,
)
from challenges.services.data import TermsNotAccepted, challenge_terms, membership_join
from challenges.services.storage import public_storage, storage_download_url, storage_is_s3

CHUNK_BYTES = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class DataView(View):
    """Lists the public downloads with size and sha256; links them for members."""

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        access = challenge_data_for_user(user=request.user, slug=slug)
        return render(
            request,
            "challenges/data.html",
            {
                "access": access,
                "challenge": access.challenge,
                "code_phase": access.challenge.phases.filter(submission_kind="code").exists(),
            },
        )


class JoinView(LoginRequiredMixin, View):
    """Join a challenge: its terms and one checkbox."""

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        return _join_page(request, slug=slug)

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        challenge = challenge_get_public(slug=slug)
        try:
            membership_join(
                user=request.user,  # type: ignore[arg-type]
                challenge=challenge,
                accept_terms=request.POST.get("accept_terms") == "on",
            )
        except TermsNotAccepted as exc:
            return _join_page(request, slug=slug, error=str(exc), status=400)
        return redirect(reverse("challenges:data", kwargs={"slug": slug}))


def _join_page(
    request: HttpRequest, *, slug: str, error: str = "", status: int = 200
) -> HttpResponse:
    challenge = challenge_get_public(slug=slug)
    context = {
        "challenge": challenge,
        "terms": challenge_terms(challenge=challenge),
        "error": error,
        # joined, but the organizers have not approved the membership (yet)
        "waiting": membership_waiting_message(user=request.user, challenge=challenge),
    }
    return render(request, "challenges/join.html", context, status=status)


class DownloadView(LoginRequiredMixin, View):
    """One public file, streamed with HTTP Range support, or handed to nginx (X-Accel)."""

    def get(self, request: HttpRequest, slug: str, name: str) -> HttpResponseBase:
        try:
            datafile, path = challenge_download_get_for_user(
                user=request.user, slug=slug, name=name
            )
        except DownloadForbidden as exc:
            return _join_page(request, slug=slug, error=str(exc), status=403)
        if storage_is_s3():  # a short-lived presigned URL of the public bucket's copy
            url = storage_download_url(
                storage=public_storage(), name=f"data/{datafile.path}", filename=datafile.name
            )
            return HttpResponseRedirect(url)
        if settings.SCANBENCH_DATA_SERVING == "x-accel":
            return _accel_response(datafile)
        return _streamed_response(request, datafile, path)


def _headers(response: HttpResponseBase, datafile: DataFile) -> None:
    response["Content-Type"] = mimetypes.guess_type(datafile.name)[0] or "application/octet-stream"
    response["Content-Disposition"] = f'attachment; filename="{datafile.name}"'
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = f'"{datafile.sha256}"'
    response["X-Content-SHA256"] = datafile.sha256
    response["Cache-Control"] = "private, no-transform"


def _accel_response(datafile: DataFile) -> HttpResponse:
    """No body: nginx serves the file from its internal location (Range included)."""
    response = HttpResponse(b"")
    _headers(response, datafile)
    prefix = settings.SCANBENCH_DATA_ACCEL_PREFIX.rstrip("/")
    response["X-Accel-Redirect"] = f"{prefix}/{quote(datafile.path)}"
    return response


def parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """The single byte range ``(first, last)`` a Range header asks for; None to serve the whole
    file (no header, another unit, several ranges, bad syntax); False when unsatisfiable."""
    match = _RANGE.match(header.strip())
    if not match or (not match[1] and not match[2]):
        return None
    if not match[1]:  # a suffix: the last N bytes
        suffix = int(match[2])
        if suffix == 0 or size == 0:
            return False
        return max(size - suffix, 0), size - 1
    first = int(match[1])
    if match[2] and int(match[2]) < first:
        return None  # syntactically invalid: RFC 9110 says ignore it
    if first >= size:
        return False
    last = int(match[2]) if match[2] else size - 1
    return first, min(last, size - 1)


def _streamed_response(
    request: HttpRequest, datafile: DataFile, path: Path
) -> StreamingHttpResponse | HttpResponse:
    size = path.stat().st_size
    wanted: tuple[int, int] | bool | None = None
    header = request.headers.get("Range", "")
    if_range = request.headers.get("If-Range", "")
    if header and (not if_range or if_range.strip() == f'"{datafile.sha256}"'):
        wanted = parse_range(header, size)
    if wanted is False:
        refused = HttpResponse(status=416)
        refused["Content-Range"] = f"bytes */{size}"
        refused["Accept-Ranges"] = "bytes"
        return refused
    first, last = wanted if isinstance(wanted, tuple) else (0, size - 1)
    response = StreamingHttpResponse(_chunks(path, first, last - first + 1))
    _headers(response, datafile)
    response["Content-Length"] = str(max(last - first + 1, 0))
    if isinstance(wanted, tuple):
        response.status_code = 206
        response["Content-Range"] = f"bytes {first}-{last}/{size}"
    return response


def _chunks(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(start)
        while length > 0:
            chunk = fh.read(min(CHUNK_BYTES, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
