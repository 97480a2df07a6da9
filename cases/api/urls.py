"""Mounted by pneumo/urls.py as ``path("api/", include("cases.api.urls"))``.

Every route under ``v1/`` is named: the access-matrix test walks them all and
fails on a route its table does not list.
"""

from __future__ import annotations

from csp.decorators import csp_update
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

# schema also registers the token scheme with drf-spectacular
from cases.api import fhir, schema, site_thresholds, validation, views

app_name = "api"

v1 = [
    path("auth/token/", views.TokenView.as_view(), name="token"),
    path("sites/", views.SiteListView.as_view(), name="site-list"),
    path("sites/<str:code>/", views.SiteDetailView.as_view(), name="site-detail"),
    path("patients/", views.PatientListView.as_view(), name="patient-list"),
    path("patients/search/", views.PatientSearchView.as_view(), name="patient-search"),
    path("patients/<int:pk>/", views.PatientDetailView.as_view(), name="patient-detail"),
    path("studies/", views.StudyListView.as_view(), name="study-list"),
    path("studies/<int:pk>/", views.StudyDetailView.as_view(), name="study-detail"),
    path("studies/<int:pk>/predictions/", views.StudyPredictionsView.as_view(), name="study-predictions"),
    path("studies/<int:pk>/claim/", views.StudyClaimView.as_view(), name="study-claim"),
    path("studies/<int:pk>/release/", views.StudyReleaseView.as_view(), name="study-release"),
    path("studies/<int:pk>/review/", views.StudyReviewView.as_view(), name="study-review"),
    path("studies/<int:pk>/amend/", views.StudyAmendView.as_view(), name="study-amend"),
    path("studies/<int:pk>/fhir/", fhir.StudyFhirView.as_view(), name="study-fhir"),
    path("images/<int:pk>/file", views.ImageFileView.as_view(), name="image-file"),
    path("images/<int:pk>/render.png", views.ImageRenderView.as_view(), name="image-render"),
    path("images/<int:pk>/heatmap.png", views.ImageHeatmapPngView.as_view(), name="image-heatmap-png"),
    path("images/<int:pk>/heatmap.json", views.ImageHeatmapJsonView.as_view(), name="image-heatmap-json"),
    path("worklist/", views.WorklistView.as_view(), name="worklist"),
    path("models/", views.ModelVersionListView.as_view(), name="model-list"),
    path("models/<int:pk>/", views.ModelVersionDetailView.as_view(), name="model-detail"),
    path("stats/", views.StatsView.as_view(), name="stats"),
    path("audit/", views.AuditListView.as_view(), name="audit-list"),
    path("validation/", validation.ValidationReportView.as_view(), name="validation"),
    path("site-thresholds/", site_thresholds.SiteThresholdListView.as_view(), name="site-threshold-list"),
]

docs_view = schema.SwaggerPage.as_view(url_name="api:schema")
if style_hash := schema.swagger_style_hash():
    docs_view = csp_update({"style-src": [style_hash]})(docs_view)

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", docs_view, name="docs"),
    re_path(r"", views.NotFoundView.as_view()),  # last: whatever else is under /api/ is a JSON 404
]
