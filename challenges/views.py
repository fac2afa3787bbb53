"""Pages. Views are interfaces only: they call one selector or service and render."""

from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.generic import TemplateView

from challenges.selectors import (
    challenge_class_balance,
    challenge_get_public,
    challenge_list_public,
)


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


class ChallengeListView(TemplateView):
    template_name = "challenges/challenge_list.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "challenges": challenge_list_public()}


class ChallengeDetailView(TemplateView):
    template_name = "challenges/challenge_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        challenge = challenge_get_public(slug=kwargs["slug"])
        return {
            **super().get_context_data(**kwargs),
            "challenge": challenge,
            "phases": challenge.phases.all(),
            "balance": challenge_class_balance(challenge=challenge),
        }
