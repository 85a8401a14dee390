"""Helpers shared by the console views: role gates, htmx-or-page rendering, keyset pages, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import F, Q
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


def sort_column(current: str, key: str, label: str, *, hidden: bool = False) -> dict:
    """A table header: sortable when ``key`` is set, with the link that sorts by it (ascending, or
    descending when it is already ascending) and the aria-sort value it has now; ``hidden`` names a
    column for screen readers only (a checkbox column)."""
    direction = ""
    if key and current.lstrip("-") == key:
        direction = "descending" if current.startswith("-") else "ascending"
    return {
        "key": key,
        "label": label,
        "aria_sort": direction,
        "hidden": hidden,
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
    """Keyset pagination (never OFFSET, never a full COUNT on a big table).

    On ``id`` by default (``?before=<id>``); with ``by_time`` (e.g. ``"occurred_at"``) by that time
    with ``id`` breaking ties (``?before=<epoch µs>.<id>``), so rows reported late still sit where they
    happened. Newest first unless ``ascending``. The filter bounds the sort key first, so an index on
    (key, id) — read forwards or backwards — starts at the cursor.

    ``sort`` names a non-default order (the ``?sort=`` value): its cursors carry it (``<sort>~…``), and
    a cursor made under another order is not continued but starts again at the first page, so
    changing the order by hand never skips, repeats or fails.
    """

    def __init__(
        self,
        queryset,
        request,
        *,
        size: int | None = None,
        by_time: str | None = None,
        ascending: bool = False,
        sort: str = "",
    ):
        size = PAGE_SIZE if size is None else size
        self.sort = sort
        self.by_time = by_time
        cursor = _cursor_body(request.GET.get("before", ""), sort)
        sign = "" if ascending else "-"
        after, beyond = ("gt", "gte") if ascending else ("lt", "lte")
        self.before = None
        if by_time is None:
            qs = queryset.order_by(f"{sign}id")
            if cursor.isdigit() and len(cursor) <= 19:
                self.before = int(cursor)
                qs = qs.filter(**{f"id__{after}": self.before})
        else:
            qs = queryset.order_by(f"{sign}{by_time}", f"{sign}id")
            position = _time_cursor(cursor)
            if position is not None:
                self.before = cursor
                at, last_id = position
                qs = qs.filter(**{f"{by_time}__{beyond}": at}).filter(
                    Q(**{f"{by_time}__{after}": at}) | Q(**{by_time: at, f"id__{after}": last_id})
                )
        rows = list(qs[: size + 1])
        self.has_next = len(rows) > size
        self.rows = rows[:size]
        self.next_before = None
        if self.has_next and self.rows:
            last = self.rows[-1]
            if by_time is None:
                body = str(last.id)
            else:
                micros = (getattr(last, by_time) - EPOCH) // timedelta(microseconds=1)
                body = f"{micros}.{last.id}"
            self.next_before = f"{sort}~{body}" if sort else body
        self.is_first = self.before is None


def _cursor_body(value: str, sort: str) -> str:
    """The cursor's position when it was made under ``sort`` (``''`` = the default order), else ''."""
    made_under, tilde, body = value.rpartition("~")
    if (made_under if tilde else "") != sort:
        return ""
    return body


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time_cursor(value: str) -> tuple[datetime, int] | None:
    micros, _, last_id = value.partition(".")
    if not (micros.isdigit() and last_id.isdigit()) or len(micros) > 18 or len(last_id) > 19:
        return None
    try:
        return EPOCH + timedelta(microseconds=int(micros)), int(last_id)
    except OverflowError:
        return None


# A paged list counts its rows up to this many and then says "10,000+" ("at least"): one bounded
# query (COUNT over a LIMIT subquery, which reads at most cap index entries), never a COUNT(*) over
# millions of rows.
COUNT_CAP = 10_000


class CappedCount:
    """How many rows a filtered list holds, exact below ``cap`` and "cap+" from it on."""

    def __init__(self, queryset, page: KeysetPage | None = None, cap: int | None = None):
        self.cap = COUNT_CAP if cap is None else cap
        if page is not None and page.is_first and not page.has_next:
            self.n = len(page.rows)  # the whole list is on this page: no query
        else:
            self.n = queryset.order_by()[: self.cap].count()
        self.capped = self.n >= self.cap

    def text(self, singular: str, plural: str = "") -> str:
        noun = singular if self.n == 1 and not self.capped else (plural or singular + "s")
        return f"{self.cap:,}+ {noun}" if self.capped else f"{self.n:,} {noun}"


def sort_choice(request, sorts, default: str) -> str:
    """The ``?sort=`` value when it names one of ``sorts`` (key, or ``-key`` for descending), else the
    default, quietly: an old bookmark or a hand-edited link still shows the list."""
    value = request.GET.get("sort", "")
    return value if value and value.lstrip("-") in sorts else default


def sorted_page(queryset, request, sorts: dict[str, str | None], default: str, columns) -> tuple[KeysetPage, dict]:
    """A ``KeysetPage`` in the ``?sort=`` order (``sorts`` maps a key to the time field it pages by,
    None for the id) and what the table's template needs of it: the page, the sort, the parameter
    links carry (empty for the default order) and the headers."""
    sort = sort_choice(request, sorts, default)
    param = "" if sort == default else sort
    page = KeysetPage(
        queryset,
        request,
        by_time=sorts[sort.lstrip("-")],
        ascending=not sort.startswith("-"),
        sort=param,
    )
    context = {
        "page": page,
        "sort": sort,
        "sort_param": param,
        "columns": [sort_column(sort, key, label) for key, label in columns],
    }
    return page, context


def sort_order(sort: str, sorts: dict[str, str], tiebreak: str = "id") -> list:
    """``order_by`` arguments for a ``sort_choice`` value: its field (empty values last either way),
    then ``tiebreak`` (unique) in the same direction, so equal keys never shuffle between loads."""
    field = sorts[sort.lstrip("-")]
    if sort.startswith("-"):
        return [F(field).desc(nulls_last=True), f"-{tiebreak}"]
    return [F(field).asc(nulls_last=True), tiebreak]
