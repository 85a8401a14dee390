"""One permission vocabulary for everything that belongs to an agent's owner.

- ``Model.objects.visible_to(user)``: the rows a person may read. Identity admins and auditors see
  every row; an agent owner sees the rows of their own agents; anyone else (anonymous, an agent's
  own credential) sees none. Each scoped model names the path from its rows to the owner.
- ``can_manage(actor, agent)``: may this person change the agent and what hangs off it? Identity
  admins, and agent owners for their own agents; auditors and gateways change nothing.
- ``require_can_manage(...)``: the same, as the domain refusal the API and console render.
"""

from __future__ import annotations

from typing import Protocol

from django.db import models

from accounts.roles import AGENT_OWNER, can_read_all, has_role, is_admin
from audit.services import ActorLike
from core.errors import PermissionDenied


class Owned(Protocol):
    """Anything with an owner: an agent, a standing exception."""

    @property
    def owner_id(self) -> int | None: ...


class VisibleQuerySet(models.QuerySet):
    #: The lookup from a row to the person who owns it, e.g. ``"agent__owner"``.
    owner_path = "owner"

    def visible_to(self, user) -> VisibleQuerySet:
        if can_read_all(user):
            return self
        if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
            return self.none()
        return self.filter(**{self.owner_path: user})


def visible_by(owner_path: str) -> models.Manager:
    """The default manager of a model whose rows belong to ``owner_path``."""
    queryset = type(f"VisibleBy_{owner_path}", (VisibleQuerySet,), {"owner_path": owner_path})
    return queryset.as_manager()


def can_manage(actor: ActorLike, owned: Owned) -> bool:
    """An identity admin, or an agent owner acting on what they own (``owned.owner_id``: an agent,
    or a standing exception)."""
    if is_admin(actor):
        return True
    pk = getattr(actor, "pk", None)
    return pk is not None and owned.owner_id == pk and has_role(actor, AGENT_OWNER)


def require_can_manage(
    actor: ActorLike, owned: Owned, what: str = "do this", *, owner: str = "the agent's owner"
) -> None:
    if not can_manage(actor, owned):
        raise PermissionDenied(f"only {owner} or an identity admin may {what}")
