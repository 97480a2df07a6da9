"""Role checks per action, each a ``user_can_*`` selector; which objects a user sees is the object selectors' job."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from cases.selectors import user_can_read_worklist, user_can_see_stats, user_can_upload, user_is_admin


class IsAdmin(BasePermission):
    message = "Only admins can do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return user_is_admin(user=request.user)


class ReadOrAdminWrites(BasePermission):
    message = "Only admins can change this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.method in SAFE_METHODS or user_is_admin(user=request.user)


class CanUpload(BasePermission):
    message = "Only technicians and admins upload studies."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return user_can_upload(user=request.user)


class CanReadWorklist(BasePermission):
    """The worklist and its work: releasing a claim, asking the AI again."""

    message = "Only radiologists and admins can do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return user_can_read_worklist(user=request.user)


class CanSeeStats(BasePermission):
    message = "Only radiologists and admins see the dashboard figures."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return user_can_see_stats(user=request.user)
