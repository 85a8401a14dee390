from console.roles import roles_of


def console(request):
    user = getattr(request, "user", None)
    return {"mandate_roles": sorted(roles_of(user)) if user is not None else []}
