"""Routes of the documented API v1, addressed by slugs (docs/api.md), and its schema and
documentation page. ``GET /api/submissions/<id>/`` keeps its route in challenges.urls (the
same view serves it). Included from challenges.urls, so the names are ``challenges:api-v1-*``."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from challenges import apis_v1

PHASE = "api/challenges/<slug:slug>/phases/<slug:phase>"

urlpatterns = [
    path("api/token/", apis_v1.TokenObtainApi.as_view(), name="api-v1-token"),
    path("api/challenges/", apis_v1.ChallengeListApi.as_view(), name="api-v1-challenges"),
    path(
        "api/challenges/<slug:slug>/", apis_v1.ChallengeDetailApi.as_view(), name="api-v1-challenge"
    ),
    path("api/challenges/<slug:slug>/join/", apis_v1.JoinApi.as_view(), name="api-v1-join"),
    path("api/challenges/<slug:slug>/data/", apis_v1.DataListApi.as_view(), name="api-v1-data"),
    path(
        "api/challenges/<slug:slug>/data/<str:name>",
        apis_v1.DataDownloadApi.as_view(),
        name="api-v1-data-file",
    ),
    path(f"{PHASE}/", apis_v1.PhaseDetailApi.as_view(), name="api-v1-phase"),
    path(
        f"{PHASE}/submissions/",
        apis_v1.PhaseSubmissionsApi.as_view(),
        name="api-v1-submissions",
    ),
    path(
        f"{PHASE}/leaderboard/",
        apis_v1.PhaseLeaderboardApi.as_view(),
        name="api-v1-leaderboard",
    ),
    path(
        f"{PHASE}/leaderboard.csv",
        apis_v1.PhaseLeaderboardCsvApi.as_view(),
        name="api-v1-leaderboard-csv",
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="challenges:api-schema"),
        name="api-docs",
    ),
    # Last of all the site's routes: any other /api/ path is a 404 in the API's error shape.
    re_path(r"^api/", apis_v1.ApiNotFound.as_view(), name="api-not-found"),
]
