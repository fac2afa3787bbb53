from django.contrib import admin
from django.urls import include, path

import challenges.admin_users  # noqa: F401  (user admin and admin log-in with the site's rules)
from challenges.views import ThrottledLoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    # Before django.contrib.auth.urls: the log-in page with failed-attempt throttling.
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("challenges.urls")),
]
