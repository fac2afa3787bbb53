"""The admin's user pages and log-in with the site's account rules: look-alike usernames are
refused when an organizer adds or renames a user, and the admin log-in is throttled like the
site's. Imported by ``config.urls`` before the admin's URLs are built."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User

from challenges.forms import (
    LookalikeSafeAdminUserCreationForm,
    LookalikeSafeUserChangeForm,
    ThrottledAdminAuthenticationForm,
)


class ScanbenchUserAdmin(UserAdmin[User]):
    add_form = LookalikeSafeAdminUserCreationForm
    form = LookalikeSafeUserChangeForm


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, ScanbenchUserAdmin)
admin.site.login_form = ThrottledAdminAuthenticationForm
