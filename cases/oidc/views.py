"""The login page, the SSO start and callback, and logout (Pneumo's session and the provider's)."""

from __future__ import annotations

import secrets
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.signals import user_login_failed
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from cases.oidc import client
from cases.oidc.services import SsoRefused, sso_lockout_name, sso_user_sync
from cases.otp.services import provider_amr_login

SESSION_KEY = "oidc_auth_request"
ID_TOKEN_KEY = "oidc_id_token"  # noqa: S105 (a session key, not a secret)
UNKNOWN_USER = "(single sign-on)"  # the lockout and audit name of a failure before the provider said who it is
BACKEND = "cases.oidc.backends.SsoBackend"
WRONG_STATE = "The sign-in could not be completed (it was not started here, or it was already used). Please try again."


def sso_enabled() -> bool:
    return bool(settings.PNEUMO_OIDC_ISSUER)


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "sso_enabled": sso_enabled(),
            "sso_provider_name": settings.PNEUMO_OIDC_PROVIDER_NAME,
            "local_login_admins_only": settings.PNEUMO_LOCAL_LOGIN == "admins",
        }


@require_GET
@never_cache
def sso_login(request: HttpRequest) -> HttpResponse:
    if not sso_enabled():
        raise Http404
    try:
        provider = client.provider_discover(settings.PNEUMO_OIDC_ISSUER)
    except client.OidcError as error:
        return _back_to_login(request, str(error))
    auth = client.auth_request_new()
    request.session[SESSION_KEY] = {
        "state": auth.state,
        "nonce": auth.nonce,
        "code_verifier": auth.code_verifier,
        "next": _safe_next(request, request.GET.get("next", "")),
    }
    return redirect(
        client.authorization_url(
            provider=provider,
            client_id=settings.PNEUMO_OIDC_CLIENT_ID,
            redirect_uri=_callback_uri(request),
            scopes=settings.PNEUMO_OIDC_SCOPES,
            auth=auth,
        )
    )


@require_GET
@never_cache
def sso_callback(request: HttpRequest) -> HttpResponse:
    if not sso_enabled():
        raise Http404
    pending = request.session.pop(SESSION_KEY, None)
    state = request.GET.get("state", "")
    if not pending or not state or not secrets.compare_digest(state, pending["state"]):
        return _failed(request, WRONG_STATE, username=UNKNOWN_USER)
    if "error" in request.GET:  # the person cancelled, or the provider refused
        return _failed(request, "The identity provider did not sign you in.", username=UNKNOWN_USER)
    try:
        claims, id_token = _claims_verified(request, pending)
    except client.OidcError as error:
        return _failed(request, str(error), username=UNKNOWN_USER)
    lockout_name = sso_lockout_name(issuer=settings.PNEUMO_OIDC_ISSUER, claims=claims)
    if not AxesProxyHandler.is_allowed(request, {"username": lockout_name}):
        return render(request, "registration/locked_out.html", status=429)
    try:
        user = sso_user_sync(issuer=settings.PNEUMO_OIDC_ISSUER, claims=claims)
    except SsoRefused as refusal:
        user_login_failed.send(sender=__name__, credentials={"username": refusal.username}, request=request)
        return render(request, "oidc/refused.html", {"reason": str(refusal)}, status=403)
    login(request, user, backend=BACKEND)
    request.session[ID_TOKEN_KEY] = id_token
    amr = {str(v) for v in claims.get("amr", []) or [] if isinstance(v, str)}
    if amr & set(settings.PNEUMO_OIDC_MFA_AMR):  # the provider checked a second factor itself
        provider_amr_login(request=request, user=user)
    return redirect(pending["next"] or settings.LOGIN_REDIRECT_URL)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    """Ends Pneumo's session, then the provider's where it offers RP-initiated logout."""
    id_token = request.session.get(ID_TOKEN_KEY, "")
    logout(request)
    login_url = request.build_absolute_uri(reverse("login"))
    if id_token and sso_enabled():
        try:
            provider = client.provider_discover(settings.PNEUMO_OIDC_ISSUER)
        except client.OidcError:
            return redirect(login_url)
        url = client.logout_url(
            provider=provider,
            id_token=id_token,
            client_id=settings.PNEUMO_OIDC_CLIENT_ID,
            post_logout_redirect_uri=login_url,
        )
        return redirect(url or login_url)
    return redirect(settings.LOGOUT_REDIRECT_URL)


def _claims_verified(request: HttpRequest, pending: dict[str, str]) -> tuple[dict[str, Any], str]:
    if not request.GET.get("code"):
        raise client.OidcError("The identity provider did not sign you in.")
    provider = client.provider_discover(settings.PNEUMO_OIDC_ISSUER)
    tokens = client.code_exchange(
        provider=provider,
        client_id=settings.PNEUMO_OIDC_CLIENT_ID,
        client_secret=settings.PNEUMO_OIDC_CLIENT_SECRET,
        code=request.GET["code"],
        redirect_uri=_callback_uri(request),
        code_verifier=pending["code_verifier"],
    )
    id_claims = client.id_token_verify(
        provider=provider, id_token=tokens["id_token"], client_id=settings.PNEUMO_OIDC_CLIENT_ID, nonce=pending["nonce"]
    )
    extra = client.userinfo_fetch(
        provider=provider, access_token=str(tokens.get("access_token", "")), subject=id_claims["sub"]
    )
    extra.pop("amr", None)  # a second factor counts only when the signed ID token asserts it
    # The signed ID token wins where both carry a claim.
    return {**extra, **id_claims}, tokens["id_token"]


def _failed(request: HttpRequest, message: str, *, username: str) -> HttpResponse:
    # The same signal as a wrong password: axes counts it towards the lockout and the audit trail records it.
    user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)
    return _back_to_login(request, message)


def _back_to_login(request: HttpRequest, message: str) -> HttpResponse:
    messages.error(request, message)
    return redirect("login")


def _callback_uri(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("sso_callback"))


def _safe_next(request: HttpRequest, url: str) -> str:
    allowed = url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return url if allowed else ""
