from django.urls import path

from challenges import views

app_name = "challenges"

urlpatterns = [
    path("", views.ChallengeListView.as_view(), name="list"),
    path("healthz", views.healthz, name="healthz"),
    path("challenges/<slug:slug>/", views.ChallengeDetailView.as_view(), name="detail"),
]
