"""URLs of the organizer console (included from challenges/urls.py; docs/organizers.md)."""

from django.urls import URLPattern, URLResolver, path

from challenges import views_console, views_operations

urlpatterns: list[URLPattern | URLResolver] = [
    path("organize/", views_console.OrganizeHomeView.as_view(), name="organize"),
    path("console/operations/", views_operations.OperationsView.as_view(), name="operations"),
    path(
        "challenges/<slug:slug>/console/",
        views_console.ConsoleOverviewView.as_view(),
        name="console",
    ),
    path(
        "challenges/<slug:slug>/console/submissions/",
        views_console.ConsoleSubmissionsView.as_view(),
        name="console-submissions",
    ),
    path(
        "challenges/<slug:slug>/console/submissions/<int:pk>/",
        views_console.ConsoleSubmissionView.as_view(),
        name="console-submission",
    ),
    path(
        "challenges/<slug:slug>/console/participants/",
        views_console.ConsoleParticipantsView.as_view(),
        name="console-participants",
    ),
    path(
        "challenges/<slug:slug>/console/announce/",
        views_console.ConsoleAnnounceView.as_view(),
        name="console-announce",
    ),
    path(
        "challenges/<slug:slug>/console/results.csv",
        views_console.ResultsCsvView.as_view(),
        name="console-results-csv",
    ),
    path(
        "challenges/<slug:slug>/console/cases.csv",
        views_console.CasesCsvView.as_view(),
        name="console-cases-csv",
    ),
]
