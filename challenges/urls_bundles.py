"""URLs of the bundle uploads (browser and API) (included from challenges/urls.py)."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
