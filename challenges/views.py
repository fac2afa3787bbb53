"""Pages. Views are interfaces only: they call one selector or service and render."""

from typing import Any

from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.generic import TemplateView

from challenges.selectors import (
    LeaderboardHidden,
    challenge_class_balance,
    challenge_get_public,
    challenge_list_public,
    leaderboard_for_phase,
    phase_get_by_slugs,
    private_leaderboard_visible,
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


class LeaderboardView(TemplateView):
    """A phase's leaderboard: scores with intervals, rank intervals, tiers, baselines marked."""

    template_name = "challenges/leaderboard.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        phase = phase_get_by_slugs(slug=kwargs["slug"], phase_slug=kwargs["phase_slug"])
        part = self.request.GET.get("part", "public")
        if part not in ("public", "private"):
            part = "public"
        context = {
            **super().get_context_data(**kwargs),
            "phase": phase,
            "challenge": phase.challenge,
            "part": part,
            "private_visible": private_leaderboard_visible(user=self.request.user, phase=phase),
            "hidden": False,
        }
        try:
            rows = leaderboard_for_phase(phase=phase, part=part, user=self.request.user)
        except LeaderboardHidden as exc:
            return {**context, "hidden": str(exc), "page": None}
        page = Paginator(rows, 50).get_page(self.request.GET.get("page"))
        return {**context, "page": page, "metrics": phase.metrics}
