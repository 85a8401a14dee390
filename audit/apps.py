from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate

        from audit import checks, guard  # noqa: F401  (registers the deploy checks)

        # Evidence tables are append-only (audit/guard.py): SQLite connections need the function
        # their triggers ask, and every migrate re-installs the triggers.
        connection_created.connect(guard.register_sqlite_function, dispatch_uid="mandate-evidence-bypass")
        post_migrate.connect(guard.install_after_migrate, sender=self, dispatch_uid="mandate-evidence-guard")
