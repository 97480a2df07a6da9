"""Pneumo's admin site: django-otp's (no page without a verified second factor) with one login page for all."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django_otp.admin import OTPAdminSite


class PneumoAdminSite(OTPAdminSite):
    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # The site's own login page (password or SSO, then the second factor) instead of the admin's form.
        return redirect_to_login(request.GET.get("next", reverse("admin:index")), login_url=reverse("login"))
