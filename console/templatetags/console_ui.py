"""Small presentation helpers for the console templates: times, durations, state badges."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def when(value: datetime | None, empty: str = "—"):
    """A time as relative text, with the absolute UTC time beside it and in the tooltip."""
    if value is None:
        return empty
    utc = value.astimezone(UTC)
    absolute = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    short = utc.strftime("%b %d %H:%M")
    return format_html(
        '<time datetime="{}" title="{}">{}</time> <span class="abs">{}</span>',
        value.isoformat(),
        absolute,
        relative(value),
        short,
    )


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
    """Whole seconds as a short human duration: 90 → '1 min 30 s', 7200 → '2 h'."""
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
        expires_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
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
