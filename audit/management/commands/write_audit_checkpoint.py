"""``manage.py write_audit_checkpoint``: sign where every audit chain stands now and append it to
the external sink (what the beat job does every five minutes). Exit 1 when the sink refused it."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import Reason, sink_status, write_checkpoint


class Command(BaseCommand):
    help = "Write a signed audit checkpoint and deliver it (and any undelivered one) to the sink."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="write one even when no chain moved")

    def handle(self, *args, **options):
        checkpoint = write_checkpoint(reason=Reason.COMMAND, force=options["force"])
        if checkpoint is None:
            self.stdout.write("no chain moved since the newest checkpoint: nothing to sign")
        else:
            self.stdout.write(f"checkpoint #{checkpoint.seq} signed with {checkpoint.kid}")
        status = sink_status()
        if not status["ok"]:
            raise CommandError(
                f"{status['undelivered']} checkpoint(s) not delivered to the sink: {status['error']}", returncode=1
            )
        self.stdout.write("every checkpoint is in the sink")
