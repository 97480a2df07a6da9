from __future__ import annotations

from django.urls import path

from cases import views_operations as views

urlpatterns = [
    path("", views.operations_page, name="operations"),
    path("predictions/retry/", views.prediction_retry, name="operations_prediction_retry"),
    path("predictions/cancel/", views.prediction_cancel, name="operations_prediction_cancel"),
    path("sites/pause/", views.site_pause, name="operations_site_pause"),
    path("sites/resume/", views.site_resume, name="operations_site_resume"),
    path("studies/<int:pk>/", views.study_timeline, name="operations_study_timeline"),
]
