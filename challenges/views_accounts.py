"""Account pages: the profile (address and its verification, the API token), the e-mailed
verification link, and Django's password-reset views with the site's mail links and log-in
throttle. Every change is a POST with a CSRF token."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import View

from challenges.services.accounts import (
    EmailVerificationError,
    api_token_for,
    api_token_revoke,
    api_token_rotate,
    email_is_verified,
    email_verification_send,
    email_verify,
)
from challenges.services.login_throttle import login_failures_forget

PROFILE_TEMPLATE = "challenges/profile.html"


def _profile_context(user: User, *, new_key: str | None = None) -> dict[str, Any]:
    token = api_token_for(user=user)
    return {
        "email_verified": email_is_verified(user=user),
        "token": token,
        "token_prefix": token.key[:4] if token else "",
        "new_key": new_key,
    }


class ProfileView(LoginRequiredMixin, View):
    """``/accounts/profile/``: username, address and its state, the API token (its first four
    characters and creation date; the whole key only in the answer that created it)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, PROFILE_TEMPLATE, _profile_context(request.user))  # type: ignore[arg-type]


class ApiTokenView(LoginRequiredMixin, View):
    """POST ``action`` = ``create`` or ``rotate`` (a new key, the old one stops working) or
    ``revoke``. A new key is shown in this answer only, which no cache keeps."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        user: User = request.user  # type: ignore[assignment]
        action = request.POST.get("action")
        if action in ("create", "rotate"):
            token = api_token_rotate(user=user)
            response = render(request, PROFILE_TEMPLATE, _profile_context(user, new_key=token.key))
            response["Cache-Control"] = "no-store"
            return response
        if action == "revoke":
            if api_token_revoke(user=user):
                messages.success(request, "API token revoked: it no longer works.")
            return redirect("challenges:profile")
        messages.error(request, "Unknown token action.")
        return redirect("challenges:profile")


class VerificationResendView(LoginRequiredMixin, View):
    """POST: mail the verification link again."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        user: User = request.user  # type: ignore[assignment]
        if email_is_verified(user=user):
            messages.info(request, "Your e-mail address is already confirmed.")
        elif email_verification_send(user=user):
            messages.success(request, f"We sent a new confirmation link to {user.email}.")
        else:
            messages.error(request, "The confirmation mail could not be sent; try again later.")
        return redirect("challenges:profile")


class EmailVerifyView(View):
    """GET ``/accounts/verify-email/<token>/``: the link in the verification mail. It needs no
    session: the signed token names the account and the address."""

    template_name = "registration/verify_email.html"

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            user = email_verify(token=token)
        except EmailVerificationError as exc:
            return render(
                request, self.template_name, {"error": str(exc), "code": exc.code}, status=400
            )
        return render(request, self.template_name, {"verified_email": user.email})


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset form; the mailed link starts with ``SCANBENCH_SITE_URL``, not with the
    ``Host`` the request named."""

    subject_template_name = "registration/password_reset_subject.txt"

    def form_valid(self, form: Any) -> HttpResponse:
        self.extra_email_context = {"site_url": settings.SCANBENCH_SITE_URL}
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's set-new-password page; a successful reset also clears the username's failed
    log-in count, so the owner can log in at once (the address's count stays)."""

    def form_valid(self, form: SetPasswordForm[Any]) -> HttpResponse:
        response = super().form_valid(form)
        login_failures_forget(username=form.user.get_username())
        return response
