from functools import cache

from accounts.roles import is_admin, roles_of


def console(request):
    user = getattr(request, "user", None)

    @cache
    def inbox_count():
        # What this admin could approve now; evaluated only when a template shows the counter
        # (the console's nav and the htmx out-of-band swaps after a decision).
        if user is None or not is_admin(user):
            return None
        from tasks.selectors import pending_inbox_count

        return pending_inbox_count(user)

    return {"mandate_roles": sorted(roles_of(user)) if user is not None else [], "inbox_count": inbox_count}
