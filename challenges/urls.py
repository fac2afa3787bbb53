from django.urls import path

from challenges import apis, views

app_name = "challenges"

urlpatterns = [
    path("", views.ChallengeListView.as_view(), name="list"),
    path("healthz", views.healthz, name="healthz"),
    path("challenges/<slug:slug>/", views.ChallengeDetailView.as_view(), name="detail"),
    path(
        "challenges/<slug:slug>/<slug:phase_slug>/leaderboard/",
        views.LeaderboardView.as_view(),
        name="leaderboard",
    ),
    path(
        "challenges/<slug:slug>/<slug:phase_slug>/submit/",
        views.SubmitView.as_view(),
        name="submit",
    ),
    path("accounts/signup/", views.SignupView.as_view(), name="signup"),
    path("api/phases/<int:phase_id>/limits/", apis.PhaseLimitsApi.as_view(), name="api-limits"),
    path(
        "api/phases/<int:phase_id>/submissions/",
        apis.SubmissionCreateApi.as_view(),
        name="api-submit",
    ),
    path(
        "api/phases/<int:phase_id>/leaderboard/",
        apis.LeaderboardApi.as_view(),
        name="api-leaderboard",
    ),
    path(
        "api/submissions/<int:submission_id>/",
        apis.SubmissionDetailApi.as_view(),
        name="api-submission",
    ),
]
