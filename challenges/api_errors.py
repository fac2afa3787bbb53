"""One error shape for every 4xx of the API (docs/api.md):
``{"detail": "<one sentence>", "code": "<snake_case>", "field": "<name or null>"}``.

DRF calls :func:`api_exception_handler` (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``) for any
exception an API view raises. DRF's own exceptions keep their status and headers
(``WWW-Authenticate``, ``Retry-After``); the project's refusals (:class:`SubmissionRefused`,
:class:`DownloadForbidden`, :class:`LeaderboardHidden`, :class:`TermsNotAccepted`, an
organizer's :class:`OrganizerActionRefused` (409) or a non-organizer (:class:`NotOrganizer`,
404), a :class:`TeamError`, a bad query parameter) get their status and code here, so views
raise them and never build error bodies.
A Django ``Http404`` says only "Not found.": its message can name a slug or an id the caller
did not ask about, and never a storage path.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from challenges.selectors import LeaderboardHidden
from challenges.selectors_data import DownloadForbidden
from challenges.services.data import TermsNotAccepted
from challenges.services.organizers import NotOrganizer, OrganizerActionRefused
from challenges.services.submissions import SubmissionRefused
from challenges.services.teams import NotJoined, TeamError


class ApiError(exceptions.APIException):
    """A refusal with its own status, code and (optionally) the request field it is about."""

    def __init__(
        self, detail: str, *, code: str, http_status: int = 400, field: str | None = None
    ) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = http_status
        self.field = field


class QueryParameterInvalid(ApiError):
    """A query parameter is malformed or out of bounds: 400 ``invalid_parameter`` naming it."""

    code = "invalid_parameter"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail, code=self.code, http_status=400, field=field)


_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
}


def _project_exception(exc: Exception) -> Exception:
    """The project's refusals (and Django's 404/403) as DRF exceptions with a status."""
    if isinstance(exc, SubmissionRefused):
        return ApiError(str(exc), code=exc.code, http_status=exc.status)
    if isinstance(exc, DownloadForbidden):
        return ApiError(str(exc), code="not_joined", http_status=403)
    if isinstance(exc, LeaderboardHidden):
        return ApiError(str(exc), code="private_hidden", http_status=403, field="part")
    if isinstance(exc, TermsNotAccepted):
        return ApiError(str(exc), code="terms_not_accepted", http_status=400, field="accept_terms")
    if isinstance(exc, NotOrganizer):  # like the console's pages: nothing told to others
        return exceptions.NotFound("Not found.")
    if isinstance(exc, OrganizerActionRefused):
        return ApiError(_sentence(str(exc)), code="action_refused", http_status=409)
    if isinstance(exc, TeamError):
        if exc.status == 404:
            return exceptions.NotFound("Not found.")
        return ApiError(str(exc), code="team_refused", http_status=exc.status)
    if isinstance(exc, NotJoined):
        return ApiError(str(exc), code="not_joined", http_status=403)
    if isinstance(exc, Http404):
        return exceptions.NotFound("Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    return exc


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else "Refused."


def _first_error(detail: Any, field: str | None = None) -> tuple[str, str, str | None]:
    """The first message of a (possibly nested) ValidationError detail, with its code and the
    name of the field it is about (None for errors about the whole input)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = None if key == "non_field_errors" else str(key)
            return _first_error(value, field if name is None else name)
        return "Invalid input.", "invalid", field
    if isinstance(detail, list):
        if detail:
            return _first_error(detail[0], field)
        return "Invalid input.", "invalid", field
    code = getattr(detail, "code", None) or "invalid"
    return str(detail), str(code), field


def error_body(exc: exceptions.APIException) -> dict[str, Any]:
    """The API's error shape for a DRF exception."""
    if isinstance(exc, exceptions.ValidationError):
        detail, code, field = _first_error(exc.detail)
        return {"detail": detail, "code": code, "field": field}
    if isinstance(exc, ApiError):
        code = str(getattr(exc.detail, "code", "") or "invalid")
    else:
        code = next(
            (c for cls, c in _CODES.items() if isinstance(exc, cls)),
            str(getattr(exc.detail, "code", "") or exc.default_code),
        )
    body: dict[str, Any] = {
        "detail": str(exc.detail),
        "code": code,
        "field": getattr(exc, "field", None),
    }
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        body["retry_after"] = max(1, round(wait))
    return body


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (status, headers, rollback) with the body in the API's one error shape.
    Anything else (a server error) is left to Django: a 500 that names nothing inside."""
    exc = _project_exception(exc)
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    response.data = error_body(exc)
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS and "Retry-After" not in response:
        response["Retry-After"] = str(response.data.get("retry_after", 60))
    return response
