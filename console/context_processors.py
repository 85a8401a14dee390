from functools import cache

from console.roles import is_admin, roles_of


def console(request):
    user = getattr(request, "user", None)

    @cache
    def inbox_count():
        # Evaluated only when a template shows the counter (the console's nav, htmx out-of-band swaps).
        if user is None or not is_admin(user):
            return None
        from tasks.models import TaskEnvelope

        return TaskEnvelope.objects.filter(state=TaskEnvelope.State.PENDING).count()

    return {"mandate_roles": sorted(roles_of(user)) if user is not None else [], "inbox_count": inbox_count}
