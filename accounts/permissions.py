"""Who may call which API resource: the role gate every viewset uses."""

from __future__ import annotations

from rest_framework import permissions

from accounts.roles import has_role


class RolePermission(permissions.BasePermission):
    """Reads need one of ``view.read_roles``; anything else one of ``view.write_roles``.

    Object-level rules (owners act only on their own agents) live in the selectors, which scope the
    queryset, so another owner's object is a 404 rather than a 403.
    """

    message = "your role does not allow this"

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return has_role(request.user, *getattr(view, "read_roles", ()))
        return has_role(request.user, *getattr(view, "write_roles", ()))
