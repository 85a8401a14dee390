"""Small presentation helpers for the console templates: times, durations, state badges."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, date, datetime, timedelta

from django import template
from django.http import QueryDict
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def absolute(value: datetime) -> str:
    """The console's one absolute format, in UTC with the zone said: '2 Dec 2026, 00:50 UTC'.
    console.js rewrites it in the viewer's zone (same shape, that zone's name)."""
    utc = value.astimezone(UTC)
    return f"{utc.day} {MONTHS[utc.month - 1]} {utc.year}, {utc:%H:%M} UTC"


def day(value: date) -> str:
    """A calendar date (no time of day, so no zone): '28 Nov 2026'."""
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"


@register.simple_tag
def stamp(value: datetime | date | None, empty: str = "—"):
    """An absolute time only (tables of history where 'ago' adds nothing); dates print as dates."""
    if value is None:
        return empty
    if not isinstance(value, datetime):
        return day(value)
    utc = value.astimezone(UTC)
    return format_html(
        '<time datetime="{}" title="{}" data-when>{}</time>',
        utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
        absolute(utc),
    )


@register.simple_tag
def when(value: datetime | None, empty: str = "—"):
    """A time as ``<time datetime=UTC>`` in the one absolute format, the relative time beside it.
    The server writes UTC; console.js shows both in the viewer's zone and keeps 'ago' current."""
    if not isinstance(value, datetime):
        return stamp(value, empty)
    return format_html(
        '{} <span class="rel" data-rel="{}">{}</span>',
        stamp(value),
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        relative(value),
    )


@register.filter(name="day")
def day_filter(value: date | None) -> str:
    return "—" if value is None else day(value)


def relative(value: datetime, now: datetime | None = None) -> str:
    """'5 min ago' / 'in 2 h': plain arithmetic, because list pages call it hundreds of times."""
    seconds = int(((now or timezone.now()) - value).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "just now" if not future else "in a few seconds"
    for size, unit in ((86400 * 365, "y"), (86400 * 30, "mo"), (86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            amount = f"{seconds // size} {unit}"
            return f"in {amount}" if future else f"{amount} ago"
    return "just now"


@register.filter
def duration(seconds) -> str:
    """Whole seconds (or a timedelta) as a short human duration: 90 → '1 min 30 s', 7200 → '2 h'."""
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    try:
        seconds = int(seconds)
    except (TypeError, ValueError):
        return "—"
    if seconds < 60:
        return f"{seconds} s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} d")
    if hours:
        parts.append(f"{hours} h")
    if minutes and not days:
        parts.append(f"{minutes} min")
    if secs and not (days or hours):
        parts.append(f"{secs} s")
    return " ".join(parts)


@register.filter
def count(number, nouns: str) -> str:
    """``{{ n|count:"envelope,envelopes" }}`` → '1 envelope' / '5 envelopes' (a bare singular adds 's')."""
    singular, _, plural = nouns.partition(",")
    try:
        n = int(number)
    except (TypeError, ValueError):
        return f"{number} {plural or singular + 's'}"
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


@register.simple_tag
def badge(value: str, label: str | None = None):
    """A state as a colour-coded badge that also says it in words."""
    value = str(value or "")
    return format_html(
        '<span class="badge badge-{}">{}</span>', value.replace("_", "-"), label or value.replace("_", " ")
    )


@register.simple_tag
def countdown(expires_at: datetime | None):
    """Time left until ``expires_at``, kept live in the page by console.js (static text without JS)."""
    if expires_at is None:
        return "—"
    left = max(int((expires_at - timezone.now()).total_seconds()), 0)
    return format_html(
        '<span class="countdown" data-expires="{}" title="until {}">{}</span>',
        expires_at.isoformat(),
        absolute(expires_at),
        "expired" if left == 0 else f"{duration(left)} left",
    )


@register.simple_tag(takes_context=True)
def query_with(context, **changes):
    """The current query string with some parameters replaced (None or '' removes them)."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.simple_tag(takes_context=True)
def keep_only(context, *names):
    """This page's path with only the named parameters kept: the filter banner's "clear" link keeps
    the sort order (``{% keep_only 'sort' as clear_url %}``)."""
    request = context["request"]
    params = QueryDict(mutable=True)
    for name in names:
        value = request.GET.get(name, "")
        if value:
            params[name] = value
    encoded = params.urlencode()
    return f"{request.path}?{encoded}" if encoded else request.path


@register.filter
def state_change(event) -> str:
    """'paused → active' from an audit event's before/after, when it records a state change."""

    def state(side):
        return (side or {}).get("state") or (side or {}).get("status") if isinstance(side, dict) else None

    before, after = state(event.before), state(event.after)
    if before and after:
        return f"{before} → {after}"
    return after or ""


@register.filter
def envelope_path(target_id) -> str:
    """The envelope page for an audit row's target id, or '' when the id is not an envelope's."""
    try:
        return reverse("envelope-page", args=[uuid.UUID(str(target_id))])
    except (ValueError, NoReverseMatch):
        return ""


_SENTINELS = (uuid.UUID("00000000-0000-4000-8000-000000000000"), "sentinel-slug-0")


@functools.cache
def _pattern(name: str) -> str:
    for sentinel in _SENTINELS:
        try:
            return reverse(name, args=[sentinel]).replace(str(sentinel), "{}")
        except NoReverseMatch:
            continue
    raise NoReverseMatch(f"{name} takes neither a UUID nor a slug")


@register.filter
def link(value, name: str) -> str:
    """``{{ envelope.id|link:'envelope-page' }}``: the URL reversed once per process, not per row —
    list pages link every row several times and ``{% url %}`` dominated their render time."""
    return _pattern(name).format(value)
