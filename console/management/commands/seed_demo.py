"""Demo data for a newcomer: owners, admins, agents, instances with clones and sub-agents, envelopes
in every state (made through the real services, so the audit trail is real too), credentials and
activity. A second run changes nothing; ``--reset`` (development only) empties the database first,
so the demo starts again from a known state without moving files aside by hand. What it builds is in
``console/demo/`` (``world.py``, ``posture.py``); this command takes the arguments and says what it did."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from audit.guard import NotOwner, evidence_bypass
from console.demo.posture import seed_posture_demo
from console.demo.world import AGENTS, DEFAULT_PASSWORD, USERS, seed_people, seed_world
from identities.models import Agent


class Command(BaseCommand):
    help = "Fill an empty database with a living demo: users, agents, envelopes in every state, activity."

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Development only: empty the whole database (people, agents, audit trail, activity) and "
            "seed the demo again, so it starts from a known state.",
        )

    def handle(self, *args, **options):
        if options["reset"]:
            self._reset()
        password = os.environ.get("MANDATE_PASSWORD") or DEFAULT_PASSWORD
        users, given = seed_people(password)
        if Agent.objects.filter(slug=AGENTS[0][0]).exists():
            self.stdout.write("Demo agents exist already; left as they are.")
        else:
            with transaction.atomic():
                seed_world(users)
        # Weeks of history for the posture page: granted vs used, standing access, an orphaned agent.
        seed_posture_demo(stdout=self.stdout)
        base = settings.MANDATE_PUBLIC_URL or f"http://127.0.0.1:{os.environ.get('PORT') or 8000}"
        if given:
            shown = "from MANDATE_PASSWORD" if os.environ.get("MANDATE_PASSWORD") else DEFAULT_PASSWORD
            self.stdout.write(self.style.SUCCESS(f"\nDemo logins (password: {shown}):"))
            for username, full_name, roles in USERS:
                if username in given:
                    self.stdout.write(f"  {username:<8} {', '.join(roles):<16} {full_name}")
        kept = [username for username, _, _ in USERS if username not in given]
        if kept:
            self.stdout.write(f"Existing users kept their own passwords: {', '.join(kept)}")
        self.stdout.write(f"Sign in at {base}/login/ — ada and alan have envelopes waiting in Approvals.")

    def _reset(self) -> None:
        """Empty every table, evidence included. Evidence is append-only for the application; this is
        the one sanctioned wipe besides retention, so it runs only in development, as the database's
        owner, with the guard's bypass naming why (a log line), and says what it did."""
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo --reset empties the whole database, so it runs only in development (DEBUG=true, "
                "as `make run` sets up). Nothing was changed."
            )
        try:
            with evidence_bypass(reason="seed_demo --reset (development)"):
                call_command("flush", interactive=False, verbosity=0)
        except NotOwner as exc:
            raise CommandError(f"seed_demo --reset: {exc}. Nothing was changed.") from exc
        moved = self._move_checkpoint_file_aside()
        self.stdout.write(
            self.style.WARNING("Reset: the database was emptied (people, agents, audit trail, activity).")
        )
        if moved:
            self.stdout.write(f"The old audit checkpoints no longer match the new trail; kept as {moved}")

    @staticmethod
    def _move_checkpoint_file_aside() -> str | None:
        """Checkpoints vouch for the trail that was just emptied; verification against them would report
        the new trail as rewritten. Keep the old file under a dated name instead of deleting it."""
        path = settings.MANDATE_AUDIT_CHECKPOINT_FILE
        if not path or not os.path.exists(path):
            return None
        target = f"{path}.before-reset-{timezone.now():%Y%m%dT%H%M%SZ}"
        os.replace(path, target)
        return target
