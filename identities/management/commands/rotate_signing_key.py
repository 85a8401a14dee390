"""``python manage.py rotate_signing_key [--immediately]`` — audited as ``key.rotated``."""

from django.core.management.base import BaseCommand

from audit import services as audit
from identities.keys import REFRESH_HINT_SECONDS, rotate_signing_key


class Command(BaseCommand):
    help = (
        "Publish a new credential signing key. It starts signing after the refresh hint "
        f"({REFRESH_HINT_SECONDS} s, so verifiers fetch it first); the old key keeps verifying "
        "until every token it signed has expired."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--immediately",
            action="store_true",
            help="sign with the new key now (for a compromised key); verifiers refetch on the new kid",
        )

    def handle(self, *args, immediately: bool = False, **options):
        key = rotate_signing_key(actor=audit.Actor.system("manage.py rotate_signing_key"), immediately=immediately)
        when = (
            "now" if key.status == key.Status.ACTIVE else f"in {REFRESH_HINT_SECONDS} s (when the sweep activates it)"
        )
        self.stdout.write(f"new signing key {key.kid} ({key.alg}) published; it signs {when}")
        self.stdout.write(key.kid)
