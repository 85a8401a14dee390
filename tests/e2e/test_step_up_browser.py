"""Step-up in a real browser: a high-risk approval from a session signed in too long ago is refused
with a way to confirm; after the password is typed again, the same approval goes through."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import expect

from accounts.sessions import AUTH_TIME_KEY
from tests.e2e.conftest import PASSWORD
from tests.helpers.factories import make_agent, make_envelope, make_instance

# The button's accessible name is "Approve envelope '<intent>'"; an intent may itself say "approve".
APPROVE = re.compile(r"^Approve\b")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_high_risk_approval_waits_for_a_fresh_sign_in(sign_in, live_server, admin, owner, settings):
    settings.MANDATE_STEP_UP_MAX_AGE = 300
    instance = make_instance(make_agent(owner, ceiling=("payments:approve",)))
    envelope = make_envelope(instance, intent="approve payment run", scopes=("payments:approve",), duration_seconds=600)
    page = sign_in(admin)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "sessionid"]
    session = SessionStore(session_key=cookie["value"])
    session[AUTH_TIME_KEY] = time.time() - 3600  # signed in an hour ago
    session.save()

    page.goto(f"{live_server.url}/approvals/")
    expect(page.locator(".step-up-notice")).to_contain_text("needs a sign-in within the last 5 minutes")
    row = page.locator(f"#env-{envelope.id}")
    row.get_by_label(re.compile("Comment on")).fill("amounts capped")
    row.get_by_role("button", name=APPROVE).click()
    expect(row).to_contain_text("needs a sign-in within the last 5 minutes")
    assert envelope.approvals.count() == 0

    row.get_by_role("link", name="Confirm it's you").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(f"{live_server.url}/approvals/")
    expect(page.locator(".step-up-notice")).to_have_count(0)
    row = page.locator(f"#env-{envelope.id}")
    row.get_by_label(re.compile("Comment on")).fill("amounts capped")
    row.get_by_role("button", name=APPROVE).click()
    expect(row).to_contain_text("1 of 2")
    assert envelope.approvals.count() == 1
