from __future__ import annotations

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from cases import audit_export
from cases import views as case_views
from cases.oidc import views as oidc_views
from cases.otp.admin_site import PneumoAdminSite

# django-otp's admin site: its index and pages need a verified second factor, never a password alone.
admin.site.__class__ = PneumoAdminSite
admin.site.site_header = "Pneumo administration"
admin.site.site_title = "Pneumo admin"

urlpatterns = [
    # Pages name their icon; this answers what browsers ask for on their own (admin pages, files opened directly).
    path("favicon.ico", RedirectView.as_view(url=static("pneumo/favicon.ico"), permanent=True), name="favicon"),
    path("health/", case_views.health, name="health"),
    path("metrics", case_views.metrics, name="metrics"),
    path("accounts/login/", oidc_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", oidc_views.logout_view, name="logout"),
    path("accounts/sso/", include("cases.oidc.urls")),
    path("accounts/otp/", include("cases.otp.urls")),
    path("audit/export.csv", audit_export.audit_export_csv, name="audit_export_csv"),
    path("admin/", admin.site.urls),
    path("api/", include("cases.api.urls")),
    path("dicomweb/", include("cases.dicomweb.urls")),
    path("", include("cases.urls")),
]
