"""Helpers shared by the console views: role gates, htmx-or-page rendering, keyset pages, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import Q
from django.shortcuts import redirect, render

from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN, has_role
from core.errors import DomainError

CONSOLE_ROLES = (IDENTITY_ADMIN, AGENT_OWNER, AUDITOR)
PAGE_SIZE = 50


def console_view(*roles: str):
    """Signed in, and holding one of ``roles`` (any console role by default); otherwise 403."""
    needed = roles or CONSOLE_ROLES

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, *needed):
                names = " or ".join(needed)
                raise DjangoPermissionDenied(f"This page needs the {names} role.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def page_or_partial(request, page: str, partial: str, context: dict, *, status: int = 200):
    """The whole page, or only its partial when htmx asks for it."""
    template = partial if request.htmx and not request.htmx.boosted else page
    return render(request, template, context, status=status)


def form_number(value):
    """A form field as an int when it is one; otherwise the raw text, so the service names the field."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return text


def split_list(value: str | None) -> list[str]:
    """Comma-, space- or newline-separated words from a text field."""
    if not value:
        return []
    return [part for part in value.replace(",", " ").split() if part]


def active_filters(*filters: tuple[str, str, str]) -> list[dict[str, str]]:
    """The filters in force, as (parameter, what it means, value) → items the banner names, each
    with the parameter to drop for its own 'remove' link."""
    return [{"param": param, "label": label, "value": value} for param, label, value in filters if value]


def sort_column(current: str, key: str, label: str) -> dict:
    """A table header: sortable when ``key`` is set, with the link that sorts by it (ascending, or
    descending when it is already ascending) and the aria-sort value it has now."""
    direction = ""
    if key and current.lstrip("-") == key:
        direction = "descending" if current.startswith("-") else "ascending"
    return {
        "key": key,
        "label": label,
        "aria_sort": direction,
        "next": (f"-{key}" if direction == "ascending" else key) if key else "",
    }


def done(request, url: str, message: str):
    messages.success(request, message)
    return redirect(url, permanent=False)


def refused(request, url: str, error: DomainError):
    """A plain form post that the domain refused: say why on the page it came from."""
    label = f"{error.field}: " if error.field else ""
    messages.error(request, f"{label}{error.message}")
    return redirect(url)


class KeysetPage:
    """Newest-first keyset pagination — never a COUNT on a big table.

    On ``id`` by default (``?before=<id>``); with ``by_time`` (e.g. ``"occurred_at"``), newest first by
    that time with ``id`` breaking ties (``?before=<epoch µs>.<id>``), so rows reported late still sit
    where they happened. The filter bounds the time first, so an index on (time, id) starts at the cursor.
    """

    def __init__(self, queryset, request, *, size: int = PAGE_SIZE, by_time: str | None = None):
        before = request.GET.get("before", "")
        self.before = None
        if by_time is None:
            qs = queryset.order_by("-id")
            if before.isdigit():
                self.before = int(before)
                qs = qs.filter(id__lt=self.before)
        else:
            qs = queryset.order_by(f"-{by_time}", "-id")
            cursor = _time_cursor(before)
            if cursor is not None:
                self.before = before
                at, last_id = cursor
                qs = qs.filter(**{f"{by_time}__lte": at}).filter(
                    Q(**{f"{by_time}__lt": at}) | Q(**{by_time: at, "id__lt": last_id})
                )
        rows = list(qs[: size + 1])
        self.has_next = len(rows) > size
        self.rows = rows[:size]
        self.next_before = None
        if self.has_next and self.rows:
            last = self.rows[-1]
            if by_time is None:
                self.next_before = last.id
            else:
                at = getattr(last, by_time)
                micros = (at - EPOCH) // timedelta(microseconds=1)
                self.next_before = f"{micros}.{last.id}"
        self.is_first = self.before is None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time_cursor(value: str) -> tuple[datetime, int] | None:
    micros, _, last_id = value.partition(".")
    if not (micros.isdigit() and last_id.isdigit()) or len(micros) > 18:
        return None
    return EPOCH + timedelta(microseconds=int(micros)), int(last_id)
