"""Routes of the data set catalogue (challenges.views_catalogue), included by challenges.urls."""

from django.urls import path

from challenges import views_catalogue

urlpatterns = [
    path("datasets/", views_catalogue.CatalogueView.as_view(), name="catalogue"),
    path(
        "datasets/<slug:slug>/template.zip",
        views_catalogue.template_download,
        name="catalogue-template",
    ),
]
