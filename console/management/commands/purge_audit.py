"""``manage.py purge_audit --before DATE --yes``: retention, the one way evidence leaves the database.

Needs the role that owns the tables (the evidence triggers refuse every other role). In order:
a checkpoint of everything (delivered to the sink, or nothing is purged); then, in one
transaction, each chain's rows older than DATE are deleted from its start (a chain stays a
contiguous run), the activity record older than DATE too, an ``audit.purged`` event is appended,
and a checkpoint records each chain's new floor (where it now starts, and the hash it links to),
so verification — offline too — knows the missing start was retention, not tampering.
"""

from __future__ import annotations

from datetime import datetime, time

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit import services as audit
from audit.checkpoints import (
    Reason,
    deliver_pending,
    sink_status,
    write_checkpoint,
    write_checkpoint_in_transaction,
)
from audit.guard import NotOwner, connected_as_owner, evidence_bypass
from audit.models import AuditEvent, AuditJti
from tasks.models import ActivityEvent


def parse_cutoff(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError("--before: not a date (YYYY-MM-DD) or an ISO 8601 time")
        moment = datetime.combine(day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment


class Command(BaseCommand):
    help = "Delete audit and activity rows older than --before, checkpointed and audited (needs the owner role)."

    def add_arguments(self, parser):
        parser.add_argument("--before", required=True, help="delete rows older than this date or time")
        parser.add_argument("--yes", action="store_true", help="really delete (without it, only count)")

    def handle(self, *args, **options):
        cutoff = parse_cutoff(options["before"])
        if cutoff > timezone.now():
            raise CommandError("--before: must not be in the future")
        if not connected_as_owner():
            raise CommandError(
                "purge_audit needs the database role that owns the tables (the one migrations run as); "
                "the application's role cannot delete evidence",
                returncode=1,
            )
        # Per chain, everything up to its newest row older than the cutoff: a chain stays contiguous.
        spans = {
            chain: (first, last)
            for chain, first, last in AuditEvent.objects.filter(at__lt=cutoff)
            .order_by()
            .values("chain")
            .annotate(first=Min("seq"), last=Max("seq"))
            .values_list("chain", "first", "last")
        }
        floors = {chain: last for chain, (_, last) in spans.items()}
        audit_rows = sum(last - first + 1 for first, last in spans.values())
        activity_rows = ActivityEvent.objects.filter(occurred_at__lt=cutoff).count()
        if not options["yes"]:
            self.stdout.write(
                f"would delete {audit_rows} audit row(s) in {len(floors)} chain(s) and {activity_rows} activity "
                f"row(s) older than {cutoff.isoformat()}; run again with --yes"
            )
            return
        # Everything up to now is signed and outside the database before anything is deleted.
        write_checkpoint(reason=Reason.COMMAND)
        status = sink_status()
        if not status["ok"]:
            raise CommandError(f"the checkpoint sink is failing, nothing purged: {status['error']}", returncode=1)
        try:
            with transaction.atomic(), evidence_bypass(reason=f"purge_audit --before {cutoff.isoformat()}"):
                signed_floors = {}
                deleted_audit = 0
                for chain, last in sorted(floors.items()):
                    floor_hash = AuditEvent.objects.get(chain=chain, seq=last).hash
                    doomed = AuditEvent.objects.filter(chain=chain, seq__lte=last)
                    AuditJti.objects.filter(event__in=doomed.values("id")).delete()
                    deleted_audit += doomed.delete()[0]
                    signed_floors[chain] = (last, floor_hash)
                deleted_activity = ActivityEvent.objects.filter(occurred_at__lt=cutoff).delete()[0]
                audit.record(
                    "audit.purged",
                    actor=audit.Actor.system("purge_audit"),
                    target=("audit", "trail", "audit trail"),
                    after={
                        "before": cutoff.isoformat(),
                        "audit_rows": deleted_audit,
                        "activity_rows": deleted_activity,
                        "chains": {chain: {"floor": seq} for chain, (seq, _) in signed_floors.items()},
                    },
                    reason="retention",
                )
                checkpoint = write_checkpoint_in_transaction(reason=Reason.PURGE, floors=signed_floors, force=True)
        except NotOwner as exc:
            raise CommandError(str(exc), returncode=1) from None
        deliver_pending()
        self.stdout.write(
            f"purged {deleted_audit} audit row(s) from {len(signed_floors)} chain(s) and {deleted_activity} activity "
            f"row(s) older than {cutoff.isoformat()}; checkpoint #{checkpoint.seq} records the new floors"
        )
        status = sink_status()
        if not status["ok"]:
            raise CommandError(f"the purge checkpoint is not in the sink yet: {status['error']}", returncode=1)
