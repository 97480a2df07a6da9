from __future__ import annotations

from django.urls import include, path

from cases import views, views_validation

urlpatterns = [
    path("", views.home, name="home"),
    path("upload/", views.upload, name="upload"),
    path("upload/files/", views.upload_files, name="upload_files"),
    path("studies/", views.studies, name="studies"),
    path("studies/status/", views.study_statuses, name="study_statuses"),
    path("images/<int:pk>/file", views.image_file, name="image_file"),
    path("validation/", views_validation.validation_page, name="validation"),
    path("validation/threshold/", views_validation.validation_threshold_set, name="validation_threshold_set"),
    path("operations/", include("cases.urls_operations")),
    path("", include("cases.urls_reading")),
]
