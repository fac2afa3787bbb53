from django.urls import include, path

from challenges import (
    apis,
    views,
    views_accounts,
    views_data,
    views_exports,
    views_ops,
    views_submissions,
    views_teams,
)

app_name = "challenges"

urlpatterns = [
    path("", views.ChallengeListView.as_view(), name="list"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views_ops.metrics, name="metrics"),
    path("challenges/<slug:slug>/", views.ChallengeDetailView.as_view(), name="detail"),
    path("challenges/<slug:slug>/data/", views_data.DataView.as_view(), name="data"),
    path("challenges/<slug:slug>/join/", views_data.JoinView.as_view(), name="join"),
    path("challenges/<slug:slug>/team/", views_teams.TeamView.as_view(), name="team"),
    path(
        "challenges/<slug:slug>/data/<str:name>",
        views_data.DownloadView.as_view(),
        name="data-download",
    ),
    path(
        "challenges/<slug:slug>/<slug:phase_slug>/leaderboard/",
        views.LeaderboardView.as_view(),
        name="leaderboard",
    ),
    path(
        "challenges/<slug:slug>/<slug:phase_slug>/leaderboard.csv",
        views_exports.leaderboard_csv,
        name="leaderboard-csv",
    ),
    path(
        "challenges/<slug:slug>/<slug:phase_slug>/submit/",
        views.SubmitView.as_view(),
        name="submit",
    ),
    # After the phase pages: a phase slugged "team" keeps its leaderboard and submit pages.
    path(
        "challenges/<slug:slug>/team/<slug:action>/",
        views_teams.TeamActionView.as_view(),
        name="team-action",
    ),
    path(
        "submissions/<int:pk>/",
        views_submissions.SubmissionDetailView.as_view(),
        name="submission",
    ),
    path("accounts/signup/", views.SignupView.as_view(), name="signup"),
    path("accounts/profile/", views_accounts.ProfileView.as_view(), name="profile"),
    path("accounts/profile/token/", views_accounts.ApiTokenView.as_view(), name="api-token"),
    path(
        "accounts/profile/verify-email/",
        views_accounts.VerificationResendView.as_view(),
        name="verify-email-resend",
    ),
    path(
        "accounts/verify-email/<str:token>/",
        views_accounts.EmailVerifyView.as_view(),
        name="verify-email",
    ),
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
    # The organizer console and bundle uploads keep their routes in their own modules.
    path("", include("challenges.urls_console")),
    path("", include("challenges.urls_bundles")),
    path("", include("challenges.urls_catalogue")),
    path("", include("challenges.urls_api")),
]
