"""The OpenID Connect protocol, without Django: discovery, the authorisation request with PKCE,
the code exchange, ID-token checks and userinfo.

Every failure is an ``OidcError`` whose message a user may read: the views turn it into a
message on the login page, never a server error.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
import requests

LEEWAY_SECONDS = 60  # clock difference tolerated between Pneumo and the provider
METADATA_TTL_SECONDS = 3600
TIMEOUT_SECONDS = 10
_UNREACHABLE = "The identity provider could not be reached. Try again later or ask an administrator."


class OidcError(Exception):
    """A sign-in that cannot go on; ``str()`` is for the user."""


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    end_session_endpoint: str = ""


@dataclass(frozen=True)
class AuthRequest:
    """What the callback must find again in the session: never sent to the browser except ``state``."""

    state: str
    nonce: str
    code_verifier: str


_lock = threading.Lock()
_providers: dict[str, tuple[float, Provider]] = {}
_key_sets: dict[str, jwt.PyJWKClient] = {}


def provider_discover(issuer: str) -> Provider:
    """The issuer's endpoints from its discovery document, fetched at first use and kept an hour."""
    with _lock:
        cached = _providers.get(issuer)
        if cached and cached[0] > time.monotonic():
            return cached[1]
    try:
        response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        document = response.json()
        provider = Provider(
            issuer=document["issuer"],
            authorization_endpoint=document["authorization_endpoint"],
            token_endpoint=document["token_endpoint"],
            jwks_uri=document["jwks_uri"],
            userinfo_endpoint=document.get("userinfo_endpoint", ""),
            end_session_endpoint=document.get("end_session_endpoint", ""),
        )
    except (requests.RequestException, ValueError, KeyError, TypeError) as error:
        raise OidcError(_UNREACHABLE) from error
    if provider.issuer != issuer:  # OpenID Connect Discovery 1.0, section 4.3
        raise OidcError("The identity provider's configuration names another issuer.")
    with _lock:
        _providers[issuer] = (time.monotonic() + METADATA_TTL_SECONDS, provider)
    return provider


def auth_request_new() -> AuthRequest:
    return AuthRequest(
        state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32), code_verifier=secrets.token_urlsafe(64)
    )


def authorization_url(*, provider: Provider, client_id: str, redirect_uri: str, scopes: str, auth: AuthRequest) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(auth.code_verifier.encode()).digest()).rstrip(b"=")
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scopes,
        "state": auth.state,
        "nonce": auth.nonce,
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    return f"{provider.authorization_endpoint}?{urlencode(query)}"


def code_exchange(
    *, provider: Provider, client_id: str, client_secret: str, code: str, redirect_uri: str, code_verifier: str
) -> dict[str, Any]:
    """The token endpoint's answer (``id_token``, ``access_token``) for an authorisation code."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    auth = (client_id, client_secret) if client_secret else None
    if auth is None:
        data["client_id"] = client_id  # a public client proves itself by PKCE alone
    try:
        response = requests.post(provider.token_endpoint, data=data, auth=auth, timeout=TIMEOUT_SECONDS)
        tokens = response.json()
    except (requests.RequestException, ValueError) as error:
        raise OidcError(_UNREACHABLE) from error
    if response.status_code != 200 or not isinstance(tokens, dict) or "id_token" not in tokens:
        raise OidcError("The identity provider refused the sign-in. Please try again.")
    return tokens


def id_token_verify(*, provider: Provider, id_token: str, client_id: str, nonce: str) -> dict[str, Any]:
    """The ID token's claims once its RS256 signature, issuer, audience, expiry and nonce check out."""
    try:
        key = _key_set(provider.jwks_uri).get_signing_key_from_jwt(id_token)
        claims = jwt.decode(
            id_token,
            key.key,
            algorithms=["RS256"],
            audience=client_id,
            issuer=provider.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise OidcError("Your sign-in with the identity provider has expired. Please sign in again.") from error
    except (jwt.PyJWTError, jwt.PyJWKClientError) as error:
        raise OidcError("The identity provider's answer could not be verified. Please try again.") from error
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise OidcError("The identity provider's answer was not for this sign-in. Please try again.")
    return claims


def userinfo_fetch(*, provider: Provider, access_token: str, subject: str) -> dict[str, Any]:
    """Claims the provider keeps for its userinfo endpoint (roles, sites); empty when it has none."""
    if not provider.userinfo_endpoint or not access_token:
        return {}
    try:
        response = requests.get(
            provider.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}, timeout=TIMEOUT_SECONDS
        )
        response.raise_for_status()
        claims = response.json()
    except (requests.RequestException, ValueError) as error:
        raise OidcError(_UNREACHABLE) from error
    if not isinstance(claims, dict) or claims.get("sub") != subject:  # OpenID Connect Core 1.0, 5.3.2
        raise OidcError("The identity provider's answer could not be verified. Please try again.")
    return claims


def logout_url(*, provider: Provider, id_token: str, client_id: str, post_logout_redirect_uri: str) -> str:
    """The provider's RP-initiated logout, or "" when it offers none."""
    if not provider.end_session_endpoint:
        return ""
    query = {"id_token_hint": id_token, "client_id": client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
    return f"{provider.end_session_endpoint}?{urlencode(query)}"


def _key_set(jwks_uri: str) -> jwt.PyJWKClient:
    # PyJWKClient keeps the keys and fetches them again when a token names an unknown key id.
    with _lock:
        if jwks_uri not in _key_sets:
            _key_sets[jwks_uri] = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=METADATA_TTL_SECONDS, timeout=10)
        return _key_sets[jwks_uri]
