"""The project's URLs with the API mounted, until pneumo/urls.py includes it itself."""

from __future__ import annotations

from django.urls import include, path

from pneumo.urls import urlpatterns as project_urlpatterns

_mounted = any(getattr(p, "app_name", None) == "api" for p in project_urlpatterns)
urlpatterns = list(project_urlpatterns) if _mounted else [path("api/", include("cases.api.urls")), *project_urlpatterns]
