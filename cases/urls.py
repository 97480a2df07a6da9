from __future__ import annotations

from django.urls import path

from cases import views

urlpatterns = [
    path("", views.home, name="home"),
    path("worklist/", views.placeholder, {"title": "Worklist"}, name="worklist"),
    path("upload/", views.placeholder, {"title": "Upload studies"}, name="upload"),
    path("studies/", views.placeholder, {"title": "Studies"}, name="studies"),
    path("dashboard/", views.placeholder, {"title": "Dashboard"}, name="dashboard"),
]
