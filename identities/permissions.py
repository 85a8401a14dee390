"""One permission vocabulary for everything that belongs to an agent's owner.

- ``Model.objects.visible_to(user)``: the rows a person may read. Identity admins and auditors see
  every row; an agent owner sees the rows of their own agents; anyone else (anonymous, an agent's
  own credential) sees none. Each scoped model names the path from its rows to the owner.
- ``can_manage(actor, agent)``: may this person change the agent and what hangs off it? Identity
  admins, and agent owners for their own agents; auditors and gateways change nothing.
- ``require_can_manage(...)``: the same, as the domain refusal the API and console render.
- ``pause_mark(actor, reason)`` / ``require_can_resume(actor, row)``: a pause by an identity admin
  or by a policy rule (any actor that is not a person) is a lock only an identity admin lifts; an
  owner's own pause stays theirs to lift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from django.db import models

from accounts.roles import AGENT_OWNER, can_read_all, has_role, is_admin
from audit.services import Actor, ActorLike
from core.errors import PauseLocked, PermissionDenied

if TYPE_CHECKING:
    from identities.models import Agent, Instance, PauseMark


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


def _is_person(actor: ActorLike) -> bool:
    return actor is not None and not isinstance(actor, Actor)


def pauser_label(actor: ActorLike) -> str:
    """How a pause names who made it: a person's username, or the rule or job that acted."""
    if actor is None:
        return "the system"
    if isinstance(actor, Actor):
        return f"{actor.type} {actor.name}"
    return actor.get_username()


def pause_is_lock(actor: ActorLike) -> bool:
    """An identity admin's pause, or one the code made on a rule's behalf, is a lock."""
    return not _is_person(actor) or is_admin(actor)


def pause_mark(actor: ActorLike, reason: str) -> PauseMark:
    from identities.models import PauseMark

    return PauseMark(by=pauser_label(actor), reason=reason or "", locked=pause_is_lock(actor))


def require_can_resume(actor: ActorLike, row: Agent | Instance, what: str) -> None:
    """Refuse a person who is not an identity admin lifting a locked pause, saying who paused it and
    why. Non-person actors (code the system decided on) pass, as in ``_require_manager``."""
    if not row.pause_locked or not _is_person(actor) or is_admin(actor):
        return
    why = f" ({row.pause_reason})" if row.pause_reason else ""
    raise PauseLocked(f"{what} was paused by {row.paused_by}{why}; only an identity admin may resume it")
