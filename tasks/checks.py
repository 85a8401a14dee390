"""The system check that runs with ``manage.py check`` (and runserver, migrate): the policy loads."""

from __future__ import annotations

from django.core import checks


@checks.register("mandate")
def policy_is_valid(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from tasks.policy import check_policy_dir, policy_dir

    _, problems = check_policy_dir(policy_dir())
    return [
        checks.Error(
            str(problem),
            hint="python manage.py check_policy shows every problem",
            id="mandate.E001",
            obj=str(policy_dir()),
        )
        for problem in problems
    ]
