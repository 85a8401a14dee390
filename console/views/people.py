"""People, for identity admins: who can sign in, how (password or single sign-on), when they last
did, their open sessions and API tokens — and "sign out everywhere" and "deactivate"."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, OuterRef, Prefetch, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import admin_grants
from accounts.models import AdminGrant, ApiToken, SignInSession
from accounts.roles import ALL_ROLES, IDENTITY_ADMIN
from accounts.services import revoke_api_token
from accounts.sessions import deactivate_person, end_sessions, open_sessions
from console.views._common import console_view, done, refused, sort_choice, sort_column, sort_order
from core.errors import DomainError, ValidationFailed

PEOPLE_LIMIT = 500
# People are a small table (and the list stops at PEOPLE_LIMIT), so every column with one value per
# person may order it, in the database before the limit; the username (unique) breaks ties.
PEOPLE_SORTS = {
    "person": "username",
    "last-sign-in": "last_login",
    "sessions": "open_sessions",
    "tokens": "live_tokens",
    "status": "is_active",
}
PEOPLE_COLUMNS = (
    ("person", "Person"),
    ("", "Roles"),
    ("", "Signs in with"),
    ("last-sign-in", "Last sign-in"),
    ("sessions", "Open sessions"),
    ("tokens", "Live API tokens"),
    ("status", "Status"),
)


def _people():
    now = timezone.now()
    live_sessions = (
        SignInSession.objects.filter(
            user=OuterRef("pk"), session_key__in=Session.objects.filter(expire_date__gt=now).values("session_key")
        )
        .order_by()
        .values("user")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        get_user_model()
        .objects.select_related("external_account")
        .prefetch_related(Prefetch("groups", to_attr="role_groups"))
        .annotate(
            open_sessions=Coalesce(Subquery(live_sessions), 0),
            live_tokens=Count(
                "api_tokens",
                filter=Q(api_tokens__revoked_at__isnull=True)
                & (Q(api_tokens__expires_at__isnull=True) | Q(api_tokens__expires_at__gt=now)),
            ),
        )
        .order_by("username")
    )


def _row(user) -> dict:
    account = getattr(user, "external_account", None)
    return {
        "user": user,
        "roles": sorted(g.name for g in user.role_groups if g.name in ALL_ROLES),
        "source": "single sign-on" if account else "password",
        "account": account,
    }


@console_view(IDENTITY_ADMIN)
def people_list(request):
    sort = sort_choice(request, PEOPLE_SORTS, "person")
    people = list(_people().order_by(*sort_order(sort, PEOPLE_SORTS, tiebreak="username"))[:PEOPLE_LIMIT])
    context = {
        "rows": [_row(u) for u in people],
        "limit": PEOPLE_LIMIT,
        "columns": [sort_column(sort, key, label) for key, label in PEOPLE_COLUMNS],
    }
    return render(request, "console/people.html", context)


@console_view(IDENTITY_ADMIN)
def person_detail(request, pk: int):
    person = get_object_or_404(_people(), pk=pk)
    grant = (
        AdminGrant.objects.filter(user=person, state=AdminGrant.State.PENDING).select_related("requested_by").first()
    )
    context = {
        "row": _row(person),
        "all_roles": ALL_ROLES,
        "grant": grant,
        "grant_block": admin_grants.grant_refusal(grant=grant, actor=request.user) if grant else None,
        "sso": admin_grants.managed_by_sso(person),
        "sessions": list(open_sessions(person)[:100]),
        "tokens": list(ApiToken.objects.filter(user=person).order_by("-created_at")[:200]),
    }
    return render(request, "console/person_detail.html", context)


@require_POST
@console_view(IDENTITY_ADMIN)
def person_sign_out(request, pk: int):
    person = get_object_or_404(get_user_model(), pk=pk)
    ended = end_sessions(
        user=person, actor=request.user, reason="signed out everywhere by an identity admin", request=request
    )
    page = reverse("person-page", args=[person.pk])
    return done(request, page, f"Ended {ended} session{'' if ended == 1 else 's'} of {person.get_username()}.")


@require_POST
@console_view(IDENTITY_ADMIN)
def person_deactivate(request, pk: int):
    person = get_object_or_404(get_user_model(), pk=pk)
    page = reverse("person-page", args=[person.pk])
    reason = request.POST.get("reason", "").strip()
    if not reason:
        return refused(request, page, ValidationFailed("say why this person is deactivated", field="reason"))
    if person.pk == request.user.pk:
        return refused(request, page, ValidationFailed("you cannot deactivate yourself", field="person"))
    admins = (
        get_user_model().objects.filter(is_active=True).filter(Q(groups__name=IDENTITY_ADMIN) | Q(is_superuser=True))
    )
    if person.is_active and admins.filter(pk=person.pk).exists() and admins.distinct().count() <= 1:
        return refused(request, page, ValidationFailed("the last active identity admin cannot be deactivated"))
    deactivate_person(user=person, actor=request.user, reason=reason, request=request)
    return done(
        request, page, f"{person.get_username()} is deactivated; their API tokens are revoked and sessions ended."
    )


@require_POST
@console_view(IDENTITY_ADMIN)
def person_token_revoke(request, pk: int, token: str):
    person = get_object_or_404(get_user_model(), pk=pk)
    try:
        api_token = ApiToken.objects.select_related("user").get(pk=token, user=person)
    except (ApiToken.DoesNotExist, ValueError, DjangoValidationError):
        raise Http404 from None
    revoke_api_token(token=api_token, actor=request.user, request=request, reason="revoked by an identity admin")
    return done(request, reverse("person-page", args=[person.pk]), f"Token “{api_token.name}” revoked.")


@require_POST
@console_view(IDENTITY_ADMIN)
def person_roles(request, pk: int):
    """Set a person's roles (accounts.admin_grants.change_roles): identity-admin is requested, not
    given, and waits for a second admin; SSO-managed roles and the last admin are refused there."""
    person = get_object_or_404(get_user_model(), pk=pk)
    page = reverse("person-page", args=[person.pk])
    try:
        grant = admin_grants.change_roles(
            user=person, roles=request.POST.getlist("roles"), actor=request.user, request=request
        )
    except DomainError as exc:
        return refused(request, page, exc)
    note = " Making them an identity admin waits for another admin's approval." if grant else ""
    return done(request, page, f"Roles of {person.get_username()} saved.{note}")


@require_POST
@console_view(IDENTITY_ADMIN)
def person_admin_grant(request, pk: int):
    person = get_object_or_404(get_user_model(), pk=pk)
    page = reverse("person-page", args=[person.pk])
    grant = get_object_or_404(AdminGrant, user=person, state=AdminGrant.State.PENDING)
    approve = request.POST.get("decision") == "approve"
    try:
        admin_grants.decide_admin_grant(grant=grant, actor=request.user, approve=approve, request=request)
    except DomainError as exc:
        return refused(request, page, exc)
    verdict = "is now an identity admin" if approve else "will not be an identity admin"
    return done(request, page, f"{person.get_username()} {verdict}.")
