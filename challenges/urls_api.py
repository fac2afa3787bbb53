"""Routes of the documented API v1, addressed by slugs (docs/api.md), and its schema and
documentation page. ``GET /api/submissions/<id>/`` keeps its route in challenges.urls (the
same view serves it). Included from challenges.urls, so the names are ``challenges:api-v1-*``."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from challenges import apis_organizers as org
from challenges import apis_teams, apis_v1

PHASE = "api/challenges/<slug:slug>/phases/<slug:phase>"
CONSOLE = "api/challenges/<slug:slug>/console"
TEAM = "api/challenges/<slug:slug>/team"

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
    # The organizer console (challenges.apis_organizers): 404 to anyone but its organizers.
    path(f"{CONSOLE}/", org.ConsoleApi.as_view(), name="api-v1-console"),
    path(f"{CONSOLE}/publish", org.ConsolePublishApi.as_view(), name="api-v1-console-publish"),
    path(f"{CONSOLE}/approval", org.ConsoleApprovalApi.as_view(), name="api-v1-console-approval"),
    path(
        f"{CONSOLE}/organizers",
        org.ConsoleOrganizersApi.as_view(),
        name="api-v1-console-organizers",
    ),
    path(
        f"{CONSOLE}/organizers/<str:username>",
        org.ConsoleOrganizerApi.as_view(),
        name="api-v1-console-organizer",
    ),
    path(
        f"{CONSOLE}/phases/<slug:phase>/",
        org.ConsolePhaseApi.as_view(),
        name="api-v1-console-phase",
    ),
    path(
        f"{CONSOLE}/phases/<slug:phase>/open",
        org.ConsolePhaseOpenApi.as_view(),
        name="api-v1-console-phase-open",
    ),
    path(
        f"{CONSOLE}/phases/<slug:phase>/close",
        org.ConsolePhaseCloseApi.as_view(),
        name="api-v1-console-phase-close",
    ),
    path(
        f"{CONSOLE}/phases/<slug:phase>/reevaluate",
        org.ConsolePhaseReevaluateApi.as_view(),
        name="api-v1-console-phase-reevaluate",
    ),
    path(
        f"{CONSOLE}/phases/<slug:phase>/baselines",
        org.ConsolePhaseBaselinesApi.as_view(),
        name="api-v1-console-phase-baselines",
    ),
    path(
        f"{CONSOLE}/phases/<slug:phase>/publish-private",
        org.ConsolePhasePublishPrivateApi.as_view(),
        name="api-v1-console-phase-publish-private",
    ),
    path(
        f"{CONSOLE}/phases/<slug:phase>/disqualify",
        org.ConsolePhaseDisqualifyApi.as_view(),
        name="api-v1-console-phase-disqualify",
    ),
    path(
        f"{CONSOLE}/submissions/",
        org.ConsoleSubmissionsApi.as_view(),
        name="api-v1-console-submissions",
    ),
    path(
        f"{CONSOLE}/submissions/<int:submission_id>/",
        org.ConsoleSubmissionApi.as_view(),
        name="api-v1-console-submission",
    ),
    path(
        f"{CONSOLE}/submissions/<int:submission_id>/reevaluate",
        org.ConsoleSubmissionReevaluateApi.as_view(),
        name="api-v1-console-submission-reevaluate",
    ),
    path(
        f"{CONSOLE}/submissions/<int:submission_id>/hide",
        org.ConsoleSubmissionHideApi.as_view(),
        name="api-v1-console-submission-hide",
    ),
    path(
        f"{CONSOLE}/exclusions/<int:exclusion_id>/lift",
        org.ConsoleExclusionLiftApi.as_view(),
        name="api-v1-console-exclusion-lift",
    ),
    path(
        f"{CONSOLE}/participants/",
        org.ConsoleParticipantsApi.as_view(),
        name="api-v1-console-participants",
    ),
    path(
        f"{CONSOLE}/participants/<str:username>/approve",
        org.ConsoleParticipantApproveApi.as_view(),
        name="api-v1-console-participant-approve",
    ),
    path(
        f"{CONSOLE}/participants/<str:username>/reject",
        org.ConsoleParticipantRejectApi.as_view(),
        name="api-v1-console-participant-reject",
    ),
    path(
        f"{CONSOLE}/announcements/",
        org.ConsoleAnnouncementsApi.as_view(),
        name="api-v1-console-announcements",
    ),
    path(f"{CONSOLE}/actions/", org.ConsoleActionsApi.as_view(), name="api-v1-console-actions"),
    path(
        f"{CONSOLE}/results.csv",
        org.ConsoleResultsCsvApi.as_view(),
        name="api-v1-console-results-csv",
    ),
    path(f"{CONSOLE}/cases.csv", org.ConsoleCasesCsvApi.as_view(), name="api-v1-console-cases-csv"),
    # Teams (challenges.apis_teams): the caller's own team and invitations only.
    path(f"{TEAM}/", apis_teams.TeamApi.as_view(), name="api-v1-team"),
    path(f"{TEAM}/invite", apis_teams.TeamInviteApi.as_view(), name="api-v1-team-invite"),
    path(
        f"{TEAM}/invitations/<int:invitation_id>/accept",
        apis_teams.InvitationAcceptApi.as_view(),
        name="api-v1-team-invitation-accept",
    ),
    path(
        f"{TEAM}/invitations/<int:invitation_id>/decline",
        apis_teams.InvitationDeclineApi.as_view(),
        name="api-v1-team-invitation-decline",
    ),
    path(f"{TEAM}/leave", apis_teams.TeamLeaveApi.as_view(), name="api-v1-team-leave"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="challenges:api-schema"),
        name="api-docs",
    ),
    # Last of all the site's routes: any other /api/ path is a 404 in the API's error shape.
    re_path(r"^api/", apis_v1.ApiNotFound.as_view(), name="api-not-found"),
]
