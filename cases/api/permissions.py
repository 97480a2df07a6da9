"""Role checks per action. Which objects a user sees is the selectors' job, not these classes'."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from cases.selectors import user_can_review, user_can_upload


def _is_admin(request: Request) -> bool:
    return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class IsAdmin(BasePermission):
    message = "Only admins can do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return _is_admin(request)


class ReadOrAdminWrites(BasePermission):
    message = "Only admins can change this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.method in SAFE_METHODS or _is_admin(request)


class CanUpload(BasePermission):
    message = "Only technicians and admins upload studies."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return user_can_upload(user=request.user)


class RadiologistOrAdmin(BasePermission):
    message = "Only radiologists and admins can do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return _is_admin(request) or user_can_review(user=request.user)
