"""URLs of the bundle uploads (browser and API) (included from challenges/urls.py)."""

from django.urls import URLPattern, URLResolver, path

from challenges import apis_bundles, views_bundles

urlpatterns: list[URLPattern | URLResolver] = [
    path("organize/new/", views_bundles.BundleNewView.as_view(), name="bundle-new"),
    path(
        "challenges/<slug:slug>/console/bundle/",
        views_bundles.BundleUpdateView.as_view(),
        name="bundle-update",
    ),
    path(
        "organize/uploads/<int:pk>/",
        views_bundles.BundleUploadView.as_view(),
        name="bundle-upload",
    ),
    path("api/bundles/", apis_bundles.BundleUploadCreateApi.as_view(), name="api-bundles"),
    path(
        "api/bundles/<int:upload_id>/",
        apis_bundles.BundleUploadDetailApi.as_view(),
        name="api-bundle",
    ),
    path(
        "api/bundles/<int:upload_id>/confirm/",
        apis_bundles.BundleUploadConfirmApi.as_view(),
        name="api-bundle-confirm",
    ),
]
