"""``manage.py create_api_token USERNAME [--name N] [--expires-days D]``: the token alone on the last line."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.services import MAX_TOKEN_DAYS, create_api_token
from audit import services as audit
from core.errors import ValidationFailed


class Command(BaseCommand):
    help = "Create an API token for a user and print it (shown this once; only its hash is kept)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            dest="expires_days",
            help=f"days until it expires (1 to {MAX_TOKEN_DAYS}); default never",
        )

    def handle(self, *args, username: str, name: str, expires_days: int | None, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}; create one with add_user first")
        try:
            issued = create_api_token(
                user=user, actor=audit.Actor.system("manage.py create_api_token"), name=name, expires_days=expires_days
            )
        except ValidationFailed as exc:
            raise CommandError(f"{exc.field}: {exc.message}") from None
        expiry = issued.token.expires_at.isoformat() if issued.token.expires_at else "never"
        self.stderr.write(
            f"API token {issued.token.name!r} for {username} (expires: {expiry}). It is shown once; store it now."
        )
        self.stdout.write(issued.secret)
