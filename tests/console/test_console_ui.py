"""The console's presentation helpers: one time format, humanized durations, plurals."""

from datetime import UTC, date, datetime, timedelta

from console.templatetags.console_ui import count, duration, relative, stamp, when


def test_one_absolute_format_with_year_and_zone_and_relative_beside():
    at = datetime(2026, 11, 28, 20, 14, 5, tzinfo=UTC)
    html = str(when(at))
    assert '<time datetime="2026-11-28T20:14:05Z"' in html
    assert ">28 Nov 2026, 20:14 UTC</time>" in html
    assert 'class="rel"' in html
    assert ">28 Nov 2026, 20:14 UTC</time>" in str(stamp(at))
    assert str(stamp(date(2026, 11, 28))) == "28 Nov 2026"
    assert when(None) == "—"


def test_relative_times_say_past_and_future():
    now = datetime(2026, 12, 2, tzinfo=UTC)
    assert relative(now - timedelta(minutes=17), now) == "17 min ago"
    assert relative(now + timedelta(hours=2), now) == "in 2 h"
    assert relative(now - timedelta(seconds=3), now) == "just now"


def test_durations_are_humanized_from_seconds_or_timedeltas():
    assert duration(timedelta(days=1, minutes=10)) == "1 d"
    assert duration(timedelta(hours=1, minutes=10)) == "1 h 10 min"
    assert duration(28800) == "8 h"
    assert duration(90) == "1 min 30 s"
    assert duration(None) == "—"


def test_counts_pluralise():
    assert count(1, "envelope") == "1 envelope"
    assert count(5, "envelope") == "5 envelopes"
    assert count(1, "person,people") == "1 person"
    assert count(12000, "person,people") == "12,000 people"


def test_charts_hold_no_focusable_link_and_list_their_links_by_their_own_text():
    from console.charts import Bar, bar_chart

    html = str(bar_chart([Bar("5 min", 3, href="/posture/rows/credentials?bucket=1")], title="Lifetimes"))
    svg, _, after = html.partition("</svg>")
    assert "<a " not in svg and 'data-href="/posture/rows/credentials?bucket=1"' in svg
    assert '<a href="/posture/rows/credentials?bucket=1">5 min: 3</a>' in after
