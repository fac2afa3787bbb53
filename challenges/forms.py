"""Account forms: sign-up and the admin's user forms refuse look-alike usernames; sign-up asks for
an e-mail address no other account has (compared case-insensitively); log-in forms refuse
attempts past the failure limit before checking any password."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import (
    AdminUserCreationForm,
    AuthenticationForm,
    UserChangeForm,
    UserCreationForm,
)
from django.contrib.auth.models import User

from challenges.services.accounts import VERIFIED_EMAIL_GROUP
from challenges.services.login_throttle import (
    client_address,
    login_failure_record,
    login_failures_forget,
    login_refused_for,
)
from challenges.usernames import username_lookalike


def _refuse_lookalike(username: str, *, exclude_pk: int | None = None) -> str:
    """``username`` unless it looks like another user's (empty: already refused by Django)."""
    if not username:
        return username
    taken = username_lookalike(username=username, exclude_pk=exclude_pk)
    if taken is not None:
        raise forms.ValidationError(
            "This username looks like the existing username “%(taken)s” (letters from other "
            "alphabets, case and width are compared as they look). Please choose another.",
            code="username_lookalike",
            params={"taken": taken},
        )
    return username


def _refuse_taken_email(email: str, *, exclude_pk: int | None = None) -> str:
    """``email`` unless another account has it, compared case-insensitively."""
    others = User.objects.filter(email__iexact=email)
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    if email and others.exists():
        raise forms.ValidationError(
            "An account with this e-mail address already exists. Log in, or use “forgot "
            "password?” on the log-in page.",
            code="email_taken",
        )
    return email


class SignupForm(UserCreationForm[User]):
    """The public sign-up form."""

    email = forms.EmailField(
        label="E-mail address",
        max_length=254,
        help_text="For password resets and evaluation results; we send a link to confirm it.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def clean_username(self) -> str:
        return _refuse_lookalike(super().clean_username())

    def clean_email(self) -> str:
        return _refuse_taken_email(self.cleaned_data["email"].strip())


class LookalikeSafeAdminUserCreationForm(AdminUserCreationForm[User]):
    """The admin's "add user" form, with the same username rule as sign-up."""

    def clean_username(self) -> str:
        return _refuse_lookalike(super().clean_username())


class LookalikeSafeUserChangeForm(UserChangeForm[User]):
    """The admin's user form: renaming a user to a look-alike of another is refused too."""

    def clean_username(self) -> str:
        username: str = self.cleaned_data.get("username") or ""
        return _refuse_lookalike(username, exclude_pk=self.instance.pk)

    def clean(self) -> dict[str, Any]:
        """A changed address is no longer verified: the ``verified-email`` group is dropped
        from the groups this form saves."""
        cleaned: dict[str, Any] = super().clean() or self.cleaned_data
        groups = cleaned.get("groups")
        if "email" in self.changed_data and groups is not None:
            cleaned["groups"] = groups.exclude(name=VERIFIED_EMAIL_GROUP)
        return cleaned


class _ThrottledLoginMixin:
    """Counts failed log-ins and refuses further attempts, without checking the password, once
    the username or the client address reached its limit. ``retry_after`` then holds the
    seconds to wait (the view answers 429 with ``Retry-After``)."""

    retry_after: int | None = None
    cleaned_data: dict[str, Any]
    request: Any

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()  # type: ignore[misc,no-any-return]
        address = client_address(self.request.META) if self.request is not None else ""
        self.retry_after = login_refused_for(username=username, address=address)
        if self.retry_after is not None:
            minutes = max(1, round(self.retry_after / 60))
            raise forms.ValidationError(
                "Too many failed log-in attempts. Log-in is paused for this account or "
                "address; try again in about %(minutes)d minute(s).",
                code="throttled",
                params={"minutes": minutes},
            )
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        except forms.ValidationError as exc:
            if exc.code == "invalid_login":
                login_failure_record(username=username, address=address)
            raise
        login_failures_forget(username=username)
        return cleaned


class ThrottledAuthenticationForm(_ThrottledLoginMixin, AuthenticationForm):
    """The log-in page's form."""


class ThrottledAdminAuthenticationForm(_ThrottledLoginMixin, AdminAuthenticationForm):
    """The admin's log-in form."""
