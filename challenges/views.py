"""Pages. Views are interfaces only: they call one selector or service and render."""

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views import View
from django.views.generic import TemplateView

from challenges.selectors import (
    LeaderboardHidden,
    challenge_class_balance,
    challenge_get_public,
    challenge_list_public,
    leaderboard_for_phase,
    phase_get_by_slugs,
    private_leaderboard_visible,
    submission_rows_for_user,
)
from challenges.services.submissions import SubmissionRefused, limits_for, submission_create


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


class SignupView(View):
    template_name = "registration/signup.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        from django.shortcuts import render

        return render(request, self.template_name, {"form": UserCreationForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        from django.shortcuts import render

        form: UserCreationForm[Any] = UserCreationForm(request.POST)
        if not form.is_valid():
            return render(request, self.template_name, {"form": form}, status=400)
        user = form.save()
        login(request, user)
        return redirect(request.GET.get("next") or reverse("challenges:list"))


class SubmitView(LoginRequiredMixin, TemplateView):
    """Upload page: the limits before submitting, the participant's submissions and their
    states (the page refreshes itself while one is still being evaluated)."""

    template_name = "challenges/submit.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        phase = phase_get_by_slugs(slug=kwargs["slug"], phase_slug=kwargs["phase_slug"])
        rows = submission_rows_for_user(user=self.request.user, phase=phase)
        pending = any(r["evaluation"] and r["evaluation"].state in ACTIVE_OR_QUEUED for r in rows)
        return {
            **super().get_context_data(**kwargs),
            "phase": phase,
            "challenge": phase.challenge,
            "limits": limits_for(user=self.request.user, phase=phase),  # type: ignore[arg-type]
            "rows": rows,
            "pending": pending,
            "is_open": phase.is_open(),
        }

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        phase = phase_get_by_slugs(slug=kwargs["slug"], phase_slug=kwargs["phase_slug"])
        upload = request.FILES.get("file")
        if upload is None:
            messages.error(request, "Choose a file to submit.")
            return self.render_to_response(self.get_context_data(**kwargs), status=400)
        try:
            submission_create(
                user=request.user,  # type: ignore[arg-type]
                phase=phase,
                file=upload,
                comment=request.POST.get("comment", ""),
            )
        except SubmissionRefused as exc:
            messages.error(request, str(exc))
            return self.render_to_response(self.get_context_data(**kwargs), status=exc.status)
        messages.success(request, "Submitted. Its evaluation has been queued.")
        return HttpResponseRedirect(request.path)


ACTIVE_OR_QUEUED = ("queued", "running", "scoring")
