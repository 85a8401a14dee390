"""Check the policy directory: every problem with file and line, or the version that would run."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from tasks.policy import check_policy_dir, policy_dir


class Command(BaseCommand):
    help = "Validate the policy (TOML files and Cedar guardrails against their schema)."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("directory", nargs="?", help="policy directory (default: MANDATE_POLICY_DIR)")

    def handle(self, *args, directory: str | None = None, **options):
        path = Path(directory) if directory else policy_dir()
        policy, problems = check_policy_dir(path)
        if problems:
            for problem in problems:
                self.stderr.write(str(problem))
            raise CommandError(f"the policy in {path} is broken: {len(problems)} problem(s)")
        guardrails = len(policy.guardrails.by_id) if policy.guardrails else 0
        self.stdout.write(
            self.style.SUCCESS(
                f"policy OK: version {policy.version} from {path} — {len(policy.scope_risk)} scopes, "
                f"{len(policy.raisers)} risk raisers, {len(policy.auto_approve_rules)} auto-approve rules, "
                f"{guardrails} guardrails"
            )
        )
