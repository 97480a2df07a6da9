from __future__ import annotations

from django.urls import path

from cases.otp import views

urlpatterns = [
    path("verify/", views.otp_verify, name="otp_verify"),
    path("enrol/", views.otp_enrol, name="otp_enrol"),
]
