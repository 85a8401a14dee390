"""``manage.py verify_audit_chain [--checkpoints FILE]``: exit 0 when every chain holds, 1 naming the
first bad row or checkpoint.

Without ``--checkpoints`` the database's own checkpoints are used; with it, the external file's
(``MANDATE_AUDIT_CHECKPOINT_FILE``), which someone holding only the database cannot rewrite.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.services import verify_chain
from tools.verify_audit import describe, read_jsonl


class Command(BaseCommand):
    help = "Check every hash chain of the audit trail; exit 1 with the first bad row when one is broken."

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoints",
            metavar="FILE",
            help="verify against the checkpoints in this file (the external sink) instead of the database's",
        )

    def handle(self, *args, **options):
        records = None
        if options["checkpoints"]:
            try:
                records = list(read_jsonl(options["checkpoints"]))
            except OSError as exc:
                raise CommandError(f"cannot read --checkpoints: {exc.strerror}", returncode=2) from None
        result = verify_chain(checkpoint_records=records)
        for note in result.notes:
            self.stdout.write(f"note: {note}")
        if result.ok:
            self.stdout.write(
                f"audit chain intact: {result.checked} rows checked against {result.checkpoints} checkpoint(s)"
            )
            return
        raise CommandError(
            f"audit chain broken at {describe(result.first_bad or {})} ({result.checked} rows checked)",
            returncode=1,
        )
