from __future__ import annotations

from django.apps import AppConfig


class OidcConfig(AppConfig):
    name = "cases.oidc"
    label = "oidc"
    verbose_name = "Single sign-on"
    default_auto_field = "django.db.models.BigAutoField"
