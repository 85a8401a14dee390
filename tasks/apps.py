import sys

from django.apps import AppConfig

# Commands that report a broken policy themselves instead of refusing to start.
_REPORTING_COMMANDS = {"check_policy", "check"}


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Task envelopes"

    def ready(self):
        from django.core.signals import setting_changed

        from tasks import checks  # noqa: F401  (registers the system check)
        from tasks.policy import active_policy, reset_policy_cache

        def policy_dir_changed(*, setting, **kwargs):
            if setting == "MANDATE_POLICY_DIR":
                reset_policy_cache()

        setting_changed.connect(policy_dir_changed, weak=False, dispatch_uid="mandate-policy-dir")
        if len(sys.argv) > 1 and sys.argv[1] in _REPORTING_COMMANDS:
            return
        # Refuse to start (web, worker, beat, any command) on a broken policy: PolicyError is an
        # ImproperlyConfigured whose message lists every problem with file and line.
        active_policy()
