"""``manage.py unlock_sign_in USERNAME [--address IP] [--reason TEXT]``: lift a sign-in lockout, audited.

The audited counterpart of django-axes' ``axes_reset_username`` / ``axes_reset_ip_username`` (which
also work, but leave no audit row).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.lockout import unlock_sign_in
from audit import services as audit
from core.errors import DomainError


class Command(BaseCommand):
    help = "Unlock an account locked out of sign-in by wrong passwords (from one address, or from all)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--address", default=None, help="unlock only from this client address")
        parser.add_argument("--reason", default="", help="why, for the audit record")

    def handle(self, *args, username: str, address: str | None, reason: str, **options):
        try:
            cleared = unlock_sign_in(
                username=username,
                address=address,
                actor=audit.Actor.system("manage.py unlock_sign_in"),
                reason=reason or "unlocked by an operator",
            )
        except DomainError as exc:
            raise CommandError(f"{exc.field}: {exc.message}") from None
        if not cleared:
            # Unlocking is idempotent: the account can sign in, which is what was asked.
            where = f" from {address}" if address else ""
            self.stdout.write(f"{username} is not locked out{where}; nothing to unlock")
            return
        where = f" from {address}" if address else " from every address"
        self.stdout.write(f"{username} unlocked{where}")
