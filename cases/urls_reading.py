"""Reading pages, included at the site root by ``cases/urls.py``."""

from __future__ import annotations

from django.urls import path

from cases import views_reading as views

urlpatterns = [
    path("worklist/", views.worklist, name="worklist"),
    path("worklist/rows/", views.worklist_rows, name="worklist_rows"),
    path("worklist/version/", views.worklist_version, name="worklist_version"),
    path("studies/<int:pk>/", views.study_detail, name="study_detail"),
    path("studies/<int:pk>/claim/", views.study_claim, name="study_claim"),
    path("studies/<int:pk>/claim/touch/", views.study_claim_touch, name="study_claim_touch"),
    path("studies/<int:pk>/release/", views.study_release, name="study_release"),
    path("studies/<int:pk>/sign/", views.study_sign, name="study_sign"),
    path("studies/<int:pk>/amend/", views.study_amend, name="study_amend"),
    path("studies/<int:pk>/report/", views.study_report, name="study_report"),
    path("images/<int:pk>/pixels", views.image_pixels, name="image_pixels"),
    path("images/<int:pk>/render.png", views.image_render, name="image_render"),
    path("images/<int:pk>/heatmap.png", views.image_heatmap, name="image_heatmap"),
    path("dashboard/", views.dashboard, name="dashboard"),
]
