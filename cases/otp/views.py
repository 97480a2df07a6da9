"""The second factor's pages: verify a code, enrol an authenticator app, and an admin's reset of another."""

from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache

from cases.otp import services

WRONG_CODE = "That code was not right. Check your authenticator app's clock, or use a recovery code."


@login_required
@never_cache
def otp_verify(request: HttpRequest) -> HttpResponse:
    if not services.totp_enrolled(user=request.user):
        return redirect(f"{reverse('otp_enrol')}?{request.GET.urlencode()}")
    if not AxesProxyHandler.is_allowed(request, {"username": request.user.username}):
        return render(request, "registration/locked_out.html", status=429)
    error = ""
    if request.method == "POST":
        device = services.second_factor_verify(request=request, user=request.user, token=request.POST.get("otp", ""))
        if device is not None:
            services.second_factor_login(request=request, device=device)
            return redirect(_next(request))
        error = WRONG_CODE
    return render(request, "otp/verify.html", {"error": error, "next": _next(request)}, status=400 if error else 200)


@login_required
@never_cache
def otp_enrol(request: HttpRequest) -> HttpResponse:
    user = request.user
    if services.totp_enrolled(user=user):
        if not user.is_verified():
            return redirect(f"{reverse('otp_verify')}?{request.GET.urlencode()}")
        if request.method == "POST":  # new recovery codes, the old ones stop working
            codes = services.recovery_codes_new(user=user)
            return render(request, "otp/recovery_codes.html", {"codes": codes, "next": _next(request)})
        return render(request, "otp/enrolled.html", {"next": _next(request)})
    device = services.totp_device_pending(user=user)
    error = ""
    if request.method == "POST":
        codes = services.totp_enrol_confirm(request=request, device=device, token=request.POST.get("otp", ""))
        if codes is not None:
            return render(request, "otp/recovery_codes.html", {"codes": codes, "next": _next(request)})
        error = WRONG_CODE
    context = {
        "qr": services.totp_qr_data_uri(device=device),
        "secret": services.totp_secret_base32(device=device),
        "error": error,
        "next": _next(request),
    }
    return render(request, "otp/enrol.html", context, status=400 if error else 200)


def _next(request: HttpRequest) -> str:
    url = request.POST.get("next") or request.GET.get("next", "")
    safe = url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return url if safe else settings.LOGIN_REDIRECT_URL
