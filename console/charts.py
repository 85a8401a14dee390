"""Tiny server-rendered SVG charts: a horizontal bar chart, a stacked bar chart and a small daily
time series. No JavaScript, no library. Every chart carries a <title> and <desc>, every bar or point
its value as text and a link to the rows behind it, so the picture is also a table of numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = {
    "used": "#2f7d4f",
    "unused": "#c2452d",
    "neutral": "#3b6ea8",
    "warn": "#b7791f",
    "muted": "#8a94a6",
}
_ids = count(1)

WIDTH = 640
LABEL_W = 170
VALUE_W = 120
ROW_H = 24
BAR_H = 16


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    href: str = ""
    color: str = PALETTE["neutral"]
    note: str = ""  # extra text for the tooltip


@dataclass(frozen=True)
class Segment:
    name: str
    value: float
    href: str = ""
    color: str = PALETTE["neutral"]
    short: str = ""  # the word written after the value at the end of the bar


@dataclass(frozen=True)
class Stack:
    label: str
    segments: Sequence[Segment] = field(default_factory=tuple)
    href: str = ""

    @property
    def total(self) -> float:
        return sum(s.value for s in self.segments)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _open(title: str, desc: str, height: int, width: int = WIDTH) -> tuple[str, list[str]]:
    uid = f"chart{next(_ids)}"
    head = (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" aria-labelledby="{uid}-t {uid}-d" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{uid}-t">{escape(title)}</title><desc id="{uid}-d">{escape(desc)}</desc>'
    )
    return uid, [head]


def _link(links: list[tuple[str, str]], href: str, inner: str, label: str) -> str:
    """A bar or point that opens its rows. The picture holds no focusable link (a role=img is one
    thing to assistive technology): a pointer click on it is console.js's ``data-href``, and the
    same link, named by its own text, is in the list written under the chart."""
    if not href:
        return f"<g>{inner}</g>"
    links.append((href, label))
    return f'<g class="chart-link" data-href="{escape(href)}">{inner}</g>'


def _link_list(links: list[tuple[str, str]]) -> str:
    if not links:
        return ""
    items = "".join(f'<li><a href="{escape(href)}">{escape(label)}</a></li>' for href, label in links)
    return f'<ul class="chart-links">{items}</ul>'


def _empty(title: str, desc: str, message: str) -> SafeString:
    _, parts = _open(title, desc, 40)
    parts.append(f'<text x="0" y="24" class="chart-empty">{escape(message)}</text></svg>')
    return mark_safe("".join(parts))  # noqa: S308 (every piece above is escaped)


def bar_chart(
    bars: Sequence[Bar], *, title: str, desc: str = "", unit: str = "", empty: str = "Nothing in this window."
) -> SafeString:
    """Horizontal bars, one per row, each a link to its rows, its value written beside it."""
    if not bars:
        return _empty(title, desc, empty)
    top = max((b.value for b in bars), default=0) or 1
    plot_w = WIDTH - LABEL_W - VALUE_W
    height = len(bars) * ROW_H + 8
    _, parts = _open(title, desc or title, height)
    links: list[tuple[str, str]] = []
    for i, bar in enumerate(bars):
        y = 4 + i * ROW_H
        w = max(plot_w * bar.value / top, 1 if bar.value else 0)
        value = f"{_fmt(bar.value)}{(' ' + unit) if unit else ''}"
        tip = f"{bar.label}: {value}{(' — ' + bar.note) if bar.note else ''}"
        inner = (
            f"<title>{escape(tip)}</title>"
            f'<text x="{LABEL_W - 8}" y="{y + BAR_H - 3}" text-anchor="end" class="chart-label">'
            f"{escape(bar.label)}</text>"
            f'<rect x="{LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" rx="2" fill="{bar.color}"/>'
            f'<text x="{LABEL_W + w + 6:.1f}" y="{y + BAR_H - 3}" class="chart-value">{escape(value)}</text>'
        )
        parts.append(_link(links, bar.href, inner, tip))
    parts.append("</svg>" + _link_list(links))
    return mark_safe("".join(parts))  # noqa: S308 (every piece above is escaped)


def stacked_bar(
    stacks: Sequence[Stack], *, title: str, desc: str = "", empty: str = "Nothing in this window."
) -> SafeString:
    """Horizontal stacked bars on one scale; each segment links to its rows and is labelled."""
    if not stacks:
        return _empty(title, desc, empty)
    top = max((s.total for s in stacks), default=0) or 1
    plot_w = WIDTH - LABEL_W - VALUE_W
    legend_h = 22
    height = legend_h + len(stacks) * ROW_H + 8
    _, parts = _open(title, desc or title, height)
    links: list[tuple[str, str]] = []
    # Legend: the segment names of the first stack, in order.
    x = LABEL_W
    for seg in stacks[0].segments:
        parts.append(
            f'<rect x="{x}" y="4" width="12" height="12" fill="{seg.color}"/>'
            f'<text x="{x + 16}" y="14" class="chart-legend">{escape(seg.name)}</text>'
        )
        x += 24 + 8 * len(seg.name)
    for i, stack in enumerate(stacks):
        y = legend_h + 4 + i * ROW_H
        parts.append(
            _link(
                links,
                stack.href,
                f'<text x="{LABEL_W - 8}" y="{y + BAR_H - 3}" text-anchor="end" '
                f'class="chart-label">{escape(stack.label)}</text>',
                stack.label,
            )
        )
        x = float(LABEL_W)
        for seg in stack.segments:
            w = plot_w * seg.value / top
            if seg.value <= 0:
                continue
            tip = f"{stack.label}: {_fmt(seg.value)} {seg.name}"
            inner = (
                f"<title>{escape(tip)}</title>"
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{seg.color}"/>'
            )
            if w >= 22:
                inner += (
                    f'<text x="{x + w / 2:.1f}" y="{y + BAR_H - 4}" text-anchor="middle" '
                    f'class="chart-inbar">{_fmt(seg.value)}</text>'
                )
            parts.append(_link(links, seg.href, inner, tip))
            x += w
        summary = ", ".join(f"{_fmt(s.value)} {s.short or s.name}" for s in stack.segments)
        parts.append(f'<text x="{x + 6:.1f}" y="{y + BAR_H - 3}" class="chart-value">{escape(summary)}</text>')
    parts.append("</svg>" + _link_list(links))
    return mark_safe("".join(parts))  # noqa: S308 (every piece above is escaped)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    color: str = PALETTE["neutral"]


def time_series(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    desc: str = "",
    hrefs: Sequence[str] = (),
    height: int = 170,
) -> SafeString:
    """Daily counts as lines with a dot per day; each day's column links to that day's rows."""
    if not labels:
        return _empty(title, desc, "Nothing in this window.")
    left, right, top_pad, bottom = 40, 12, 26, 24
    plot_w, plot_h = WIDTH - left - right, height - top_pad - bottom
    top = max((v for s in series for v in s.values), default=0) or 1
    n = len(labels)
    step = plot_w / max(n - 1, 1)
    _, parts = _open(title, desc or title, height)
    links: list[tuple[str, str]] = []
    # Axis, a top grid line labelled with the maximum, legend.
    parts.append(
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{WIDTH - right}" y2="{top_pad + plot_h}" class="chart-axis"/>'
        f'<line x1="{left}" y1="{top_pad}" x2="{WIDTH - right}" y2="{top_pad}" class="chart-grid"/>'
        f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end" class="chart-tick">{_fmt(top)}</text>'
        f'<text x="{left - 6}" y="{top_pad + plot_h + 4}" text-anchor="end" class="chart-tick">0</text>'
    )
    x = left
    for s in series:
        total = sum(s.values)
        legend = f"{s.name} ({_fmt(total)})"
        parts.append(
            f'<rect x="{x}" y="6" width="12" height="3" fill="{s.color}"/>'
            f'<text x="{x + 16}" y="12" class="chart-legend">{escape(legend)}</text>'
        )
        x += 30 + 7 * len(legend)

    def px(i: int, v: float) -> tuple[float, float]:
        return left + i * step, top_pad + plot_h - plot_h * v / top

    for s in series:
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in (px(i, v) for i, v in enumerate(s.values)))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{s.color}" stroke-width="2"/>')
    for i, label in enumerate(labels):
        cx = left + i * step
        tip = f"{label}: " + ", ".join(f"{_fmt(s.values[i])} {s.name}" for s in series)
        inner = (
            f'<title>{escape(tip)}</title><rect x="{cx - step / 2:.1f}" y="{top_pad}" '
            f'width="{max(step, 4):.1f}" height="{plot_h}" class="chart-hit"/>'
        )
        for s in series:
            a, b = px(i, s.values[i])
            if s.values[i]:
                inner += f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{s.color}"/>'
        parts.append(_link(links, hrefs[i] if i < len(hrefs) else "", inner, tip))
    # First, middle and last day under the axis.
    for i in sorted({0, n // 2, n - 1}):
        anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
        parts.append(
            f'<text x="{left + i * step:.1f}" y="{height - 6}" text-anchor="{anchor}" class="chart-tick">'
            f"{escape(labels[i])}</text>"
        )
    parts.append("</svg>" + _link_list(links))
    return mark_safe("".join(parts))  # noqa: S308 (every piece above is escaped)
