"""Verified claims to a Pneumo user: linked by (issuer, sub), role and sites from the claims on every login."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from cases.audit import audit_record
from cases.models import Site, User
from cases.oidc.models import OidcIdentity
from cases.services import RADIOLOGIST, TECHNICIAN

ADMIN = "admin"
ROLE_GROUPS = {"technician": TECHNICIAN, "radiologist": RADIOLOGIST}
ROLES = {*ROLE_GROUPS, ADMIN}
NO_ROLE = "Your identity provider gives you no role in Pneumo, so you cannot sign in. Ask your administrator."
INACTIVE = "Your Pneumo account is deactivated. Ask an administrator to reactivate it."


class SsoRefused(Exception):
    """The provider vouched for the person, but Pneumo will not let them in; ``str()`` is for the user."""

    def __init__(self, message: str, *, username: str) -> None:
        super().__init__(message)
        self.username = username


def claim_values(value: Any, *, lower: bool = True) -> set[str]:
    """A claim given as a list, or as one space- or comma-separated string."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, Iterable):
        return set()
    values = {str(item).strip() for item in value if str(item).strip()}
    return {v.lower() for v in values} if lower else values


def sso_user_sync(*, issuer: str, claims: dict[str, Any]) -> User:
    """The user this subject is, created on first login, with the claims' role and sites applied.

    Raises ``SsoRefused`` when the claims give no role (the account is deactivated too) or when
    the account was deactivated: reactivating is an administrator's decision, not the provider's.
    """
    outcome = _sync(issuer=issuer, claims=claims)
    if isinstance(outcome, SsoRefused):
        raise outcome  # after the transaction: a deactivation must stay
    return outcome


@transaction.atomic
def _sync(*, issuer: str, claims: dict[str, Any]) -> User | SsoRefused:
    roles = claim_values(claims.get(settings.PNEUMO_OIDC_ROLE_CLAIM)) & ROLES
    identity = (
        OidcIdentity.objects.select_for_update()
        .select_related("user")
        .filter(issuer=issuer, subject=str(claims["sub"]))
        .first()
    )
    if not roles:
        if identity is not None and identity.user.is_active:
            identity.user.is_active = False
            identity.user.save(update_fields=["is_active"])
            audit_record(action="user_deactivated", user=identity.user, obj=identity.user, reason="sso_no_role")
        return SsoRefused(NO_ROLE, username=identity.user.username if identity else _username_wanted(claims))
    if identity is None:
        identity = _identity_create(issuer=issuer, claims=claims)
    user = identity.user
    if not user.is_active:
        return SsoRefused(INACTIVE, username=user.username)
    _roles_apply(
        user=user, roles=roles, site_codes=claim_values(claims.get(settings.PNEUMO_OIDC_SITE_CLAIM), lower=False)
    )
    display_name = str(claims.get("name", ""))[:150]
    if display_name and display_name != user.display_name:
        user.display_name = display_name
        user.save(update_fields=["display_name"])
    identity.last_login_at = timezone.now()
    identity.save(update_fields=["last_login_at"])
    return user


def _identity_create(*, issuer: str, claims: dict[str, Any]) -> OidcIdentity:
    username = _username_wanted(claims)
    if User.objects.filter(username=username).exists():
        # Never take over a local account by its name: a suffix from the subject keeps them apart.
        digest = hashlib.sha256(f"{issuer} {claims['sub']}".encode()).hexdigest()[:8]
        username = f"{username[:140]}-{digest}"
    user = User(username=username, email=str(claims.get("email", ""))[:254])
    user.set_unusable_password()
    user.save()
    audit_record(action="user_created", user=user, obj=user, reason="sso_first_login")
    return OidcIdentity.objects.create(issuer=issuer, subject=str(claims["sub"]), user=user)


def sso_lockout_name(*, issuer: str, claims: dict[str, Any]) -> str:
    """The name a person's failed sign-ins are counted under: their user's, else the one they would get.

    The same as a refusal (``SsoRefused.username``) reports, so that refusals lock the person out.
    """
    identity = OidcIdentity.objects.filter(issuer=issuer, subject=str(claims["sub"])).select_related("user").first()
    return identity.user.username if identity else _username_wanted(claims)


def _username_wanted(claims: dict[str, Any]) -> str:
    name = claims.get("preferred_username") or str(claims.get("email", "")).split("@")[0] or claims["sub"]
    return str(name)[:150]


def _roles_apply(*, user: User, roles: set[str], site_codes: set[str]) -> None:
    is_admin = ADMIN in roles
    groups = list(Group.objects.filter(name__in=[ROLE_GROUPS[r] for r in roles if r in ROLE_GROUPS]))
    sites = list(Site.objects.filter(code__in=site_codes))
    before = (user.is_staff, {g.pk for g in user.groups.all()}, {s.pk for s in user.sites.all()})
    after = (is_admin, {g.pk for g in groups}, {s.pk for s in sites})
    if before == after:
        return
    user.is_staff = user.is_superuser = is_admin
    user.save(update_fields=["is_staff", "is_superuser"])
    user.groups.set(groups)
    user.sites.set(sites)
    user.__dict__.pop("_group_names", None)
    audit_record(
        action="user_roles_changed",
        user=user,
        obj=user,
        reason="sso_claims",
        roles=sorted(roles),
        sites=sorted(s.code for s in sites),
    )
