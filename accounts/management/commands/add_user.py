"""``manage.py add_user USERNAME --role ROLE [--role ROLE] [--email E] [--audience URI ...]``: create or
update a person; ``--audience`` (repeatable, gateways only) sets exactly the audiences a gateway serves."""

from __future__ import annotations

import getpass
import os
import sys

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.roles import ALL_ROLES, GATEWAY
from accounts.services import set_gateway_audiences, set_user_roles
from audit import services as audit
from core.errors import DomainError


class Command(BaseCommand):
    help = (
        "Create or update a user with the given roles (exactly these Mandate roles afterwards). "
        "The password comes from MANDATE_PASSWORD when set; otherwise it is asked for on a terminal; "
        "otherwise a new user gets no usable password (API tokens still work)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--role", action="append", required=True, choices=ALL_ROLES, dest="roles", help="repeat for several roles"
        )
        parser.add_argument("--email", default=None)
        parser.add_argument(
            "--audience",
            action="append",
            dest="audiences",
            default=None,
            help="an audience this gateway serves (repeat for several; exactly these afterwards). "
            "Without it a new gateway serves the deployment's default audience and an existing one keeps its own.",
        )

    def handle(self, *args, username: str, roles: list[str], email: str | None, audiences: list[str] | None, **options):
        if audiences is not None and GATEWAY not in roles:
            raise CommandError("--audience is for users with the gateway role")
        User = get_user_model()
        actor = audit.Actor.system("manage.py add_user")
        password = os.environ.get("MANDATE_PASSWORD") or None
        with transaction.atomic():
            user = User.objects.select_for_update().filter(username=username).first()
            created = user is None
            if created:
                user = User(username=username, email=email or "")
                try:
                    user.full_clean(exclude=["password"])
                except ValidationError as exc:
                    raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
            elif email is not None:
                user.email = email
            if password is None and created and sys.stdin.isatty():
                password = self._ask_password(user)
            if password is not None:
                self._validate(password, user)
                user.set_password(password)
            elif created:
                user.set_unusable_password()
            user.save()
            if created:
                audit.record(
                    "user.created",
                    actor=actor,
                    target=("user", user.pk, username),
                    after={"username": username, "email": user.email},
                )
            changed = set_user_roles(user=user, roles=roles, actor=actor)
            served = None
            if audiences is not None:
                try:
                    served = set_gateway_audiences(user=user, audiences=audiences, actor=actor)
                except DomainError as exc:
                    raise CommandError(f"--audience: {exc.message}") from None
        verb = "created" if created else "updated"
        roles_text = ", ".join(sorted(set(roles)))
        self.stdout.write(
            f"{verb} {username} with role(s) {roles_text}" + ("" if changed or created else " (roles unchanged)")
        )
        if served is not None:
            self.stdout.write(
                f"{username} serves: {', '.join(served) or settings.MANDATE_DEFAULT_AUDIENCE + ' (default)'}"
            )

    def _validate(self, password: str, user) -> None:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("password refused: " + " ".join(exc.messages)) from None

    def _ask_password(self, user) -> str:
        while True:
            first = getpass.getpass("Password: ")
            if first != getpass.getpass("Password (again): "):
                self.stderr.write("The passwords differ; try again.")
                continue
            try:
                validate_password(first, user)
            except ValidationError as exc:
                self.stderr.write(" ".join(exc.messages))
                continue
            return first
