"""Mounted by pneumo/urls.py as ``path("dicomweb/", include("cases.dicomweb.urls"))``.

Every route is named: the access matrix (tests/api/test_access_matrix.py) walks them all.
"""

from __future__ import annotations

from django.urls import path, re_path

from cases.dicomweb import views

app_name = "dicomweb"

INSTANCE = "studies/<str:study>/series/<str:series>/instances/<str:instance>"

urlpatterns = [
    path("studies", views.StudiesView.as_view(), name="studies"),
    path("studies/<str:study>", views.RetrieveView.as_view(), name="study"),
    path("studies/<str:study>/series", views.SeriesSearchView.as_view(), name="series"),
    path("studies/<str:study>/series/<str:series>", views.RetrieveView.as_view(), name="series-retrieve"),
    path("studies/<str:study>/series/<str:series>/instances", views.InstanceSearchView.as_view(), name="instances"),
    path(INSTANCE, views.RetrieveView.as_view(), name="instance"),
    path(f"{INSTANCE}/metadata", views.MetadataView.as_view(), name="instance-metadata"),
    path(f"{INSTANCE}/rendered", views.RenderedView.as_view(), name="instance-rendered"),
    re_path(r"", views.NotFoundView.as_view()),  # last: whatever else is under /dicomweb/ is a JSON 404
]
