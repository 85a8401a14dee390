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
