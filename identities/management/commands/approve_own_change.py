"""``python manage.py approve_own_change AGENT --reason TEXT`` — break-glass for an installation
with a single identity admin, audited as ``agent.change_approved`` with ``break_glass: true``."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.roles import IDENTITY_ADMIN, is_admin
from core.errors import DomainError
from identities import services
from identities.models import Agent


class Command(BaseCommand):
    help = (
        "Approve the pending change of ceiling or longest envelope an identity admin requested for AGENT, "
        "as that same admin, when no other identity admin exists to approve it. Audited with the reason."
    )

    def add_arguments(self, parser):
        parser.add_argument("agent", help="the agent's slug")
        parser.add_argument("--reason", required=True, help="why nobody else can approve (recorded in the audit trail)")

    def handle(self, *args, agent: str, reason: str, **options):
        reason = (reason or "").strip()
        if not reason:
            raise CommandError("--reason must say why this change cannot wait for another identity admin")
        target = Agent.objects.filter(slug=agent).first()
        if target is None:
            raise CommandError(f"no agent {agent!r}")
        change = services.pending_change_of(target)
        if change is None:
            raise CommandError(f"agent {agent} has no change waiting for approval")
        requester = change.requested_by
        if not is_admin(requester):
            raise CommandError(
                f"{requester.get_username()} is not an identity admin; an identity admin approves this change "
                f"(POST /api/v1/agents/{agent}/pending-change/approve or the console's approval queue)"
            )
        others = [
            user.get_username()
            for user in get_user_model()
            .objects.filter(is_active=True)
            .exclude(pk=requester.pk)
            .filter(groups__name=IDENTITY_ADMIN)
            .order_by("username")
            .distinct()
        ] + [
            user.get_username()
            for user in get_user_model().objects.filter(is_active=True, is_superuser=True).exclude(pk=requester.pk)
        ]
        if others:
            raise CommandError(f"another identity admin can approve this change: ask {', '.join(sorted(set(others)))}")
        try:
            services.approve_pending_change(agent=target, actor=requester, comment=reason, break_glass=True)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        target.refresh_from_db()
        self.stdout.write(
            f"approved for {agent} (break-glass, audited): ceiling {', '.join(target.ceiling) or 'none'}, "
            f"longest envelope {target.max_envelope_seconds} s"
        )
