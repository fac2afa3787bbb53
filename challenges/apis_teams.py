"""Teams in the API (docs/api.md, "Teams"), under ``/api/challenges/<slug>/team/``: the caller's
own team and the invitations to them, never another team's. Interfaces only: the rules are in
challenges.services.teams, whose refusals (``TeamError``: 400 ``team_refused``, or 404 for an
invitation that is not the caller's; ``NotJoined``: 403 ``not_joined``) challenges.api_errors
renders in the API's one error shape."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from challenges.models import Challenge
from challenges.selectors import challenge_get_public
from challenges.serializers_v1 import (
    InvitationSerializer,
    TeamInSerializer,
    TeamLeaveOutSerializer,
    TeamPageSerializer,
    UsernameInSerializer,
    error_responses,
)
from challenges.services.teams import (
    NotJoined,
    invitation_accept,
    invitation_decline,
    team_create,
    team_invite,
    team_leave,
    team_page_for_user,
    user_has_joined,
)

TAGS = ["teams"]
WRITE_ERRORS = (400, 401, 403, 404, 415, 429)


class _TeamApi(APIView):
    """Authenticated callers (401 otherwise) who joined the published challenge (404 for an
    unknown or unpublished one, 403 ``not_joined`` before joining)."""

    permission_classes = [permissions.IsAuthenticated]
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    challenge: Challenge

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.challenge = challenge_get_public(slug=kwargs["slug"])
        if not user_has_joined(user=request.user, challenge=self.challenge):
            raise NotJoined(f"Join '{self.challenge.title}' to form or join a team.")

    @property
    def user(self) -> User:
        return cast(User, self.request.user)

    def page(self, status_code: int = status.HTTP_200_OK) -> Response:
        page = team_page_for_user(user=self.user, slug=self.challenge.slug)
        team = None
        if page.team is not None:
            team = {
                "name": page.team.name,
                "slug": page.team.slug,
                "members": [m.username for m in page.members],
                "invitations_sent": page.sent,
            }
        body = TeamPageSerializer({"team": team, "invitations": page.received}).data
        return Response(body, status=status_code)


def _body(serializer_class: type, request: Request) -> dict[str, Any]:
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    validated: dict[str, Any] = data.validated_data
    return validated


class TeamApi(_TeamApi):
    """GET: the caller's team (members, invitations it sent) and the invitations to the caller.
    POST ``{"name"}``: create a team with the caller as its first member."""

    @extend_schema(
        operation_id="team_retrieve",
        responses={200: TeamPageSerializer, **error_responses(401, 403, 404, 429)},
        tags=TAGS,
    )
    def get(self, request: Request, slug: str) -> Response:
        return self.page()

    @extend_schema(
        operation_id="team_create",
        request=TeamInSerializer,
        responses={201: TeamPageSerializer, **error_responses(*WRITE_ERRORS)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _body(TeamInSerializer, request)
        team_create(user=self.user, challenge=self.challenge, name=data["name"])
        return self.page(status.HTTP_201_CREATED)


class TeamInviteApi(_TeamApi):
    """POST ``{"username"}``: invite a participant to the caller's team."""

    @extend_schema(
        operation_id="team_invite",
        request=UsernameInSerializer,
        responses={201: InvitationSerializer, **error_responses(*WRITE_ERRORS)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _body(UsernameInSerializer, request)
        invitation = team_invite(
            user=self.user, challenge=self.challenge, username=data["username"]
        )
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)


_INVITATION_SCHEMA: dict[str, Any] = {
    "request": None,
    "responses": {200: TeamPageSerializer, **error_responses(400, 401, 403, 404, 429)},
    "tags": TAGS,
}


class InvitationAcceptApi(_TeamApi):
    """POST: join the team that invited the caller (the invitation is used up)."""

    @extend_schema(operation_id="team_invitation_accept", **_INVITATION_SCHEMA)
    def post(self, request: Request, slug: str, invitation_id: int) -> Response:
        invitation_accept(user=self.user, challenge=self.challenge, invitation_id=invitation_id)
        return self.page()


class InvitationDeclineApi(_TeamApi):
    """POST: decline (delete) an invitation to the caller."""

    @extend_schema(operation_id="team_invitation_decline", **_INVITATION_SCHEMA)
    def post(self, request: Request, slug: str, invitation_id: int) -> Response:
        invitation_decline(user=self.user, challenge=self.challenge, invitation_id=invitation_id)
        return self.page()


class TeamLeaveApi(_TeamApi):
    """POST: leave the caller's team; the last member to leave a team without submissions
    deletes it."""

    @extend_schema(
        operation_id="team_leave",
        request=None,
        responses={200: TeamLeaveOutSerializer, **error_responses(400, 401, 403, 404, 429)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        deleted = team_leave(user=self.user, challenge=self.challenge)
        return Response({"left": True, "team_deleted": deleted})
