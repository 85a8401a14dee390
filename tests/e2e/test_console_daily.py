"""The console for daily work, in a real browser: times in the viewer's zone, small screens, dark."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests.helpers.console import approved, make_activity
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_times_read_in_the_viewers_zone_with_the_zone_said(sign_in, live_server, admin, owner):
    envelope = approved(make_envelope(make_instance(make_agent(owner, slug="zoned"))), admin)
    make_activity(envelope, 1, occurred_at=datetime(2025, 7, 4, 15, 30, tzinfo=UTC))
    page = sign_in(admin, timezone_id="America/New_York")
    page.goto(f"{live_server.url}/activity/")
    stamp = page.locator('time[datetime="2025-07-04T15:30:00Z"]')
    expect(stamp).to_have_text("4 Jul 2025, 11:30 EDT")
    # A zone chosen in the header's menu wins over the browser's, and is kept.
    page.select_option("#tz-choice", "Asia/Tokyo")
    expect(stamp).to_have_text(re.compile(r"5 Jul 2025, 00:30 (GMT\+9|JST)"))
    page.reload()
    expect(page.locator('time[datetime="2025-07-04T15:30:00Z"]')).to_have_text(
        re.compile(r"5 Jul 2025, 00:30 (GMT\+9|JST)")
    )


@pytest.mark.parametrize("path", ["/", "/approvals/"])
def test_a_phone_sees_the_queue_and_dashboard_without_sideways_scrolling(sign_in, live_server, admin, owner, path):
    instance = make_instance(make_agent(owner, slug="a-rather-long-agent-slug-for-phones"))
    for i in range(3):
        make_envelope(
            instance,
            intent=f"Label this week's invoices and reconcile the ledger, batch {i}",
            resources=("repo:acme/a-very-long-repository-name-that-would-overflow", "repo:acme/*"),
        )
    page = sign_in(admin, viewport={"width": 390, "height": 844}, is_mobile=True)
    page.goto(f"{live_server.url}{path}")
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"{path} is {widths[0]} px wide in a {widths[1]} px window"
    if path == "/approvals/":
        # The decision is on screen, not off to the right.
        approve = page.get_by_role("button", name=re.compile(r"^Approve envelope .*batch 0")).first
        box = approve.bounding_box()
        assert box and box["x"] + box["width"] <= 390


def test_the_dark_theme_follows_the_system_and_the_toggle(sign_in, live_server, admin):
    page = sign_in(admin, color_scheme="dark")
    background = "getComputedStyle(document.body).backgroundColor"
    html_bg = "getComputedStyle(document.documentElement).backgroundColor"
    assert page.evaluate(html_bg) == "rgb(18, 22, 29)"
    toggle = page.locator("[data-theme-toggle]")
    expect(toggle).to_have_text("Theme: auto")
    toggle.click()  # auto → dark → light
    toggle.click()
    expect(toggle).to_have_text("Theme: light")
    assert page.evaluate(html_bg) == "rgb(245, 246, 248)"
    page.reload()
    assert page.evaluate(html_bg) == "rgb(245, 246, 248)"  # the choice is kept
    assert page.evaluate(background) is not None
