"""Who may ask for decisions and report activity: gateways and identity admins."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from accounts.roles import GATEWAY, IDENTITY_ADMIN, has_role


class IsGatewayOrAdmin(BasePermission):
    message = "only gateway or identity-admin tokens may do this"

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, GATEWAY, IDENTITY_ADMIN)
