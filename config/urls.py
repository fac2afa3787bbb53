from django.conf import settings
from django.contrib import admin
from django.urls import include, path

import challenges.admin_users  # noqa: F401  (user admin and admin log-in with the site's rules)
from challenges.views import ThrottledLoginView
from challenges.views_accounts import PasswordResetConfirmView, PasswordResetView

urlpatterns = [
    path(settings.SCANBENCH_ADMIN_PATH, admin.site.urls),
    # Before django.contrib.auth.urls: the log-in page with failed-attempt throttling.
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    # Django's reset views with the site's mail links and log-in throttle (same paths and names).
    path("accounts/password_reset/", PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/reset/<uidb64>/<token>/",
        PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("challenges.urls")),
]
