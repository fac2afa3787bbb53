"""The organizer console (docs/organizers.md): server-rendered pages under
``/challenges/<slug>/console/`` and the list at ``/organize/``.

Interfaces only. Each page fetches its challenge through
:func:`challenges.selectors_console.challenge_get_for_organizer` (404 to anyone who does not
organize it; anonymous visitors are sent to log in), and each POST calls one service of
:mod:`challenges.services.organizers`, shows its refusal as an error or its outcome as a
success message, and redirects (POST/redirect/GET)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.urls import NoReverseMatch, reverse
from django.views.generic import TemplateView

from challenges.models import Challenge, EvaluationState, ExclusionKind, MembershipStatus
from challenges.selectors_console import (
    SUBMISSIONS_PER_PAGE,
    announcements_for,
    cases_export_rows,
    challenge_get_for_organizer,
    challenges_organized_by,
    console_members,
    console_overview,
    console_submission,
    console_submissions,
    exclusion_get_for_console,
    membership_get_for_console,
    phase_get_for_console,
    results_export_rows,
    submission_rows,
    user_may_organize,
)
from challenges.services import organizers

DATETIME_INPUT = "%Y-%m-%dT%H:%M"


# --- helpers -------------------------------------------------------------------------------------


class ConsoleMixin(LoginRequiredMixin):
    """Anonymous visitors go to the log-in page; everyone who does not organize the challenge
    gets 404 before anything else happens (GET or POST)."""

    challenge: Challenge
    request: HttpRequest
    console_tab = ""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.challenge = challenge_get_for_organizer(user=request.user, slug=kwargs["slug"])
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context_data(**kwargs)  # type: ignore[misc]
        return {**context, "challenge": self.challenge, "console_tab": self.console_tab}

    def act(self, action: Callable[[], Any], success: str | Callable[[Any], str]) -> HttpResponse:
        """Run one service call; its refusal becomes an error message. Back to the page."""
        try:
            outcome = action()
        except organizers.NotOrganizer as exc:  # removed from the organizers meanwhile
            raise Http404(str(exc)) from exc
        except organizers.OrganizerActionRefused as exc:
            messages.error(self.request, _sentence(str(exc)))
        else:
            messages.success(self.request, success(outcome) if callable(success) else success)
        return HttpResponseRedirect(self.request.get_full_path())

    def refuse(self, message: str) -> HttpResponse:
        messages.error(self.request, message)
        return HttpResponseRedirect(self.request.get_full_path())


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text


class PhaseForm(forms.Form):
    """Dates (UTC, minutes) and limits of a phase; empty fields keep their value."""

    opens_at = forms.DateTimeField(input_formats=[DATETIME_INPUT], required=False)
    closes_at = forms.DateTimeField(input_formats=[DATETIME_INPUT], required=False)
    never_closes = forms.BooleanField(required=False)
    daily_limit = forms.IntegerField(min_value=0, required=False)
    total_limit = forms.IntegerField(min_value=0, required=False)

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        for name in ("opens_at", "closes_at"):
            if data.get(name) is not None:
                data[name] = data[name].replace(tzinfo=UTC)  # the form's times are UTC
        return data


def _form_errors(form: forms.Form) -> str:
    parts = []
    for name, errors in form.errors.items():
        label = name.replace("_", " ") if name != "__all__" else ""
        text = " ".join(str(e) for e in errors)
        parts.append(f"{label}: {text}" if label else text)
    return "; ".join(parts)


# --- /organize/ ----------------------------------------------------------------------------------


class OrganizeHomeView(LoginRequiredMixin, TemplateView):
    """The challenges the user organizes, published or not, each linking its console."""

    template_name = "challenges/console/home.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.user.is_authenticated and not user_may_organize(user=request.user):
            raise Http404("You organize no challenge")
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        new_url = ""
        try:
            new_url = reverse("challenges:bundle-new")
        except NoReverseMatch:  # the upload page is not there (yet)
            new_url = ""
        return {
            **super().get_context_data(**kwargs),
            "challenges": challenges_organized_by(user=self.request.user),
            "new_url": new_url if self.request.user.has_perm("challenges.add_challenge") else "",
        }


# --- the overview --------------------------------------------------------------------------------


class ConsoleOverviewView(ConsoleMixin, TemplateView):
    """Publication, co-organizers, phases and their actions, and the audit log."""

    template_name = "challenges/console/overview.html"
    console_tab = "overview"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        overview = console_overview(challenge=self.challenge)
        return {**super().get_context_data(**kwargs), **overview}

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        action = request.POST.get("action", "")
        user, challenge = request.user, self.challenge
        if action in ("publish", "unpublish"):
            published = action == "publish"
            return self.act(
                lambda: organizers.challenge_set_published(
                    challenge=challenge, user=user, published=published
                ),
                "The challenge is published: everyone sees it."
                if published
                else "The challenge is unpublished: only its organizers see it.",
            )
        if action == "licence":
            licence = request.POST.get("licence", "")
            attribution = request.POST.get("attribution", "")
            return self.act(
                lambda: organizers.challenge_set_licence(
                    challenge=challenge, user=user, licence=licence, attribution=attribution
                ),
                "The data's licence and attribution are saved.",
            )
        if action == "organizer_add":
            username = request.POST.get("username", "")
            return self.act(
                lambda: organizers.organizer_add(challenge=challenge, user=user, username=username),
                lambda other: f"{other} is now a co-organizer of this challenge.",
            )
        if action == "organizer_remove":
            username = request.POST.get("username", "")
            return self.act(
                lambda: organizers.organizer_remove(
                    challenge=challenge, user=user, username=username
                ),
                f"{username} is no longer an organizer of this challenge.",
            )
        phase = phase_get_for_console(challenge=challenge, phase_id=request.POST.get("phase"))
        if action == "phase_open":
            return self.act(
                lambda: organizers.phase_open_now(phase=phase, user=user),
                f"{phase.title} is open.",
            )
        if action == "phase_close":
            return self.act(
                lambda: organizers.phase_close_now(phase=phase, user=user),
                f"{phase.title} is closed: no more submissions.",
            )
        if action == "phase_update":
            form = PhaseForm(request.POST)
            if not form.is_valid():
                return self.refuse(f"{phase.title} was not changed: {_form_errors(form)}.")
            data = form.cleaned_data
            return self.act(
                lambda: organizers.phase_update(
                    phase=phase,
                    user=user,
                    opens_at=data["opens_at"],
                    closes_at=data["closes_at"],
                    clear_close=data["never_closes"],
                    daily_limit=data["daily_limit"],
                    total_limit=data["total_limit"],
                ),
                f"{phase.title}: dates and limits saved.",
            )
        if action == "phase_reevaluate":
            return self.act(
                lambda: organizers.phase_reevaluate_as_organizer(phase=phase, user=user),
                lambda n: (
                    f"{n} submission(s) of {phase.title} queued for re-evaluation; "
                    "the earlier attempts are kept."
                ),
            )
        if action == "phase_baselines":
            return self.act(
                lambda: organizers.phase_baselines_add(phase=phase, user=user),
                lambda done: (
                    f"The baselines of {phase.title} are training in the background; they "
                    "appear on the leaderboard as they finish."
                    if done.background
                    else f"{done.added} baseline(s) queued for scoring in {phase.title}"
                    + ("." if done.added else " (they were all there already).")
                ),
            )
        if action == "private_publish":
            return self.act(
                lambda: organizers.private_leaderboard_publish(phase=phase, user=user),
                f"The private leaderboard of {phase.title} is published: everyone sees the "
                "final standings.",
            )
        return self.refuse(f"Unknown action '{action[:40]}'.")


# --- submissions ---------------------------------------------------------------------------------


class ConsoleSubmissionsView(ConsoleMixin, TemplateView):
    template_name = "challenges/console/submissions.html"
    console_tab = "submissions"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        get = self.request.GET
        filters: dict[str, Any] = {
            "phase": get.get("phase", ""),
            "state": get.get("state", ""),
            "q": get.get("q", "")[:100],
            "failures": get.get("failures") == "on",
        }
        rows = console_submissions(
            challenge=self.challenge,
            phase_slug=filters["phase"],
            state=filters["state"],
            search=filters["q"],
            failures_only=filters["failures"],
        )
        page = Paginator(rows, SUBMISSIONS_PER_PAGE).get_page(get.get("page"))
        query = get.copy()
        query.pop("page", None)
        return {
            **super().get_context_data(**kwargs),
            "filters": filters,
            "phases": self.challenge.phases.order_by("opens_at"),
            "states": EvaluationState.choices,
            "page": page,
            "rows": submission_rows(submissions=list(page.object_list)),
            "query": query.urlencode(),
        }


class ConsoleSubmissionView(ConsoleMixin, TemplateView):
    template_name = "challenges/console/submission.html"
    console_tab = "submissions"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        view = console_submission(challenge=self.challenge, submission_id=kwargs["pk"])
        return {
            **super().get_context_data(**kwargs),
            "view": view,
            "submission": view.submission,
            "phase": view.submission.phase,
        }

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        view = console_submission(challenge=self.challenge, submission_id=kwargs["pk"])
        submission, user = view.submission, request.user
        action = request.POST.get("action", "")
        reason = request.POST.get("reason", "")
        if action == "reevaluate":
            return self.act(
                lambda: organizers.submission_reevaluate_as_organizer(
                    submission=submission, user=user
                ),
                f"Submission #{submission.pk} queued for re-evaluation; the earlier attempt "
                "is kept.",
            )
        if action == "hide":
            return self.act(
                lambda: organizers.submission_hide(submission=submission, user=user, reason=reason),
                f"Submission #{submission.pk} is hidden from the leaderboard.",
            )
        if action == "disqualify":
            if submission.is_baseline:
                return self.refuse("A baseline has no entrant to disqualify: hide it instead.")
            team = submission.team
            participant = None if team is not None else submission.participant
            return self.act(
                lambda: organizers.entrant_disqualify(
                    phase=submission.phase,
                    user=user,
                    reason=reason,
                    participant=participant,
                    team=team,
                ),
                f"{view.entrant} is disqualified from {submission.phase.title}.",
            )
        if action == "lift":
            exclusion = exclusion_get_for_console(
                challenge=self.challenge, exclusion_id=request.POST.get("exclusion")
            )
            what = "hiding" if exclusion.kind == ExclusionKind.HIDDEN else "disqualification"
            return self.act(
                lambda: organizers.exclusion_lift(exclusion=exclusion, user=user),
                f"The {what} is lifted: the entry counts again.",
            )
        return self.refuse(f"Unknown action '{action[:40]}'.")


# --- participants and announcements --------------------------------------------------------------


class ConsoleParticipantsView(ConsoleMixin, TemplateView):
    template_name = "challenges/console/participants.html"
    console_tab = "participants"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        members = console_members(challenge=self.challenge)
        page = Paginator(members, 100).get_page(self.request.GET.get("page"))
        return {
            **super().get_context_data(**kwargs),
            "page": page,
            "n_pending": members.filter(status=MembershipStatus.PENDING).count(),
        }

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        action = request.POST.get("action", "")
        user, challenge = request.user, self.challenge
        if action == "requires_approval":
            required = request.POST.get("required") == "on"
            return self.act(
                lambda: organizers.challenge_set_requires_approval(
                    challenge=challenge, user=user, required=required
                ),
                "Joining now needs your approval."
                if required
                else "Joining no longer needs your approval.",
            )
        if action in ("approve", "reject"):
            membership = membership_get_for_console(
                challenge=challenge, membership_id=request.POST.get("membership")
            )
            approve = action == "approve"
            return self.act(
                lambda: organizers.membership_decide(
                    membership=membership, user=user, approve=approve
                ),
                f"{membership.user} is {'approved' if approve else 'not approved'}.",
            )
        return self.refuse(f"Unknown action '{action[:40]}'.")


class ConsoleAnnounceView(ConsoleMixin, TemplateView):
    template_name = "challenges/console/announce.html"
    console_tab = "announce"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "announcements": announcements_for(challenge=self.challenge)[:50],
        }

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        subject = request.POST.get("subject", "")
        body = request.POST.get("body", "")
        return self.act(
            lambda: organizers.announcement_send(
                challenge=self.challenge, user=request.user, subject=subject, body=body
            ),
            lambda a: (
                f"Announcement sent to {a.recipients} participant(s) and shown on the "
                "challenge page."
            ),
        )


# --- exports -------------------------------------------------------------------------------------

#: Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading quote; numbers
    are written as they are (full precision)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_stream(header: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([csv_safe(v) for v in row])


class _ExportView(ConsoleMixin, TemplateView):
    filename = ""
    header: list[str] = []

    def rows(self) -> Iterable[list[Any]]:
        raise NotImplementedError

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = StreamingHttpResponse(
            _csv_stream(self.header, self.rows()), content_type="text/csv"
        )
        name = f"{self.challenge.slug}-{self.filename}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response  # type: ignore[return-value]


class ResultsCsvView(_ExportView):
    """Every result of the challenge: one row per submission, attempt, part and metric."""

    filename = "results.csv"
    header = [
        "submission",
        "phase",
        "entrant",
        "baseline",
        "attempt",
        "state",
        "part",
        "metric",
        "value",
    ]

    def rows(self) -> Iterable[list[Any]]:
        return results_export_rows(challenge=self.challenge)


class CasesCsvView(_ExportView):
    """Every per-case value: one row per submission, attempt, part, case and metric."""

    filename = "cases.csv"
    header = ["submission", "attempt", "part", "case_id", "metric", "value"]

    def rows(self) -> Iterable[list[Any]]:
        return cases_export_rows(challenge=self.challenge)
