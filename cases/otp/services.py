"""Enrolling, verifying and resetting the second factor; every change is audited."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.http import HttpRequest
from django_otp import devices_for_user, match_token
from django_otp import login as otp_login
from django_otp.models import Device
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from cases.audit import audit_record
from cases.models import User

RECOVERY_CODE_COUNT = 10
RECOVERY = "Recovery codes"
PROVIDER_AMR = "Identity provider (amr)"  # holds no codes: it only records that the provider checked a second factor


def second_factor_required(*, user: Any) -> bool:
    """Admins must have one; anyone else who chose to enrol is asked for it too."""
    return bool(user.is_authenticated and (user.is_staff or totp_enrolled(user=user)))


def totp_enrolled(*, user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def totp_device_pending(*, user: User) -> TOTPDevice:
    """The device being enrolled: the same secret until it is confirmed, so a reload keeps the QR code."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def totp_qr_data_uri(*, device: TOTPDevice) -> str:
    # Imported here: qrcode (with PIL's drawing and fonts, and ElementTree) costs every process that
    # sets up Django about 15 ms, a Celery worker's start included, and only the enrolment page draws one.
    import qrcode
    import qrcode.image.svg

    svg = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage).to_string()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode()


def totp_secret_base32(*, device: TOTPDevice) -> str:
    return base64.b32encode(device.bin_key).decode().rstrip("=")


def totp_code_now(*, device: TOTPDevice) -> str:
    """The code an authenticator app with this device's key shows now (for the demo's printed logins)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


@transaction.atomic
def totp_enrol_confirm(*, request: HttpRequest, device: TOTPDevice, token: str) -> list[str] | None:
    """Confirms the device with a first code; returns the new recovery codes (shown once), or None."""
    if not device.verify_token(token.strip()):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = recovery_codes_new(user=device.user)
    otp_login(request, device)
    audit_record(action="otp_enrolled", user=device.user, obj=device.user, request=request)
    return codes


def recovery_codes_new(*, user: User) -> list[str]:
    """Fresh single-use recovery codes, replacing any left."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name=RECOVERY, defaults={"confirmed": True})
    device.token_set.all().delete()
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def second_factor_verify(*, request: HttpRequest | None, user: User, token: str) -> Device | None:
    """The device that accepts this TOTP or recovery code (a recovery code is used up), or None.

    A wrong code is a failed login to axes and the audit trail, so guessing codes ends in the lockout.
    """
    device = match_token(user, token.strip().replace(" ", "")) if token.strip() else None
    if device is None or device.name == PROVIDER_AMR:
        user_login_failed.send(
            sender=__name__, credentials={"username": user.username, "second_factor": True}, request=request
        )
        return None
    return device


def second_factor_login(*, request: HttpRequest, device: Device) -> None:
    otp_login(request, device)
    audit_record(action="otp_verified", user=device.user, request=request, device=type(device).__name__)


def provider_amr_login(*, request: HttpRequest, user: User) -> None:
    """Single sign-on whose provider asserted a second factor: the session counts as verified."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name=PROVIDER_AMR, defaults={"confirmed": True})
    otp_login(request, device)


@transaction.atomic
def second_factor_reset(*, user: User, by: User, request: HttpRequest | None = None) -> int:
    """Another admin removes the user's devices (a lost phone); they enrol again at their next login."""
    removed = 0
    for device in devices_for_user(user, confirmed=None):
        device.delete()
        removed += 1
    audit_record(action="otp_reset", user=by, obj=user, request=request, target_user_id=user.pk, devices=removed)
    return removed
