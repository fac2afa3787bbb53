"""Pages. Views are interfaces only: they call one selector or service and render."""

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.auth.views import LoginView
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.generic import TemplateView

from challenges.forms import SignupForm, ThrottledAuthenticationForm
from challenges.models import TeamMembership
from challenges.selectors import (
    LeaderboardHidden,
    challenge_get_public,
    challenge_list_public,
    leaderboard_for_phase,
    phase_get_by_slugs,
    private_leaderboard_visible,
    submission_rows_for_user,
)
from challenges.selectors_charts import leaderboard_charts
from challenges.selectors_columns import board_columns, board_primary
from challenges.selectors_taskcard import task_card_for_challenge
from challenges.services.accounts import email_verification_send
from challenges.services.leaderboards import stability_method
from challenges.services.submissions import (
    SubmissionRefused,
    limits_for,
    submission_create,
    submission_precheck,
    upload_limit_bytes,
)

# A ``next`` longer than this is not a path of this site worth following.
NEXT_MAX_CHARS = 2000


def safe_next_url(request: HttpRequest, *, default: str) -> str:
    """The ``next`` target of a request (query string or form) if it is a path on this site,
    else ``default``. Absolute and protocol-relative URLs, backslash tricks, other schemes
    (``javascript:``), control characters and overlong values all give ``default``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if (
        0 < len(target) <= NEXT_MAX_CHARS
        and target.startswith("/")
        and target.isprintable()
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return target
    return default


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
            "card": task_card_for_challenge(challenge=challenge),
        }


def _my_entrants(request: HttpRequest) -> set[str]:
    """The leaderboard entrant keys of the signed-in user: their own and their teams'."""
    user = request.user
    if not user.is_authenticated:
        return set()
    teams = TeamMembership.objects.filter(user=user).values_list("team_id", flat=True)
    return {f"user:{user.pk}", *(f"team:{t}" for t in teams)}


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
        return {
            **context,
            "page": page,
            "primary": board_primary(phase),
            "columns": board_columns(phase),
            "mine": _my_entrants(self.request),
            "charts": leaderboard_charts(phase=phase, part=part, entries=rows),
            "set_level": stability_method(phase) == "paired_bootstrap",
        }


class SignupView(View):
    template_name = "registration/signup.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        from django.shortcuts import render

        return render(request, self.template_name, {"form": SignupForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        from django.shortcuts import render

        form = SignupForm(request.POST)
        if not form.is_valid():
            return render(request, self.template_name, {"form": form}, status=400)
        user = form.save()
        login(request, user)
        # The account works at once; the address is confirmed by the mailed link.
        email_verification_send(user=user)
        return redirect(safe_next_url(request, default=reverse("challenges:list")))


class ThrottledLoginView(LoginView):
    """Django's log-in page (which already follows only safe ``next`` targets), answering 429
    with ``Retry-After`` once the username or the address has too many recent failures."""

    authentication_form = ThrottledAuthenticationForm

    def get_redirect_url(self, request: HttpRequest | None = None) -> str:
        return safe_next_url(request or self.request, default="")

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        retry_after = getattr(form, "retry_after", None)
        if retry_after is not None:
            response.status_code = 429
            response["Retry-After"] = str(retry_after)
        return response


@method_decorator(csrf_exempt, name="dispatch")  # checked in post(), after the body-free checks
class SubmitView(LoginRequiredMixin, TemplateView):
    """Upload page: the limits before submitting, the participant's submissions and their
    states (the page refreshes itself while one is still being evaluated).

    A POST is refused on the phase's state, the participant's limits and the declared size
    before its body is read; the CSRF check (which reads the body) comes after those checks.
    """

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
            "max_upload_bytes": upload_limit_bytes(phase=phase),
        }

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        phase = phase_get_by_slugs(slug=kwargs["slug"], phase_slug=kwargs["phase_slug"])
        try:
            submission_precheck(
                user=request.user,  # type: ignore[arg-type]
                phase=phase,
                content_length=_declared_length(request),
            )
        except SubmissionRefused as exc:
            messages.error(request, str(exc))
            return self.render_to_response(self.get_context_data(**kwargs), status=exc.status)
        return self._post_checked(request, phase=phase, **kwargs)

    @method_decorator(csrf_protect)
    def _post_checked(self, request: HttpRequest, *, phase: Any, **kwargs: Any) -> HttpResponse:
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


def _declared_length(request: HttpRequest) -> int | None:
    """The request's declared body size (``Content-Length``), or None if it declares none."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


ACTIVE_OR_QUEUED = ("queued", "running", "scoring")
