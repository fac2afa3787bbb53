"""The team page of a challenge and its POST actions (docs/teams.md). Interfaces only: the
rules are in challenges.services.teams."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from challenges.selectors import challenge_get_public
from challenges.services.teams import (
    NotJoined,
    TeamError,
    invitation_accept,
    invitation_decline,
    team_create,
    team_invite,
    team_leave,
    team_page_for_user,
)


def _page(request: HttpRequest, slug: str, *, error: str = "", status: int = 200) -> HttpResponse:
    try:
        page = team_page_for_user(user=request.user, slug=slug)
    except NotJoined:
        return redirect(reverse("challenges:join", kwargs={"slug": slug}))
    context = {"page": page, "challenge": page.challenge, "error": error}
    return render(request, "challenges/team.html", context, status=status)


class TeamView(LoginRequiredMixin, View):
    """Your team in a challenge, its members and invitations, and the forms to change them."""

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        return _page(request, slug)


def _invitation_id(request: HttpRequest) -> int:
    try:
        return int(request.POST.get("invitation", ""))
    except ValueError:
        raise TeamError("This invitation does not exist or is not yours.", status=404) from None


def _create(request: HttpRequest, challenge: Any) -> str:
    team = team_create(
        user=request.user,  # type: ignore[arg-type]
        challenge=challenge,
        name=request.POST.get("name", ""),
    )
    return f"Team '{team.name}' created; invite others by their username."


def _invite(request: HttpRequest, challenge: Any) -> str:
    invitation = team_invite(
        user=request.user,  # type: ignore[arg-type]
        challenge=challenge,
        username=request.POST.get("username", ""),
    )
    return f"{invitation.invitee.username} is invited; they accept on this page."


def _accept(request: HttpRequest, challenge: Any) -> str:
    membership = invitation_accept(
        user=request.user,  # type: ignore[arg-type]
        challenge=challenge,
        invitation_id=_invitation_id(request),
    )
    return f"You joined team '{membership.team.name}'."


def _decline(request: HttpRequest, challenge: Any) -> str:
    invitation_decline(
        user=request.user,  # type: ignore[arg-type]
        challenge=challenge,
        invitation_id=_invitation_id(request),
    )
    return "Invitation declined."


def _leave(request: HttpRequest, challenge: Any) -> str:
    deleted = team_leave(user=request.user, challenge=challenge)  # type: ignore[arg-type]
    return "You left the team" + (" and, as it was empty, it was deleted." if deleted else ".")


ACTIONS: dict[str, Callable[[HttpRequest, Any], str]] = {
    "create": _create,
    "invite": _invite,
    "accept": _accept,
    "decline": _decline,
    "leave": _leave,
}


class TeamActionView(LoginRequiredMixin, View):
    """One team action (POST, with CSRF); back to the team page with a message or the error."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str, action: str) -> HttpResponse:
        handler = ACTIONS.get(action)
        if handler is None:
            raise Http404("No such team action.")
        challenge = challenge_get_public(slug=slug)
        try:
            done = handler(request, challenge)
        except TeamError as exc:
            return _page(request, slug, error=str(exc), status=exc.status)
        messages.success(request, done)
        return redirect(reverse("challenges:team", kwargs={"slug": slug}))
