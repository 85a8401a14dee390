"""``manage.py verify_audit_chain``: exit 0 when every chain holds, 1 naming the first bad row."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.services import verify_chain


class Command(BaseCommand):
    help = "Check every hash chain of the audit trail; exit 1 with the first bad row when one is broken."

    def handle(self, *args, **options):
        result = verify_chain()
        if result.ok:
            self.stdout.write(f"audit chain intact: {result.checked} rows checked")
            return
        bad = result.first_bad or {}
        raise CommandError(
            f"audit chain broken at row id={bad.get('id')} chain={bad.get('chain')} seq={bad.get('seq')}: "
            f"{bad.get('problem')} ({result.checked} rows checked)",
            returncode=1,
        )
